"""Fast inference: one model definition, a precision as a module swap, optionally compiled.

``for_inference(model, precision)`` returns an :class:`InferenceModel` that shares the model's definition:

- ``fp32``: the model as it is (each grouped projection one batched matmul over its groups).
- ``bf16``: every grouped projection swapped for a bf16 batched matmul (oneDNN, AVX512-BF16), the two attention
  products in bf16; embeddings, LayerNorms, softmax, residuals and heads stay fp32. Only on CPUs with native bf16
  (AVX512-BF16 / AMX): elsewhere it is emulated and slower than fp32, so it is refused with an error saying so
  (``allow_emulated_bf16=True`` runs it anyway, for numerics checks).
- ``int8``: every grouped projection swapped for an int8 matmul (``torch._int_mm``, AVX512-VNNI) with per-output-
  channel weight scales and per-token, per-group dynamic activation scales; without VNNI, fbgemm's AVX2 kernels.
  The attention products run in bf16 where it is native, fp32 elsewhere.

Every precision but fp32 also swaps each attention for :class:`InferenceAttention` (Q, K and V stacked into one
projection when they are grouped alike; the products in bf16 where stated above). All swaps are modules replacing
modules, gpt-fast style: the model's own classes carry nothing for inference.

Compilation is opt-in: ``compile=False`` (the default) runs the swapped modules eagerly, with no warm-up. With
``compile=True`` the forward pass is compiled by ``torch.compile`` (inductor, with freezing so weights are
constant-folded and pre-packed, and elementwise work such as bias + GELU, residual + LayerNorm and the int8
(de)quantisation is fused). That costs 30-45 s on the first call for each new input shape (measured on one core of
an AVX2 EPYC), so it is off by default: users feed arbitrary shapes, and a stall of that length on a new one is
worse than the speed-up. Opt in when shapes are bounded: bucketed lengths (``squeezebert.infer.batching``) and a
warm-up over the buckets, or ``dynamic=True`` (symbolic shapes, fewer recompilations; its speed not measured here).
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..model import (EncoderInputs, GroupedProjection, ModelOutput, SelfAttention, SqueezeBertPreTrainedModel,
                     grouped_matmul)
from ..precision import WEIGHT_FORMATS

PRECISIONS = WEIGHT_FORMATS  # the weight formats a model converts to (a training precision is an autocast dtype)


def set_threads(threads: int | None = None) -> int:
    """One intra-op thread per core and a single inter-op thread, so concurrent work does not oversubscribe the
    cores (a server runs one model call at a time on all cores rather than several fighting for them)."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # can only be set before the first inter-op work; whatever is set then stays
        pass
    return threads


