"""Has a pretrained model learnt word order, or only which words occur? Its MLM loss on held-out text three ways.

    .venv/bin/python benchmarks/pretrain_probe.py --model out/pretrain-tapt-cpu/final \
        [--text "../shared/data/glue/SST-2/dev.tsv?column=sentence&documents=block"] [--examples 128]

1. the text as it is; 2. every unmasked word token of each sequence shuffled within the sequence (the same bag of
words, no order); 3. every unmasked word token replaced by [MASK] (no context at all). A model that uses word order
loses clearly on 2; one that has learnt only a bag of words scores 1 and 2 alike; 3 - 1 is what context is worth.
Masking is the pretraining pipeline's (seeded), so runs are comparable across checkpoints.

Beside the losses, where each attention head looks ("attention"): the mean probability a token gives to the tokens
1 and 2 places away (a uniform head gives 1/length) and the mean entropy of its rows. A model that only counts
words keeps uniform heads; one that reads word order grows heads that look at their neighbours.
"""

from __future__ import annotations

import argparse
import json

import torch

from squeezebert.checkpoint import load_model
from squeezebert.data.pretraining import IGNORE_INDEX, expand_corpus, fixed_batches
from squeezebert.model import SqueezeBertForPreTraining
from squeezebert.pretrain.run import PretrainingObjective, evaluate_on
from squeezebert.tokenizer import Tokenizer


def probe(model_dir: str, text: str, examples: int = 128, seq_len: int = 128, seed: int = 0) -> dict[str, dict]:
    tok = Tokenizer.from_pretrained(model_dir)
    objective = PretrainingObjective(load_model(model_dir, model_class=SqueezeBertForPreTraining)).eval()
    batches = fixed_batches(expand_corpus([text]), tok, seq_len, examples, batch_size=32)
    g = torch.Generator().manual_seed(seed)
    first_word = max(tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id)  # specials below
    variants: dict[str, list[dict]] = {"as is": batches, "order shuffled": [], "context masked": []}
    for batch in batches:
        ids, labels = batch["input_ids"], batch["labels"]
        context = (labels == IGNORE_INDEX) & (ids > first_word)      # unmasked word tokens
        shuffled = ids.clone()
        for row in range(len(ids)):
            where = context[row].nonzero().flatten()
            shuffled[row, where] = ids[row, where[torch.randperm(len(where), generator=g)]]
        variants["order shuffled"].append({**batch, "input_ids": shuffled})
        variants["context masked"].append({**batch, "input_ids": torch.where(context, tok.mask_token_id, ids)})
    with torch.no_grad():  # the pretraining run's own held-out evaluation, on each variant
        result = {name: evaluate_on(lambda b=b: b, torch.device("cpu"))(objective) for name, b in variants.items()}
        result["attention"] = attention_locality(objective.model, batches)
    return result


def attention_locality(model: SqueezeBertForPreTraining, batches: list[dict]) -> dict[str, dict]:
    """Per layer and head: mean attention probability at offsets -2..2 over real tokens, the uniform level, and the
    mean row entropy (nats; uniform over L tokens: log L)."""
    sums: dict[str, torch.Tensor] = {}
    rows = uniform = 0.0
    for batch in batches:
        mask = batch["attention_mask"].bool()
        out = model.transformer(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                output_attentions=True)
        lengths = mask.sum(1, keepdim=True).float()
        rows += float(mask.sum())
        uniform += float((mask / lengths).sum())
        for layer, probs in enumerate(out.attentions):                 # (B, H, S, S)
            for head in range(probs.shape[1]):
                p = probs[:, head]
                # p[:, i, i + o] for every row i (rows whose neighbour falls off the sequence get 0)
                near = [torch.nn.functional.pad(torch.diagonal(p, offset=o, dim1=1, dim2=2),
                                                (max(-o, 0), max(o, 0)))[mask].sum() for o in (-2, -1, 1, 2)]
                entropy = -(p.clamp_min(1e-12).log() * p).sum(-1)[mask].sum()
                key = f"layer{layer}.head{head}"
                sums[key] = sums.get(key, torch.zeros(5)) + torch.stack([*near, entropy])
    return {key: {"offsets_-2_-1_+1_+2": [round(float(v) / rows, 4) for v in total[:4]],
                  "uniform": round(uniform / rows, 4), "entropy": round(float(total[4]) / rows, 3)}
            for key, total in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a pretraining checkpoint (MLM head included)")
    ap.add_argument("--text", default="../shared/data/glue/SST-2/dev.tsv?column=sentence&documents=block")
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(probe(args.model, args.text, args.examples), indent=2))


if __name__ == "__main__":
    main()
