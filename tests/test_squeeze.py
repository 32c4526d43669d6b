"""Squeezing a dense model into a grouped one: exactness where it must be exact, folded permutations, the fit."""

from __future__ import annotations

import copy

import pytest
import torch

from squeezebert.config import GROUP_FIELDS, preset
from squeezebert.distill.squeeze import (I1, I2, K, O, PROJECTIONS, Q, V, apply_permutations, block_diagonal,
                                         dense_weight, fit_blocks, parse_groups, relative_error, squeeze)
from squeezebert.model import GroupedProjection, SqueezeBertForSequenceClassification, SqueezeBertModel

DENSE = {name: 1 for name in GROUP_FIELDS}


def batch(seed: int = 0, vocab: int = 1000) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    return SqueezeBertForSequenceClassification(preset("tiny-dense", num_labels=3)).eval()


def test_groups_one_reproduces_the_dense_model_exactly(teacher):
    for permute in (False, True):
        student = squeeze(teacher, DENSE, permute=permute)
        assert student.config.q_groups == 1
        with torch.no_grad():
            a, b = teacher(**batch()), student(**batch())
        assert torch.allclose(a.logits, b.logits, atol=1e-5)
    student = squeeze(teacher, DENSE, permute=False)
    for (name, p), q in zip(teacher.state_dict().items(), student.state_dict().values()):
        assert torch.equal(p, q), name


def test_paper_grouping_copies_everything_else_and_keeps_the_diagonal_blocks(teacher):
    student = squeeze(teacher, permute=False)
    cfg = student.config
    assert (cfg.q_groups, cfg.post_attention_groups, cfg.intermediate_groups, cfg.output_groups) == (4, 1, 4, 4)
    assert cfg.num_hidden_layers == teacher.config.num_hidden_layers and cfg.hidden_size == 32
    s, t = student.state_dict(), teacher.state_dict()
    for key in ("transformer.embeddings.word_embeddings.weight", "classifier.weight", "transformer.pooler.dense.weight",
                "transformer.encoder.layers.1.post_attention.conv1d.weight",
                "transformer.encoder.layers.0.output.layernorm.weight"):
        assert torch.equal(s[key], t[key]), key
    w = t["transformer.encoder.layers.0.intermediate.conv1d.weight"]  # (64, 32), 4 groups: rows 16, cols 8
    got = s["transformer.encoder.layers.0.intermediate.conv1d.weight"]
    assert got.shape == (64, 8)
    assert torch.equal(got[16:32], w[16:32, 8:16])
    # the student is a valid SqueezeBERT: saved and reloaded, the same function
    assert isinstance(student.transformer.encoder.layers[0].attention.query, GroupedProjection)


def test_block_diagonal_inverts_dense_weight():
    proj = GroupedProjection(8, 12, 4)
    torch.nn.init.normal_(proj.weight)
    assert torch.equal(block_diagonal(dense_weight(proj), 4), proj.weight.detach())


