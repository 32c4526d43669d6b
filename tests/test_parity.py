"""Numerical parity with transformers, the reference implementation, in both directions."""

from __future__ import annotations

import pytest
import torch

from squeezebert import HEADS
from squeezebert.checkpoint import load_model, save_model
from squeezebert.config import SqueezeBertConfig

transformers = pytest.importorskip("transformers")

TOL = 1e-5
# Two grouped settings (the paper's, and an uneven one) and the dense one (BERT).
GROUPINGS = {
    "paper": dict(q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4, output_groups=4),
    "uneven": dict(q_groups=2, k_groups=8, v_groups=1, post_attention_groups=2, intermediate_groups=8, output_groups=2),
    "dense": dict(q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1, intermediate_groups=1, output_groups=1),
}
TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            embedding_size=32, max_position_embeddings=512, num_labels=3)
HF_SQUEEZEBERT = {
    "masked_lm": "SqueezeBertForMaskedLM",
    "sequence_classification": "SqueezeBertForSequenceClassification",
    "token_classification": "SqueezeBertForTokenClassification",
    "question_answering": "SqueezeBertForQuestionAnswering",
    "multiple_choice": "SqueezeBertForMultipleChoice",
    "base": "SqueezeBertModel",
}
HF_BERT = {
    "masked_lm": "BertForMaskedLM",
    "pretraining": "BertForPreTraining",
    "sequence_classification": "BertForSequenceClassification",
    "token_classification": "BertForTokenClassification",
    "question_answering": "BertForQuestionAnswering",
    "multiple_choice": "BertForMultipleChoice",
    "base": "BertModel",
}