class BF16Projection(nn.Module):
    """A grouped projection as one bf16 batched matmul; fp32 in, fp32 out."""

    def __init__(self, proj: GroupedProjection):
        super().__init__()
        g, co, ci = proj.groups, proj.out_channels, proj.in_channels
        self.groups, self.out_channels, self.in_channels = g, co, ci
        self.register_buffer("weight", proj.weight.detach().view(g, co // g, ci // g).to(torch.bfloat16).clone())
        self.register_buffer("bias", proj.bias.detach().view(g, co // g, 1).to(torch.bfloat16).clone())

    def forward(self, x: Tensor) -> Tensor:  # (Cin, T) -> (Cout, T)
        g, t = self.groups, x.shape[1]
        y = grouped_matmul(self.bias, self.weight, x.to(torch.bfloat16).view(g, self.in_channels // g, t))
        return y.view(self.out_channels, t).float()


class Int8Projection(nn.Module):
    """A grouped projection in int8: W (per output channel scale) times X (per token and group scale), int32
    accumulation with VNNI, then rescale + bias in fp32. Symmetric, so zero points are 0."""

    def __init__(self, proj: GroupedProjection):
        super().__init__()
        g, co, ci = proj.groups, proj.out_channels, proj.in_channels
        self.groups, self.out_channels, self.in_channels = g, co, ci
        w = proj.weight.detach().float()  # (Cout, Cin/G)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight", q.view(g, co // g, ci // g).contiguous())
        self.register_buffer("scale", scale.view(g, co // g, 1).clone())
        self.register_buffer("bias", proj.bias.detach().float().view(g, co // g, 1).clone())

    def forward(self, x: Tensor) -> Tensor:  # (Cin, T) -> (Cout, T)
        g, t = self.groups, x.shape[1]
        xg = x.view(g, self.in_channels // g, t)
        x_scale = xg.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # (G, 1, T): per group and token
        xq = torch.round(xg / x_scale).to(torch.int8)  # |x / scale| <= 127 by construction
        acc = torch.stack([torch._int_mm(self.weight[i], xq[i]) for i in range(g)])  # (G, Cout/G, T) int32
        return (acc.float() * self.scale * x_scale + self.bias).view(self.out_channels, t)


class FbgemmInt8Projection(nn.Module):
    """A grouped projection in int8 through fbgemm's dynamic quantized linear (what ``quantize_dynamic`` uses):
    per-output-channel int8 weights, activations quantised per call and per group. For CPUs without VNNI, where
    ``torch._int_mm`` falls back to a slow generic loop (about 1/30 of fp32 GEMM speed on AVX2 alone) while
    fbgemm has hand-tuned AVX2 int8 kernels."""

    def __init__(self, proj: GroupedProjection):
        super().__init__()
        g, co, ci = proj.groups, proj.out_channels, proj.in_channels
        self.groups, self.out_channels, self.in_channels = g, co, ci
        w = proj.weight.detach().float().view(g, co // g, ci // g)
        b = proj.bias.detach().float().view(g, co // g)
        self.packed = []
        for i in range(g):
            scale = w[i].abs().amax(dim=1).clamp(min=1e-12) / 127.0
            with warnings.catch_warnings():  # quantized tensors are deprecated, but fbgemm's packing takes only them
                warnings.simplefilter("ignore")
                q = torch.quantize_per_channel(w[i], scale.double(), torch.zeros(co // g, dtype=torch.long), 0,
                                               torch.qint8)
            self.packed.append(torch.ops.quantized.linear_prepack(q, b[i].clone()))

    def forward(self, x: Tensor) -> Tensor:  # (Cin, T) -> (Cout, T)
        xt = x.t()  # (T, Cin): fbgemm wants tokens as rows
        k = self.in_channels // self.groups
        # reduce_range: 7-bit activations, as quantize_dynamic does on x86, so AVX2's 16-bit pairwise sums
        # (vpmaddubsw) cannot saturate
        parts = [torch.ops.quantized.linear_dynamic(xt[:, i * k:(i + 1) * k].contiguous(), p, True)
                 for i, p in enumerate(self.packed)]
        return torch.cat(parts, dim=1).t().contiguous()  # (T, Cout) -> (Cout, T)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return frozenset()


def has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX)."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Elsewhere oneDNN emulates bf16 at a fraction
    of fp32 speed (measured 0.4 vs 14 GFLOP/s on an AVX2 EPYC), so a bf16 path would only be slower."""
    capability = torch.backends.cpu.get_cpu_capability()  # a fallback where /proc/cpuinfo is not readable
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags()) or "BF16" in capability or "AMX" in capability


def cpu_class() -> str:
    """A label for figures: the instruction-set class the fast paths depend on."""
    if {"amx_bf16", "amx_int8"} & cpu_flags():
        return "AMX"
    if "avx512f" in cpu_flags():
        extras = [n for n, f in (("VNNI", "avx512_vnni"), ("BF16", "avx512_bf16")) if f in cpu_flags()]
        return "AVX-512" + "".join(f" {e}" for e in extras)
    if "avx2" in cpu_flags():
        return "AVX2" + (" AVX-VNNI" if "avx_vnni" in cpu_flags() else "")
    return torch.backends.cpu.get_cpu_capability()


def int8_projection(proj: GroupedProjection) -> nn.Module:
    """torch._int_mm where the CPU has VNNI (fuses with the scales under torch.compile); fbgemm elsewhere."""
    return Int8Projection(proj) if has_vnni() else FbgemmInt8Projection(proj)


SWAPS: dict[str, Callable[[GroupedProjection], nn.Module] | None] = {
    "fp32": None, "bf16": BF16Projection, "int8": int8_projection}


def stack_projections(projections: list[GroupedProjection]) -> GroupedProjection:
    """Q, K and V (same input, same groups) as one projection with 3x the output channels, ordered so that group g
    of the stacked projection holds [Q_g; K_g; V_g]: one activation pass and one GEMM call per group, not three."""
    g, co, ci = projections[0].groups, projections[0].out_channels, projections[0].in_channels
    stacked = GroupedProjection(ci, co * len(projections), g)
    with torch.no_grad():
        w = torch.stack([p.weight.view(g, co // g, ci // g) for p in projections], 1)  # (G, 3, Cout/G, Cin/G)
        b = torch.stack([p.bias.view(g, co // g) for p in projections], 1)  # (G, 3, Cout/G)
        stacked.weight.copy_(w.reshape(len(projections) * co, ci // g))
        stacked.bias.copy_(b.reshape(-1))
    return stacked


class FusedQKV(nn.Module):
    """Runs a stacked Q/K/V projection and splits its output back into Q, K, V, each (C, T)."""

    def __init__(self, projection: nn.Module, groups: int, channels: int):
        super().__init__()
        self.projection, self.groups, self.channels = projection, groups, channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        g, c, t = self.groups, self.channels, x.shape[1]
        y = self.projection(x).view(g, 3, c // g, t)  # group-major: [Q_g; K_g; V_g] per group
        return tuple(y[:, i].reshape(c, t) for i in range(3))


class SeparateQKV(nn.Module):
    """Q, K and V as three projections (when their groupings differ, so they cannot be stacked)."""

    def __init__(self, query: nn.Module, key: nn.Module, value: nn.Module):
        super().__init__()
        self.query, self.key, self.value = query, key, value

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.query(x), self.key(x), self.value(x)


class InferenceAttention(SelfAttention):
    """A swap-in for :class:`SelfAttention`: Q, K and V stacked into one projection when grouped alike (one pass
    over the activations and one GEMM call per group, not three), and the two attention products in
    ``matmul_dtype`` (None: the activations' dtype). The attention itself (``attend``) is the model's."""

    def __init__(self, attention: SelfAttention, matmul_dtype: torch.dtype | None = None):
        nn.Module.__init__(self)  # not SelfAttention's: the weights come from `attention`, not fresh from a config
        self.num_heads, self.head_size, self.dropout = attention.num_heads, attention.head_size, attention.dropout
        self.matmul_dtype = matmul_dtype
        q, k, v = attention.query, attention.key, attention.value
        if q.groups == k.groups == v.groups:
            self.qkv = FusedQKV(stack_projections([q, k, v]), q.groups, q.out_channels)
        else:
            self.qkv = SeparateQKV(q, k, v)

    def forward(self, x: Tensor, mask: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        return self.attend(*self.qkv(x), mask, batch, x.dtype)

    def matmul(self, a: Tensor, b: Tensor) -> Tensor:  # attend casts the result back (softmax stays fp32)
        if self.matmul_dtype is None:
            return torch.bmm(a, b)
        return torch.bmm(a.to(self.matmul_dtype), b.to(self.matmul_dtype))


def convert(model: SqueezeBertPreTrainedModel, precision: str) -> SqueezeBertPreTrainedModel:
    """A copy of ``model`` for inference in ``precision`` (eval mode, no grads); the original is untouched."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    swap = SWAPS[precision]
    if swap is None:
        return model.eval().requires_grad_(False)  # fp32 shares the model itself
    model = copy.deepcopy(model).eval().requires_grad_(False)
    swap_attention(model, matmul_dtype=torch.bfloat16 if precision == "bf16" or has_native_bf16() else None)
    return swap_projections(model, swap)


def swap_attention(model: nn.Module, matmul_dtype: torch.dtype | None = None) -> nn.Module:
    """In place: every SelfAttention replaced by an :class:`InferenceAttention` holding the same weights (stacked
    Q/K/V where they are grouped alike; no second copy is kept)."""
    return _swap(model, SelfAttention, lambda attention: InferenceAttention(attention, matmul_dtype))


def swap_projections(model: nn.Module, swap: Callable[[GroupedProjection], nn.Module]) -> nn.Module:
    """In place: every GroupedProjection replaced by ``swap(projection)``."""
    return _swap(model, GroupedProjection, swap)


def _swap(model: nn.Module, kind: type[nn.Module], replace: Callable[[Any], nn.Module]) -> nn.Module:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, kind):
                setattr(module, name, replace(child))
    return model


class InferenceModel:
    """Callable like the model (``input_ids, attention_mask, token_type_ids``) -> ModelOutput, without labels,
    hidden states or attentions; inputs go through the model's own ``prepare_inputs`` (checked eagerly, outside the
    compiled graph)."""

    def __init__(self, model: SqueezeBertPreTrainedModel, precision: str = "fp32", compile: bool = False,
                 dynamic: bool | None = None, allow_emulated_bf16: bool = False):
        if precision == "bf16" and not (has_native_bf16() or allow_emulated_bf16):
            raise ValueError("bf16 refused: this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 would be "
                             "emulated and slower than fp32; use fp32, or int8 for reduced precision")
        self.precision = precision
        self.model = convert(model, precision)
        self.config = model.config
        self.compiled = compile
        # freezing: parameters become constants, so inductor pre-packs weights for oneDNN and folds casts.
        # The converted model is private to this object and never mutated, so guards on its modules can be skipped
        # (they cost ~0.5 ms a call at batch 1); guards on the input tensors (shapes, dtypes) stay. Skipping them is
        # only safe with a compile cache of our own: every instance shares the code of _forward, so
        # isolate_recompiles keeps one instance from running another's graph.
        options = {"freezing": True, "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
        self._run = (torch.compile(self._forward, dynamic=dynamic, options=options, isolate_recompiles=True)
                     if compile else self._forward)

    def _forward(self, inputs: EncoderInputs) -> ModelOutput:
        return self.model.forward_prepared(inputs)

    @torch.inference_mode()
    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 token_type_ids: Tensor | None = None) -> ModelOutput:
        return self._run(self.model.prepare_inputs(input_ids, attention_mask, token_type_ids))

    def __repr__(self) -> str:
        return f"InferenceModel({type(self.model).__name__}, precision={self.precision}, compiled={self.compiled})"


def for_inference(model: SqueezeBertPreTrainedModel, precision: str = "fp32", compile: bool = False,
                  **kwargs: Any) -> InferenceModel:
    """The inference-ready form of any model or checkpoint-loaded model. Eager unless ``compile=True`` (which
    compiles once per new input shape: see the module docstring)."""
    return InferenceModel(model, precision, compile, **kwargs)