def test_folded_permutations_preserve_the_function(teacher):
    """Random head and FFN-channel permutations, folded as squeeze folds them, leave the dense model unchanged."""
    model = copy.deepcopy(teacher)
    g = torch.Generator().manual_seed(3)
    heads, d = model.config.num_attention_heads, model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for layer in model.transformer.encoder.layers:
            dense = {p: dense_weight(layer.get_submodule(p)) for p in PROJECTIONS}
            bias = {p: layer.get_submodule(p).bias.detach().clone() for p in PROJECTIONS}
            head_perm = torch.randperm(heads, generator=g)
            ffn_perm = torch.randperm(model.config.intermediate_size, generator=g)
            assert not torch.equal(head_perm, torch.arange(heads))
            apply_permutations(dense, bias, {}, head_perm, ffn_perm, d)
            for p in PROJECTIONS:
                layer.get_submodule(p).weight.copy_(dense[p])
                layer.get_submodule(p).bias.copy_(bias[p])
        changed = model.transformer.encoder.layers[0].intermediate.conv1d.weight
        assert not torch.allclose(changed, teacher.transformer.encoder.layers[0].intermediate.conv1d.weight)
        a, b = teacher(**batch(), output_hidden_states=True), model(**batch(), output_hidden_states=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert torch.allclose(a.hidden_states[-1], b.hidden_states[-1], atol=1e-5)


def test_permutation_keeps_more_weight_energy_in_the_blocks():
    """A dense weight that is block diagonal up to a hidden channel shuffle: the search finds the blocks."""
    torch.manual_seed(0)
    teacher = SqueezeBertModel(preset("tiny-dense")).eval()
    inter = teacher.config.intermediate_size
    with torch.no_grad():
        for layer in teacher.encoder.layers:
            w1 = layer.intermediate.conv1d.weight
            w2 = layer.output.conv1d.weight
            mask1 = torch.block_diag(*[torch.ones(inter // 4, 8)] * 4)  # (64, 32)
            shuffle = torch.randperm(inter)
            w1.mul_(mask1[shuffle])
            w2.mul_(mask1.t()[:, shuffle])
    _, plain = squeeze(teacher, permute=False, return_report=True)
    _, permuted = squeeze(teacher, permute=True, return_report=True)
    ffn = lambda r: [v for k, v in r.kept_energy.items() if "intermediate" in k or "output" in k]  # noqa: E731
    assert min(ffn(permuted)) > 0.999
    assert max(ffn(plain)) < 0.7


def test_calibrated_fit_is_exact_when_cross_group_inputs_are_predictable():
    """Inputs whose other groups are copies of group 0: the fit recovers W x exactly; truncation does not."""
    torch.manual_seed(0)
    w, b = torch.randn(8, 8), torch.randn(8)
    x0 = torch.randn(4, 500)
    x = torch.cat([x0, 2 * x0], 0)  # group 1 = 2 * group 0
    xa = torch.cat([x, torch.ones(1, 500)], 0).double()
    cov = xa @ xa.t() / 500
    gw, gb = fit_blocks(w, b, cov, groups=2, ridge=1e-9)
    target = w @ x + b[:, None]
    fitted = torch.cat([gw[:4] @ x[:4], gw[4:] @ x[4:]], 0) + gb[:, None]
    truncated = torch.cat([w[:4, :4] @ x[:4], w[4:, 4:] @ x[4:]], 0) + b[:, None]
    assert torch.allclose(fitted, target, atol=1e-3)
    assert (truncated - target).abs().max() > 0.5


def test_calibration_reduces_output_error(teacher):
    cal = [batch(s) for s in range(4)]
    plain = relative_error(teacher, squeeze(teacher, permute=False), cal)
    fitted = relative_error(teacher, squeeze(teacher, permute=False, calibration=cal), cal)
    assert fitted["hidden"] < plain["hidden"]


def test_sequential_fit_beats_the_independent_fit(teacher):
    """Fitting each layer on the student's own inputs (with the residual error fed back) ends closer to the teacher
    than fitting every projection on the teacher's inputs; both beat plain truncation."""
    cal, held = [batch(s) for s in range(8)], [batch(s) for s in range(100, 104)]
    plain = relative_error(teacher, squeeze(teacher), held)
    independent = relative_error(teacher, squeeze(teacher, calibration=cal, sequential=False), held)
    sequential = relative_error(teacher, squeeze(teacher, calibration=cal), held)
    assert sequential["hidden"] < independent["hidden"] < plain["hidden"]


def test_sequential_fit_with_dense_groups_reproduces_the_teacher(teacher):
    """With no grouping, least squares on enough tokens recovers every weight: the stages, the permuted targets and
    the residual feedback line up with the model's data flow (a misplaced target would show here)."""
    cal = [batch(s) for s in range(12)]
    student = squeeze(teacher, DENSE, permute=True, calibration=cal, ridge=1e-9)
    error = relative_error(teacher, student, [batch(200)])
    assert error["hidden"] < 1e-3 and error["logits"] < 1e-3


def test_parse_groups_and_bad_groups(teacher):
    assert parse_groups("paper")["post_attention_groups"] == 1
    assert parse_groups("2") == {"q_groups": 2, "k_groups": 2, "v_groups": 2, "post_attention_groups": 1,
                                 "intermediate_groups": 2, "output_groups": 2}
    assert parse_groups("q=2,output_groups=8")["output_groups"] == 8
    with pytest.raises(ValueError, match="bad entry"):
        parse_groups("qq=2")
    with pytest.raises(ValueError, match="q_groups"):
        squeeze(teacher, {"q_groups": 5})
