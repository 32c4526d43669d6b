"""Squeeze: a dense (or differently grouped) BERT -> a SqueezeBERT of the same depth and width, initialised from it.

Everything that is not a grouped projection (embeddings, the attention output projection when it stays dense,
LayerNorms, pooler, task heads) is copied. A grouped projection with G groups can only hold the G diagonal blocks of
the dense weight ``W (Cout, Cin)``; what it cannot hold is lost. Three steps reduce the loss, each measured by
``benchmarks/distill_minilm.py squeeze-error`` (numbers in docs/results.md, "Distillation"):

1. **Block diagonal** (always): group g keeps ``W[rows of g, cols of g]``.
2. **Permutations folded into neighbours** (``permute=True``): some channel orders are free to change without
   changing the function, and a good order puts more of W's energy (sum of squares) inside the diagonal blocks.
   - FFN intermediate channels: permute the rows of W1/b1 and the columns of W2 together (GELU is elementwise).
   - Attention heads: move whole heads, i.e. the same head permutation on Q, K and V rows and on the columns of
     the attention output projection (each head's softmax only mixes its own Q, K, V channels). Channel
     permutations *inside* a head are also free but cannot change any channel's group when groups hold whole
     heads (the usual case: 12 heads, 4 groups), so they are not searched.
   The order is a balanced assignment (``scipy.optimize.linear_sum_assignment``) of channels (heads) to group slots
   maximising the kept, norm-relative energy of all the matrices the permutation touches.
3. **Calibrated fit** (``calibration=`` some token batches): instead of truncating, each group's block (and bias) is
   the least-squares fit of the dense layer's output from that group's inputs on real activations of the teacher:
   ``[W_g b_g] = argmin E||W x + b - W_g x_g - b_g||^2``, closed form from the input covariance (ridge-regularised).
   The dropped cross-group terms are predicted from the kept inputs wherever they are correlated.
4. **Sequential fit** (``sequential=True``, the default with calibration): as 3, but layer by layer and projection by
   projection in the order the data flows (Q/K/V, attention output, FFN in, FFN out), each fitted on the *student's
   own* inputs (its already-squeezed earlier layers) to the *teacher's* outputs at that point, so errors do not pile
   up through the depth. Dense projections (the attention output) are refitted too, and the two projections that
   feed a residual sum are fitted to ``teacher's sum - student's residual``: each sublayer also repairs what the
   layers below got wrong (GPTQ / OBC-style error feedback, with plain least squares).

The residual stream (hidden channels) keeps its order: permuting it would permute the model's hidden-state output.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..config import GROUP_FIELDS, SqueezeBertConfig
from ..model import GroupedProjection, SqueezeBertPreTrainedModel, encoder_of

log = logging.getLogger(__name__)

# The paper's grouping (SqueezeBERT, section 3): Q, K, V and both FFN layers in 4 groups, attention output dense.
PAPER_GROUPS: dict[str, int] = {"q_groups": 4, "k_groups": 4, "v_groups": 4, "post_attention_groups": 1,
                                "intermediate_groups": 4, "output_groups": 4}

# the projections' module paths inside a layer
Q, K, V, O = "attention.query", "attention.key", "attention.value", "post_attention.conv1d"
I1, I2 = "intermediate.conv1d", "output.conv1d"
# projection -> its config group field
PROJECTIONS: dict[str, str] = {Q: "q_groups", K: "k_groups", V: "v_groups", O: "post_attention_groups",
                               I1: "intermediate_groups", I2: "output_groups"}


@dataclass
class SqueezeReport:
    """What squeezing kept: per projection, the fraction of the dense weight's energy inside the diagonal blocks."""

    groups: dict[str, int]
    permute: bool
    calibrated: bool
    kept_energy: dict[str, float] = field(default_factory=dict)  # "layer 0 query" -> fraction in [0, 1]
    sequential: bool = False

    def mean_kept(self) -> float:
        grouped = [v for v in self.kept_energy.values() if v < 1.0] or [1.0]
        return sum(grouped) / len(grouped)

    def summary(self) -> str:
        groups = ", ".join(f"{k}={v}" for k, v in self.groups.items())
        how = "block diagonal" + (" + folded permutations" if self.permute else "") + (
            (" + sequential least-squares fit" if self.sequential else " + calibrated least-squares fit")
            if self.calibrated else "")
        return f"squeezed to {groups} ({how}); mean weight energy kept in grouped projections: {self.mean_kept():.1%}"