def make_batch(length: int, batch: int = 3, vocab: int = 120, seed: int = 0):
    """A padded batch: row 0 full length, the others shorter; token types switch half way."""
    g = torch.Generator().manual_seed(seed + length)
    ids = torch.randint(1, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        keep = max(1, length - 3 * row * max(1, length // 8))
        mask[row, keep:] = 0
        ids[row, keep:] = 0
    types = torch.zeros_like(ids)
    types[:, length // 2:] = 1
    return ids, mask * 1, types * mask


def outputs_of(out) -> torch.Tensor:
    if getattr(out, "start_logits", None) is not None:
        return torch.stack([out.start_logits, out.end_logits], -1)
    if getattr(out, "logits", None) is not None:
        return out.logits
    return out.last_hidden_state


def hf_squeezebert(head: str, grouping: str, tmp_path_factory):
    torch.manual_seed(hash((head, grouping)) % 1000)
    labels = 2 if head == "question_answering" else TINY["num_labels"]  # a span head has start and end only
    config = transformers.SqueezeBertConfig(**{**TINY, "num_labels": labels}, **GROUPINGS[grouping])
    model = getattr(transformers, HF_SQUEEZEBERT[head])(config).eval()
    # transformers initialises biases and LayerNorms to 0 / 1: perturb everything so a mis-mapped tensor shows.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    directory = tmp_path_factory.mktemp(f"hf-{head}-{grouping}")
    model.save_pretrained(directory)
    return model, directory


def run_both(ref, ours, ids, mask, types):
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = ours(ids, mask, types)
    return outputs_of(a), outputs_of(b)


@pytest.mark.parametrize("grouping", ["paper", "uneven"])
@pytest.mark.parametrize("head", list(HF_SQUEEZEBERT))
def test_hf_squeezebert_loads_with_same_logits(head, grouping, tmp_path_factory):
    ref, directory = hf_squeezebert(head, grouping, tmp_path_factory)
    ours, report = load_model(directory, return_report=True)
    assert type(ours) is HEADS[head], "the head must be chosen from config.json's architectures"
    assert report.missing == [], report.summary()
    for length in (1, 7, 128, 512):
        ids, mask, types = make_batch(length)
        if head == "multiple_choice":  # (B, choices, S)
            ids, mask, types = (t.view(1, 3, length) for t in (ids, mask, types))
        a, b = run_both(ref, ours, ids, mask, types)
        assert a.shape == b.shape
        valid = mask.bool() if a.dim() == 3 and head != "multiple_choice" else None
        diff = (a - b).abs() if valid is None else (a - b).abs()[valid]
        assert diff.max().item() < TOL, f"{head}/{grouping}/len {length}: max abs diff {diff.max().item():.2e}"


@pytest.mark.parametrize("grouping", ["paper", "dense"])
def test_hidden_states_and_attention_probabilities_match(grouping, tmp_path_factory):
    ref, directory = hf_squeezebert("base", grouping, tmp_path_factory)
    ours = load_model(directory)
    ids, mask, types = make_batch(7)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
                output_attentions=True)
        b = ours(ids, mask, types, output_hidden_states=True, output_attentions=True)
    assert len(b.hidden_states) == len(a.hidden_states) == TINY["num_hidden_layers"] + 1
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y).abs().max() < TOL
    # QUIRK: transformers' SqueezeBERT returns pre-softmax scores as "attentions"; we return probabilities,
    # which is what BERT returns and what attention distillation needs.
    for scores, probs in zip(a.attentions, b.attentions):
        assert (torch.softmax(scores, -1) - probs).abs().max() < TOL
        assert torch.allclose(probs.sum(-1), torch.ones(()))


@pytest.mark.parametrize("head", ["masked_lm", "sequence_classification", "question_answering", "multiple_choice",
                                  "token_classification", "base"])
def test_transformers_loads_what_we_save(head, tmp_path):
    config = SqueezeBertConfig(**{**TINY, "num_labels": 2 if head == "question_answering" else 3}, **GROUPINGS["paper"])
    torch.manual_seed(1)
    ours = HEADS[head](config).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_model(ours, tmp_path)
    ref = getattr(transformers, HF_SQUEEZEBERT[head]).from_pretrained(tmp_path).eval()
    ids, mask, types = make_batch(16)
    if head == "multiple_choice":
        ids, mask, types = (t.view(1, 3, 16) for t in (ids, mask, types))
    a, b = run_both(ref, ours, ids, mask, types)
    valid = mask.bool() if a.dim() == 3 and head != "multiple_choice" else None
    diff = (a - b).abs() if valid is None else (a - b).abs()[valid]
    assert diff.max().item() < TOL


@pytest.mark.parametrize("head", list(HF_BERT))
def test_dense_bert_checkpoints_load_into_groups_one(head, tmp_path):
    torch.manual_seed(2)
    labels = 2 if head == "question_answering" else TINY["num_labels"]
    bert_config = transformers.BertConfig(**{**TINY, "num_labels": labels, "embedding_size": None})
    ref = getattr(transformers, HF_BERT[head])(bert_config).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ref.save_pretrained(tmp_path)
    ours, report = load_model(tmp_path, return_report=True)
    assert report.source_format == "bert" and ours.config.is_dense
    assert type(ours) is HEADS[head] and report.missing == [], report.summary()
    ids, mask, types = make_batch(128)
    if head == "multiple_choice":
        ids, mask, types = (t.view(1, 3, 128) for t in (ids, mask, types))
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = ours(ids, mask, types)
    if head == "pretraining":  # MLM logits and the sentence-order (BERT: next-sentence) logits
        assert (a.prediction_logits - b.logits).abs()[mask.bool()].max() < TOL
        assert (a.seq_relationship_logits - b.sop_logits).abs().max() < TOL
        return
    x, y = outputs_of(a), outputs_of(b)
    valid = mask.bool() if x.dim() == 3 and head != "multiple_choice" else None
    diff = (x - y).abs() if valid is None else (x - y).abs()[valid]
    assert diff.max().item() < TOL


def test_real_minilm_matches_transformers_bert(minilm, data_dir):
    """The real all-MiniLM-L6-v2, through our BERT mapping, against transformers' BertModel on real sentences."""
    tokenizer = transformers.BertTokenizerFast.from_pretrained(minilm)
    lines = (data_dir / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:33]
    sentences = [line.split("\t")[0] for line in lines]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    ref = transformers.BertModel.from_pretrained(minilm).eval()
    ours, report = load_model(minilm, return_report=True)
    assert report.source_format == "bert" and report.missing == []
    with torch.no_grad():
        a = ref(**batch).last_hidden_state
        b = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
    diff = (a - b).abs()[batch["attention_mask"].bool()].max().item()
    assert diff < TOL, f"max abs diff {diff:.2e}"


def test_pretraining_mlm_loss_and_gradients_match_transformers(tmp_path_factory):
    """Issue 19: our pretraining objective (MLM decoded on the masked positions only) against transformers'
    ``SqueezeBertForMaskedLM`` given the same weights: the loss and the gradient of every shared tensor agree."""
    from squeezebert.data.pretraining import IGNORE_INDEX
    from squeezebert.model import SqueezeBertForPreTraining
    from squeezebert.pretrain.run import PretrainingObjective

    ref, directory = hf_squeezebert("masked_lm", "paper", tmp_path_factory)
    ours, report = load_model(directory, model_class=SqueezeBertForPreTraining, return_report=True)
    assert not [k for k in report.missing if "cls.predictions" in k or "transformer" in k], report.summary()
    ref.train(), ours.train()
    for model in (ref, ours):  # dropout would draw different masks in the two models
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    ids, mask, types = make_batch(64, batch=4)
    g = torch.Generator().manual_seed(5)
    labels = torch.full_like(ids, IGNORE_INDEX)
    chosen = (torch.rand(ids.shape, generator=g) < 0.15) & mask.bool()
    labels[chosen] = torch.randint(1, TINY["vocab_size"], (int(chosen.sum()),), generator=g)
    assert int(chosen.sum()) > 10

    expected = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
    expected.backward()
    mlm_sum, masked, *_ = PretrainingObjective(ours)(ids, mask, types, labels, torch.zeros(4, dtype=torch.long))
    loss = mlm_sum / masked
    loss.backward()
    assert abs(loss.item() - expected.item()) <= TOL, (loss.item(), expected.item())

    theirs = dict(ref.named_parameters())
    compared = 0
    for name, p in ours.named_parameters():
        if name not in theirs or p.grad is None:
            continue  # the SOP head: transformers' masked-LM model has none
        ref_grad = theirs[name].grad.reshape(p.grad.shape)  # their 1x1 conv weights carry a trailing 1
        diff = (p.grad - ref_grad).abs().max().item()
        assert diff <= TOL, f"{name}: gradient differs by {diff:.2e}"
        compared += 1
    n_ref = sum(1 for p in ref.parameters() if p.grad is not None)
    assert compared == n_ref, f"compared {compared} of {n_ref} gradients (names do not line up)"
