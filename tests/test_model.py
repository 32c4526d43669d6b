"""Heads, losses, gradients and input checking on tiny configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from squeezebert import HEADS, preset
from squeezebert.model import GroupedProjection, grouped_matmul


def batch(b=2, s=6, vocab=1000):
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, vocab, (b, s), generator=g), torch.ones(b, s, dtype=torch.long)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_projection_is_a_grouped_conv1d(groups):
    torch.manual_seed(0)
    proj = GroupedProjection(16, 24, groups)
    torch.nn.init.normal_(proj.weight)
    torch.nn.init.normal_(proj.bias)
    x = torch.randn(16, 10)  # (C, T)
    expected = F.conv1d(x[None], proj.weight.unsqueeze(-1), proj.bias, groups=groups)[0]
    assert torch.allclose(proj(x), expected, atol=1e-5)


def test_grouped_matmul_takes_the_same_values_and_gradients_in_its_compiled_form(monkeypatch):
    # eager: one baddbmm; under torch.compile: bmm + add, so inductor can fuse the add (model.grouped_matmul)
    torch.manual_seed(0)
    args = [torch.randn(4, 6, 1), torch.randn(4, 6, 5), torch.randn(4, 5, 7)]
    eager_in = [a.clone().requires_grad_() for a in args]
    eager = grouped_matmul(*eager_in)
    eager.sum().backward()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    compiled_in = [a.clone().requires_grad_() for a in args]
    compiled = grouped_matmul(*compiled_in)
    compiled.sum().backward()
    assert compiled.grad_fn.name() != eager.grad_fn.name()  # the other form really ran
    assert torch.allclose(compiled, eager, atol=1e-5)
    assert all(torch.allclose(c.grad, e.grad, atol=1e-5) for c, e in zip(compiled_in, eager_in))


def test_each_head_gives_a_loss_with_gradients_everywhere():
    config = preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    ids, mask = batch()
    cases = {
        "masked_lm": dict(labels=torch.where(torch.rand(ids.shape) < 0.5, ids, torch.full_like(ids, -100))),
        "pretraining": dict(labels=ids.clone(), sop_labels=torch.tensor([0, 1])),
        "sequence_classification": dict(labels=torch.tensor([0, 2])),
        "token_classification": dict(labels=torch.randint(0, 3, ids.shape)),
        "question_answering": dict(labels=torch.tensor([[1, 3], [2, 2]])),
    }
    for head, kwargs in cases.items():
        model = HEADS[head](config)
        out = model(ids, mask, **kwargs)
        assert out.loss is not None and torch.isfinite(out.loss), head
        out.loss.backward()
        no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        unused = {"transformer.pooler.dense.weight", "transformer.pooler.dense.bias"}
        if getattr(model, "uses_pooler", True):
            unused = set()
        assert set(no_grad) <= unused, f"{head}: no gradient for {no_grad}"


def test_regression_head_for_stsb():
    model = HEADS["sequence_classification"](preset("tiny", num_labels=1))
    ids, mask = batch()
    out = model(ids, mask, labels=torch.tensor([0.5, 4.2]))
    assert out.logits.shape == (2, 1)
    assert torch.allclose(out.loss, F.mse_loss(out.logits.squeeze(), torch.tensor([0.5, 4.2])))


def test_multiple_choice_shapes_and_loss():
    model = HEADS["multiple_choice"](preset("tiny"))
    ids = torch.randint(1, 1000, (2, 4, 7))
    out = model(ids, torch.ones_like(ids), labels=torch.tensor([3, 0]))
    assert out.logits.shape == (2, 4) and out.loss.item() > 0


def test_padding_does_not_change_unpadded_tokens():
    model = HEADS["base"](preset("tiny")).eval()
    ids, _ = batch(1, 5)
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 5 + [0] * 4])
    with torch.no_grad():
        short = model(ids).last_hidden_state
        long = model(padded, mask).last_hidden_state
    assert torch.allclose(short, long[:, :5], atol=1e-5)


def test_dropout_only_in_training():
    model = HEADS["base"](preset("tiny"))
    ids, mask = batch()
    model.train()
    assert not torch.equal(model(ids, mask).last_hidden_state, model(ids, mask).last_hidden_state)
    model.eval()
    assert torch.equal(model(ids, mask).last_hidden_state, model(ids, mask).last_hidden_state)


@pytest.mark.parametrize(
    "ids, message",
    [
        (torch.zeros(2, 600, dtype=torch.long), "exceeds max_position_embeddings"),
        (torch.full((1, 4), 5000), r"input_ids must be in \[0, 1000\)"),
        (torch.zeros(4, dtype=torch.long), r"\(batch, seq_len\)"),
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
    ],
)
def test_bad_inputs_get_clear_errors(ids, message):
    model = HEADS["base"](preset("tiny"))
    with pytest.raises(ValueError, match=message):
        model(ids)


def test_mismatched_mask_shape():
    model = HEADS["base"](preset("tiny"))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