def parse_groups(text: str | None) -> dict[str, int]:
    """``"4"`` (every group field of the paper's grouping except the dense attention output), ``"paper"``, or
    ``"q=4,k=4,v=4,post_attention=1,intermediate=4,output=4"`` (``_groups`` suffix optional)."""
    if text is None or text == "paper":
        return dict(PAPER_GROUPS)
    text = text.strip()
    if text.isdigit():
        g = int(text)
        return {name: (1 if name == "post_attention_groups" else g) for name in GROUP_FIELDS}
    groups = dict(PAPER_GROUPS)
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        name = name if name.endswith("_groups") else f"{name}_groups"
        if name not in GROUP_FIELDS or not value.strip().isdigit():
            raise ValueError(f"--groups: bad entry {part!r}; expected NAME=INT with NAME one of "
                             f"{', '.join(g.removesuffix('_groups') for g in GROUP_FIELDS)}")
        groups[name] = int(value)
    return groups


# ---- weights as dense matrices ---------------------------------------------------------------------------------


def dense_weight(proj: GroupedProjection) -> Tensor:
    """The (Cout, Cin) matrix a grouped projection computes (block diagonal when groups > 1)."""
    g, co, ci = proj.groups, proj.out_channels, proj.in_channels
    w = proj.weight.detach().float()
    if g == 1:
        return w.clone()
    return torch.block_diag(*w.view(g, co // g, ci // g).unbind(0))


def block_diagonal(w: Tensor, groups: int) -> Tensor:
    """(Cout, Cin) -> the grouped weight (Cout, Cin/G): row r of group g keeps its columns of group g."""
    co, ci = w.shape
    blocks = [w[g * co // groups:(g + 1) * co // groups, g * ci // groups:(g + 1) * ci // groups]
              for g in range(groups)]
    return torch.cat(blocks, 0)


def kept_energy(w: Tensor, groups: int) -> float:
    total = float(w.pow(2).sum())
    return float(block_diagonal(w, groups).pow(2).sum()) / total if total > 0 else 1.0


def _group_energy(w: Tensor, groups: int, along_rows: bool) -> Tensor:
    """Energy of each row (or column) of ``w`` inside each column (or row) group: (rows, G) or (cols, G)."""
    sq = w.pow(2)
    if along_rows:  # E[r, g] = sum of row r over the columns of group g
        return sq.view(sq.shape[0], groups, sq.shape[1] // groups).sum(-1)
    return sq.t().reshape(sq.shape[1], groups, sq.shape[0] // groups).sum(-1)  # E[c, g] over the rows of group g


def _assign(score: Tensor) -> Tensor:
    """Balanced assignment maximising score[item, slot]; returns perm with perm[slot] = item."""
    from scipy.optimize import linear_sum_assignment

    items, slots = linear_sum_assignment(score.double().numpy(), maximize=True)
    perm = torch.empty(len(slots), dtype=torch.long)
    perm[torch.as_tensor(slots)] = torch.as_tensor(items)
    return perm


def ffn_permutation(w1: Tensor, w2: Tensor, g1: int, g2: int) -> Tensor:
    """Order of the FFN intermediate channels that keeps the most of W1 (I, H) and W2 (H, I) in their blocks."""
    inter = w1.shape[0]
    e1 = _group_energy(w1, g1, along_rows=True) / w1.pow(2).sum()  # (I, g1): channel j's row of W1 in input group
    e2 = _group_energy(w2, g2, along_rows=False) / w2.pow(2).sum()  # (I, g2): channel j's column of W2 in out group
    slot = torch.arange(inter)
    score = e1[:, slot * g1 // inter] + e2[:, slot * g2 // inter]  # (I channels, I slots)
    return _assign(score)


def head_permutation(qkv: Sequence[tuple[Tensor, int]], out: tuple[Tensor, int], num_heads: int) -> Tensor:
    """Order of the attention heads that keeps the most of Q, K, V (rows per head) and the output projection
    (columns per head) in their blocks."""
    c = qkv[0][0].shape[0]
    d = c // num_heads
    offsets = torch.arange(d)
    score = torch.zeros(num_heads, num_heads, dtype=torch.float64)
    parts = [(_group_energy(w, g, along_rows=True), g) for w, g in qkv]
    parts.append((_group_energy(out[0], out[1], along_rows=False), out[1]))
    for (energy, g), w in zip(parts, [w for w, _ in qkv] + [out[0]]):
        energy = energy.double() / float(w.pow(2).sum())
        for head in range(num_heads):
            rows = energy[head * d + offsets]  # (d, G): this head's channels
            for slot in range(num_heads):
                score[head, slot] += rows[offsets, (slot * d + offsets) * g // c].sum()
    return _assign(score)


def _channels(head_perm: Tensor, d: int) -> Tensor:
    return (head_perm[:, None] * d + torch.arange(d)).reshape(-1)


# ---- calibration --------------------------------------------------------------------------------------------------


class _Moments:
    """Running E[x x^T] of a projection's input over valid tokens (augmented with a constant 1) and, when targets
    are given, E[x y^T] with them."""

    def __init__(self) -> None:
        self.xx: Tensor | None = None
        self.xy: Tensor | None = None
        self.n = 0

    def add(self, x: Tensor, y: Tensor | None = None) -> None:  # x: (Cin, T), y: (Cout, T)
        # One batch's products in fp32 (a few thousand tokens: 3-4x faster than fp64 on CPUs), summed over batches
        # in fp64, where the solve happens.
        xa = torch.cat([x.float(), torch.ones(1, x.shape[1])], 0)
        xx = (xa @ xa.t()).double()
        self.xx = xx if self.xx is None else self.xx + xx
        if y is not None:
            xy = (xa @ y.float().t()).double()
            self.xy = xy if self.xy is None else self.xy + xy
        self.n += x.shape[1]

    def covariance(self) -> Tensor:
        return self.xx / max(self.n, 1)


class _GroupMoments:
    """Per group g: E[[x_g;1][x_g;1]^T] of the group's inputs and E[[x_g;1] y_g^T] with its targets. Only the
    diagonal blocks a grouped projection can use are accumulated (1/G of the full moments' cost)."""

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self.parts = [_Moments() for _ in range(groups)]

    def add(self, x: Tensor, y: Tensor) -> None:  # x: (Cin, T), y: (Cout, T)
        for part, xg, yg in zip(self.parts, x.chunk(self.groups), y.chunk(self.groups)):
            part.add(xg, yg)

    def solve(self, ridge: float) -> tuple[Tensor, Tensor]:
        """The grouped weight (Cout, Cin/G) and bias of the least-squares fit, ridge-regularised (``solve_blocks``)."""
        fits = [solve_blocks(p.xx / p.n, p.xy / p.n, 1, ridge) for p in self.parts]
        return torch.cat([w for w, _ in fits], 0), torch.cat([b for _, b in fits], 0)


def collect_moments(model: SqueezeBertPreTrainedModel, batches: Iterable[dict[str, Tensor]]) -> dict[str, _Moments]:
    """Input moments of every projection in every layer of ``model``, keyed ``"{layer}.{projection}"``."""
    base = encoder_of(model)
    moments: dict[str, _Moments] = {}
    valid: list[Tensor] = []
    hooks = []
    for i, layer in enumerate(base.encoder.layers):
        for path in PROJECTIONS:
            module = layer.get_submodule(path)
            key = f"{i}.{path}"
            moments[key] = _Moments()

            def hook(mod: nn.Module, inputs: tuple[Tensor, ...], key: str = key) -> None:
                x = inputs[0]
                moments[key].add(x[:, valid[0]] if valid and valid[0] is not None else x)

            hooks.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                mask = batch.get("attention_mask")
                valid[:] = [mask.reshape(-1).bool() if mask is not None else None]
                base(batch["input_ids"], mask, batch.get("token_type_ids"))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return moments


def fit_blocks(w: Tensor, b: Tensor, cov: Tensor, groups: int, ridge: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Least-squares grouped weight and bias reproducing ``W x + b`` from each group's own inputs.

    ``cov`` is the augmented second moment E[[x;1][x;1]^T] of the inputs, (Cin+1, Cin+1).
    """
    wb = torch.cat([w, b[:, None]], 1).double()  # (Cout, Cin+1)
    return solve_blocks(cov, cov @ wb.t(), groups, ridge)


def solve_blocks(xx: Tensor, xy: Tensor, groups: int, ridge: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Grouped weight (Cout, Cin/G) and bias minimising E||y - W_g x_g - b_g||^2 per group, from the augmented
    moments ``xx`` = E[[x;1][x;1]^T] (Cin+1, Cin+1) and ``xy`` = E[[x;1] y^T] (Cin+1, Cout); ridge-regularised
    relative to the mean input energy, so rarely used directions stay near zero instead of blowing up."""
    ci, co = xx.shape[0] - 1, xy.shape[1]
    out_w, out_b = [], []
    for g in range(groups):
        rows = slice(g * co // groups, (g + 1) * co // groups)
        cols = torch.cat([torch.arange(g * ci // groups, (g + 1) * ci // groups), torch.tensor([ci])])
        a = xx[cols][:, cols]
        a = a + ridge * a.diagonal()[:-1].mean() * torch.eye(len(cols), dtype=a.dtype)
        sol = torch.linalg.solve(a, xy[cols][:, rows])  # (Cin/G+1, Cout/G)
        out_w.append(sol[:-1].t())
        out_b.append(sol[-1])
    return torch.cat(out_w, 0).float(), torch.cat(out_b, 0).float()


# The order data flows through one layer: a stage's inputs exist only once the stages before it are fitted.
STAGES: tuple[tuple[str, ...], ...] = ((Q, K, V), (O,), (I1,), (I2,))
# projection -> the module whose *input* is the residual added to its output before the LayerNorm (None: the layer's
# own input)
RESIDUALS: dict[str, str | None] = {O: None, I2: I1}


def _layer_inputs(model: SqueezeBertPreTrainedModel, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, int]:
    """The first encoder layer's input (C, B*S), the additive mask and the batch size, for one token batch."""
    base = encoder_of(model)
    inputs = base.prepare_inputs(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
    embedded = base.embeddings(inputs.input_ids, inputs.token_type_ids, inputs.position_ids)  # (B, S, C)
    return embedded.permute(2, 0, 1).reshape(embedded.shape[-1], -1), inputs.mask, inputs.input_ids.shape[0]


def _run_layer(layer: nn.Module, x: Tensor, mask: Tensor | None, batch: int) -> tuple[dict, dict, Tensor]:
    """One encoder layer on ``x``, recording every projection's input and output: (inputs, outputs, layer output)."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    hooks = []
    for path in PROJECTIONS:
        def hook(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor, path: str = path) -> None:
            inputs[path], outputs[path] = args[0], out
        hooks.append(layer.get_submodule(path).register_forward_hook(hook))
    try:
        y, _ = layer(x, mask, batch)
    finally:
        for h in hooks:
            h.remove()
    return inputs, outputs, y


def fit_sequential(teacher: SqueezeBertPreTrainedModel, student: SqueezeBertPreTrainedModel,
                   batches: Sequence[dict[str, Tensor]], output_orders: Sequence[dict[str, Tensor | None]],
                   ridge: float = 1e-3) -> None:
    """Refit every projection of ``student`` (already squeezed, same depth and width as ``teacher``) layer by layer,
    stage by stage, on the student's own inputs to the teacher's outputs (module docstring, step 4).

    ``output_orders[i][path]``: the student's output-channel order of that projection relative to the teacher's
    (folded permutations), or None when unchanged.
    """
    t_base, s_base = encoder_of(teacher), encoder_of(student)
    was_training = teacher.training, student.training
    teacher.eval(), student.eval()
    cached = []  # per batch: teacher's and student's input to the current layer, mask, batch size, valid tokens
    with torch.no_grad():
        for batch in batches:
            x, mask, b = _layer_inputs(teacher, batch)
            valid = batch["attention_mask"].reshape(-1).bool() if batch.get("attention_mask") is not None else None
            cached.append([x, x.clone(), mask, b, valid])  # the student's embeddings are the teacher's
        for i, (t_layer, s_layer) in enumerate(zip(t_base.encoder.layers, s_base.encoder.layers)):
            for stage in STAGES:
                moments = {path: _GroupMoments(s_layer.get_submodule(path).groups) for path in stage}
                for x_t, x_s, mask, b, valid in cached:
                    t_in, t_out, _ = _run_layer(t_layer, x_t, mask, b)
                    s_in, _, _ = _run_layer(s_layer, x_s, mask, b)
                    for path in stage:
                        order = output_orders[i][path]
                        target = t_out[path] if order is None else t_out[path][order]
                        if path in RESIDUALS:  # match the teacher's residual sum, not just its projection
                            source = RESIDUALS[path]
                            target = target + (x_t - x_s if source is None else t_in[source] - s_in[source])
                        keep = (lambda z: z[:, valid]) if valid is not None else (lambda z: z)
                        moments[path].add(keep(s_in[path]), keep(target))
                for path in stage:
                    module = s_layer.get_submodule(path)
                    w, bias = moments[path].solve(ridge)
                    module.weight.copy_(w)
                    module.bias.copy_(bias)
            for row in cached:  # advance both models to the next layer's input
                row[0] = t_layer(row[0], row[2], row[3])[0]
                row[1] = s_layer(row[1], row[2], row[3])[0]
            log.info("squeeze: layer %d fitted on the student's own activations", i)
    teacher.train(was_training[0]), student.train(was_training[1])


# ---- squeeze ------------------------------------------------------------------------------------------------------


def _load(teacher: SqueezeBertPreTrainedModel | str | os.PathLike) -> SqueezeBertPreTrainedModel:
    if isinstance(teacher, (str, os.PathLike)):
        from ..checkpoint import load_model

        return load_model(teacher)
    return teacher


def squeeze(
    teacher: SqueezeBertPreTrainedModel | str | os.PathLike,
    groups: dict[str, int] | str | None = None,
    permute: bool = True,
    calibration: Iterable[dict[str, Tensor]] | None = None,
    ridge: float = 1e-3,
    return_report: bool = False,
    sequential: bool = True,
):
    """A SqueezeBERT with ``teacher``'s depth, width and head, its projections grouped as ``groups`` (default the
    paper's), initialised from the teacher (see the module docstring). The teacher is not modified.

    ``calibration``: batches (``input_ids``, ``attention_mask``, ``token_type_ids``) of real text for the
    least-squares fit; None keeps the plain block-diagonal weights. ``sequential`` (default) fits layer by layer on
    the student's own activations (step 4 of the module docstring); False fits every projection independently on
    the teacher's activations (step 3).
    """
    teacher = _load(teacher)
    groups = parse_groups(groups) if isinstance(groups, str) or groups is None else dict(groups)
    unknown = sorted(set(groups) - set(GROUP_FIELDS))
    if unknown:
        raise ValueError(f"unknown group field(s) {unknown}; expected some of {', '.join(GROUP_FIELDS)}")
    config: SqueezeBertConfig = teacher.config.replace(**groups)  # validates divisibility, naming the field
    calibration = list(calibration) if calibration is not None else None
    moments = collect_moments(teacher, calibration) if calibration is not None and not sequential else None

    student = copy.deepcopy(teacher)
    student.config = config
    base = encoder_of(student)
    base.config = config
    report = SqueezeReport({k: getattr(config, k) for k in GROUP_FIELDS}, permute, calibration is not None,
                           sequential=calibration is not None and sequential)
    output_orders: list[dict[str, Tensor | None]] = []  # per layer: the student's output-channel order per projection
    with torch.no_grad():
        for i, layer in enumerate(base.encoder.layers):
            dense = {p: dense_weight(layer.get_submodule(p)) for p in PROJECTIONS}
            bias = {p: layer.get_submodule(p).bias.detach().float().clone() for p in PROJECTIONS}
            perm_in = {p: None for p in PROJECTIONS}  # input-channel permutation applied to each projection
            if permute:
                _permute_layer(layer, config, dense, bias, perm_in)
            output_orders.append({Q: perm_in[O], K: perm_in[O], V: perm_in[O], O: None, I1: perm_in[I2], I2: None})
            for path, field_name in PROJECTIONS.items():
                g = getattr(config, field_name)
                old = layer.get_submodule(path)
                new = GroupedProjection(old.in_channels, old.out_channels, g)
                w, b = dense[path], bias[path]
                short = path.split(".")[-1] if "attention." in path else path.split(".")[0]
                report.kept_energy[f"layer {i} {short}"] = kept_energy(w, g)
                if moments is not None and g > 1:
                    cov = moments[f"{i}.{path}"].covariance()
                    if perm_in[path] is not None:
                        idx = torch.cat([perm_in[path], torch.tensor([cov.shape[0] - 1])])
                        cov = cov[idx][:, idx]
                    new_w, new_b = fit_blocks(w, b, cov, g, ridge)
                else:
                    new_w, new_b = block_diagonal(w, g), b
                new.weight.copy_(new_w)
                new.bias.copy_(new_b)
                parent_path, _, name = path.rpartition(".")
                setattr(layer.get_submodule(parent_path), name, new)
        if report.sequential:
            fit_sequential(teacher, student, calibration, output_orders, ridge)
    student.eval()
    log.info(report.summary())
    return (student, report) if return_report else student


def _permute_layer(layer: nn.Module, config: SqueezeBertConfig, dense: dict[str, Tensor], bias: dict[str, Tensor],
                   perm_in: dict[str, Tensor | None]) -> None:
    """Choose the head and FFN orders of one layer that keep the most energy in the blocks, and apply them."""
    h = config.num_attention_heads
    head_perm = head_permutation([(dense[Q], config.q_groups), (dense[K], config.k_groups),
                                  (dense[V], config.v_groups)], (dense[O], config.post_attention_groups), h)
    ffn_perm = ffn_permutation(dense[I1], dense[I2], config.intermediate_groups, config.output_groups)
    apply_permutations(dense, bias, perm_in, head_perm, ffn_perm, config.hidden_size // h)


def apply_permutations(dense: dict[str, Tensor], bias: dict[str, Tensor], perm_in: dict[str, Tensor | None],
                       head_perm: Tensor, ffn_perm: Tensor, head_size: int) -> None:
    """Reorder heads (Q, K, V rows and attention-output columns) and FFN channels (W1 rows, W2 columns) of one
    layer's dense weights in place; the layer computes the same function. ``perm_in`` records the input orders."""
    ch = _channels(head_perm, head_size)
    for p in (Q, K, V):
        dense[p], bias[p] = dense[p][ch], bias[p][ch]
    dense[O] = dense[O][:, ch]
    perm_in[O] = ch
    dense[I1], bias[I1] = dense[I1][ffn_perm], bias[I1][ffn_perm]
    dense[I2] = dense[I2][:, ffn_perm]
    perm_in[I2] = ffn_perm


def text_batches(tokenizer: Any, texts: Sequence[str], batch_size: int = 16, max_length: int = 128
                 ) -> list[dict[str, Tensor]]:
    """Calibration batches from raw sentences."""
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start:start + batch_size]), padding="longest", truncation=True,
                        max_length=max_length, return_tensors="pt")
        out.append({k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


def relative_error(teacher: nn.Module, student: nn.Module, batches: Iterable[dict[str, Tensor]]) -> dict[str, float]:
    """||student - teacher|| / ||teacher|| of the last hidden states (valid tokens) and, for heads, the logits."""
    num = {"hidden": 0.0, "logits": 0.0}
    den = {"hidden": 0.0, "logits": 0.0}
    teacher.eval(), student.eval()
    with torch.no_grad():
        for batch in batches:
            t, s = teacher(**batch, output_hidden_states=True), student(**batch, output_hidden_states=True)
            valid = batch["attention_mask"].bool()
            th, sh = t.hidden_states[-1][valid], s.hidden_states[-1][valid]
            num["hidden"] += float((sh - th).pow(2).sum())
            den["hidden"] += float(th.pow(2).sum())
            if t.logits is not None and t.logits.shape == s.logits.shape and t.logits.dim() == 2:
                num["logits"] += float((s.logits - t.logits).pow(2).sum())
                den["logits"] += float(t.logits.pow(2).sum())
    return {k: (num[k] / den[k]) ** 0.5 for k in num if den[k] > 0}


def save_squeezed(student: SqueezeBertPreTrainedModel, out_dir: str | os.PathLike,
                  tokenizer_from: str | os.PathLike | None = None, command: str | None = None) -> Path:
    """The student as a checkpoint, with the teacher's tokenizer (``tokenizer_from``: the teacher's directory) and,
    for a sentence-transformers teacher, its pooling files, so it loads with ``SentenceTransformer(out_dir)``."""
    from ..checkpoint import save_model

    card = {"made_by": "squeezed from a dense BERT (grouped projections initialised from its weights)",
            "base_model": str(tokenizer_from) if tokenizer_from else None, "command": command}
    return save_model(student, out_dir, copy_tokenizer_from=tokenizer_from, sentence_transformers_from=tokenizer_from,
                      card=card)
