"""Fast inference paths agree with the reference path, within a stated tolerance per precision."""

from __future__ import annotations

import pytest
import torch

from helpers import perturbed

from squeezebert.infer.fast import (BF16Projection, FbgemmInt8Projection, Int8Projection, convert, for_inference,
                                    stack_projections)
from squeezebert.model import GroupedProjection

# Max abs difference from fp32 on tiny models with ~unit-scale activations (LayerNorm outputs):
# fp32 compiled only reorders float sums; bf16 keeps 8 mantissa bits in the products; int8 adds quantisation.
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "int8": 6e-2}


def padded_batch(b=3, s=21, vocab=1000):
    ids = torch.randint(1, vocab, (b, s), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 4:] = 0
    return ids, mask


@pytest.mark.parametrize("groups", [1, 4])
def test_swapped_projections_compute_the_same_function(groups):
    torch.manual_seed(0)
    proj = GroupedProjection(64, 96, groups)
    torch.nn.init.normal_(proj.weight, std=0.1)
    torch.nn.init.normal_(proj.bias, std=0.1)
    x = torch.randn(64, 37)
    ref = proj(x)
    for swap, tol in ((BF16Projection, 2e-2), (Int8Projection, 3e-2), (FbgemmInt8Projection, 3e-2)):
        out = swap(proj)(x)
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert (out - ref).abs().max() < tol * ref.abs().max(), swap.__name__


def test_stacked_qkv_is_the_three_projections():
    torch.manual_seed(0)
    projections = [GroupedProjection(32, 32, 4) for _ in range(3)]
    for p in projections:
        torch.nn.init.normal_(p.weight)
        torch.nn.init.normal_(p.bias)
    x = torch.randn(32, 9)
    stacked = stack_projections(projections)(x).view(4, 3, 8, 9)  # group-major [Q_g; K_g; V_g]
    for i, p in enumerate(projections):
        assert torch.allclose(stacked[:, i].reshape(32, 9), p(x), atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("compile", [False, True])
def test_fast_paths_agree_with_reference(precision, compile):
    model = perturbed("sequence_classification", num_labels=3)
    ids, mask = padded_batch()
    with torch.no_grad():
        ref = model(ids, mask)
        ref_hidden = model.transformer(ids, mask).last_hidden_state
    fast = for_inference(model, precision, compile=compile, allow_emulated_bf16=True)
    out = fast(ids, mask)
    hidden = for_inference(model.transformer, precision, compile=compile,
                           allow_emulated_bf16=True)(ids, mask).last_hidden_state
    assert (out.logits - ref.logits).abs().max() < TOLERANCE[precision]
    valid = mask.bool()
    assert (hidden - ref_hidden).abs()[valid].max() < TOLERANCE[precision]
    if precision != "fp32":  # the swap really happened: not bit-identical to fp32
        assert not torch.equal(out.logits, ref.logits)


def test_conversion_leaves_the_training_model_alone():
    model = perturbed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert(model, "int8")
    assert not any(isinstance(m, GroupedProjection) for m in converted.modules())
    assert any(isinstance(m, GroupedProjection) for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="unknown precision"):
        convert(model, "fp8")


def test_every_head_runs_in_int8_and_checks_inputs():
    ids, mask = padded_batch()
    for head in ("masked_lm", "token_classification", "question_answering"):
        model = perturbed(head)
        with torch.no_grad():
            ref = model(ids, mask)
        out = for_inference(model, "int8", compile=False)(ids, mask)
        a = ref.logits if ref.start_logits is None else ref.start_logits
        b = out.logits if out.start_logits is None else out.start_logits
        assert a.shape == b.shape
    mc = perturbed("multiple_choice")
    out = for_inference(mc, "bf16", compile=False, allow_emulated_bf16=True)(ids.view(1, 3, -1), mask.view(1, 3, -1))
    assert out.logits.shape == (1, 3)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        for_inference(perturbed(), "int8", compile=False)(torch.ones(1, 600, dtype=torch.long))


def test_bf16_is_refused_without_native_bf16(monkeypatch):
    from squeezebert.infer import fast as fast_module

    monkeypatch.setattr(fast_module, "has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="no native bf16"):
        for_inference(perturbed(), "bf16")
    monkeypatch.setattr(fast_module, "has_native_bf16", lambda: True)
    assert for_inference(perturbed(), "bf16").precision == "bf16"


def test_compile_is_opt_in():
    assert not for_inference(perturbed(), "fp32").compiled
