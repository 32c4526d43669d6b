"""The encoder in the layout an inference engine wants: tokens first, groups as column blocks, fused attention.

The model's own layout is channels-first ``(C, B*S)``, right for PyTorch's batched GEMMs but not for an ONNX graph:
exported as it is, every grouped projection became Transpose -> Slice x G -> MatMul x G -> Concat -> Add ->
Transpose, and the attention heads, LayerNorms and Q/K/V split added more Transposes and Reshapes (about 40 % of
the int8 run time in onnxruntime's profile moved data between per-group pieces).

Here activations stay ``(B, S, C)`` and a grouped projection is one MatMul per column block (``(B, S, C/G) @
(C/G, Cout/G)``, constant weights on the right, so onnxruntime's dynamic quantisation turns each into an int8 GEMM).
Blocks are kept apart for as long as the groups line up, so data stays still:

- Q/K/V: when the three projections share G groups and G divides the heads, group g's Q, K and V hold whole heads
  (H/G of them), so each group's attention is onnxruntime's fused ``Attention`` (com.microsoft: the QKV GEMM, the
  scaled products, masked softmax and the context in one node, with H/G heads) on its own block; its output is
  the context of those heads, i.e. the same column block of the context. Otherwise Q, K, V are projected and
  ``MultiHeadAttention`` runs over all heads.
- FFN: intermediate group g feeds output group g through bias + GELU (fused to ``BiasGelu``).
- Between sublayers: one Split and one Concat; bias + residual is one ``Sum`` before the LayerNorm.

The forward pass in PyTorch computes the same function as the model (checked by tests); when traced by
``torch.onnx.export`` the attention becomes the contrib op, with the opset ``com.microsoft`` version 1.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import EncoderLayer, GroupedProjection, ModelOutput, SqueezeBertPreTrainedModel, TaskModel, encoder_of

Blocks = list[Tensor]  # column blocks of one (B, S, C) activation, in channel order


def as_blocks(x: Tensor | Blocks, n: int) -> Blocks:
    """``x`` as ``n`` equal column blocks: free when it already is, else (Concat and) one Split."""
    if isinstance(x, list):
        if len(x) == n:
            return x
        x = x[0] if len(x) == 1 else torch.cat(x, dim=-1)
    return [x] if n == 1 else list(x.split(x.shape[-1] // n, dim=-1))  # one Split node (chunk gives Slices)


def as_tensor(x: Tensor | Blocks) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return x[0] if len(x) == 1 else torch.cat(x, dim=-1)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, heads: int) -> Tensor:
    """The model's attention on tokens-first tensors: (B, S, C) x 3, a (B, S) 1/0 key mask -> (B, S, C)."""
    b, s, c = q.shape
    d = c // heads
    q, k, v = (t.reshape(b, s, heads, d).transpose(1, 2) for t in (q, k, v))  # (B, S, C) -> (B, H, S, D)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)  # scaled after the product, as the model (a QUIRK there)
    scores = scores.masked_fill(keep[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    context = torch.softmax(scores, dim=-1) @ v  # (B, H, S, D)
    return context.transpose(1, 2).reshape(b, s, c)


class OrtAttention(torch.autograd.Function):
    """onnxruntime's ``Attention``: input (B, S, Cin) @ weight (Cin, 3C) + bias -> Q, K, V -> (B, S, C)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, keep: Tensor, heads: int) -> Tensor:
        q, k, v = (x @ weight + bias).chunk(3, dim=-1)
        return reference_attention(q, k, v, keep, heads)

    @staticmethod
    def symbolic(g, x, weight, bias, keep, heads: int):
        out = g.op("com.microsoft::Attention", x, weight, bias, keep, num_heads_i=heads)
        out.setType(x.type())
        return out


class OrtMultiHeadAttention(torch.autograd.Function):
    """onnxruntime's ``MultiHeadAttention`` on projected Q, K, V (B, S, C) with a (B, S) key padding mask."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, keep: Tensor, heads: int) -> Tensor:
        return reference_attention(q, k, v, keep, heads)

    @staticmethod
    def symbolic(g, q, k, v, keep, heads: int):
        none = g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())  # an empty optional input
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, none, keep, num_heads_i=heads)
        out.setType(q.type())
        return out


class Sum3(torch.autograd.Function):
    """``(a + b) + c`` as one ONNX ``Sum``: left as two Adds before a LayerNormalization, onnxruntime (1.32) fuses
    them into ``SkipLayerNormalization``, whose CPU kernel measured 2-3x slower than Add + Add + LayerNormalization
    (0.68 vs 0.21 ms at 1 x 128 x 768, one core); ``Sum`` does not match that fusion."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return a + b + c

    @staticmethod
    def symbolic(g, a, b, c):
        out = g.op("Sum", a, b, c)
        out.setType(a.type())
        return out


class BlockProjection(nn.Module):
    """A grouped projection on tokens-first column blocks: one ``(B, S, Cin/G) @ (Cin/G, Cout/G)`` per group,
    blocks in, blocks out; the bias is kept per group and added by the caller where it fuses best."""

    def __init__(self, proj: GroupedProjection):
        super().__init__()
        g, co, ci = proj.groups, proj.out_channels, proj.in_channels
        self.groups = g
        w = proj.weight.detach().view(g, co // g, ci // g)  # (G, Cout/G, Cin/G)
        self.weights = nn.ParameterList(nn.Parameter(w[i].t().contiguous(), requires_grad=False) for i in range(g))
        self.biases = nn.ParameterList(nn.Parameter(b.clone(), requires_grad=False)
                                       for b in proj.bias.detach().chunk(g))
        self.bias = nn.Parameter(proj.bias.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor | Blocks) -> Blocks:  # without the bias
        return [xi @ w for xi, w in zip(as_blocks(x, self.groups), self.weights)]


class BlockAttention(nn.Module):
    """Self-attention of one encoder layer on tokens-first blocks; returns the context as column blocks."""

    def __init__(self, layer: EncoderLayer, heads: int):
        super().__init__()
        attn = layer.attention
        projections = [attn.query, attn.key, attn.value]
        g = attn.query.groups
        self.heads = heads
        self.grouped = all(p.groups == g for p in projections) and heads % g == 0
        if self.grouped:  # per group: (Cin/G, 3 C/G) = [Wq_g^T | Wk_g^T | Wv_g^T], heads of the group only
            self.groups = g
            blocks = [BlockProjection(p) for p in projections]
            self.weights = nn.ParameterList(
                nn.Parameter(torch.cat([b.weights[i] for b in blocks], dim=1), requires_grad=False) for i in range(g))
            self.biases = nn.ParameterList(
                nn.Parameter(torch.cat([b.biases[i] for b in blocks]), requires_grad=False) for i in range(g))
        else:
            self.qkv = nn.ModuleList(BlockProjection(p) for p in projections)

    def forward(self, x: Tensor | Blocks, keep: Tensor) -> Blocks:
        if self.grouped:
            return [OrtAttention.apply(xi, w, b, keep, self.heads // self.groups)
                    for xi, w, b in zip(as_blocks(x, self.groups), self.weights, self.biases)]
        q, k, v = (as_tensor(p(x)) + p.bias for p in self.qkv)
        return [OrtMultiHeadAttention.apply(q, k, v, keep, self.heads)]


class BlockLayer(nn.Module):
    """One post-LayerNorm encoder layer on tokens-first activations (B, S, C)."""

    def __init__(self, layer: EncoderLayer, heads: int):
        super().__init__()
        self.attention = BlockAttention(layer, heads)
        self.post_attention = BlockProjection(layer.post_attention.conv1d)
        self.intermediate = BlockProjection(layer.intermediate.conv1d)
        self.output = BlockProjection(layer.output.conv1d)
        self.act = layer.intermediate.act
        self.norms = nn.ModuleList([copy.deepcopy(layer.post_attention.layernorm),
                                    copy.deepcopy(layer.output.layernorm)])

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        context = self.attention(x, keep)
        x = self._add_norm(self.post_attention(context), self.post_attention.bias, x, self.norms[0])
        inner = [self.act(y + b) for y, b in zip(self.intermediate(x), self.intermediate.biases)]  # BiasGelu
        return self._add_norm(self.output(inner), self.output.bias, x, self.norms[1])

    @staticmethod
    def _add_norm(blocks: Blocks, bias: Tensor, residual: Tensor, norm: nn.LayerNorm) -> Tensor:
        # (projection + bias) + residual, in the model's order, then LayerNorm
        return F.layer_norm(Sum3.apply(as_tensor(blocks), bias, residual), norm.normalized_shape, norm.weight,
                            norm.bias, norm.eps)


class TokensFirstModel(nn.Module):
    """A private copy of the model (any head but multiple choice) with the encoder in the tokens-first block
    layout; positional inputs (ids, 1/0 mask, token types), a tuple of the head's outputs, no data-dependent
    branches (fit for ``torch.onnx.export``)."""

    def __init__(self, model: SqueezeBertPreTrainedModel, output_fields: tuple[str, ...]):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.base = encoder_of(self.model)
        heads = self.base.config.num_attention_heads
        self.layers = nn.ModuleList(BlockLayer(layer, heads) for layer in self.base.encoder.layers)
        del self.base.encoder  # no second copy of the weights in the exported graph
        self.output_fields = output_fields
        self.output_names: list[str] = []

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        position_ids = torch.arange(input_ids.shape[1]).unsqueeze(0)
        x = self.base.embeddings(input_ids, token_type_ids, position_ids)  # (B, S, C)
        keep = attention_mask.to(torch.int32)  # the contrib ops' (B, S) key padding mask
        for layer in self.layers:
            x = layer(x, keep)
        out = ModelOutput(last_hidden_state=x, pooler_output=self.base.pooler(x))
        if isinstance(self.model, TaskModel):
            out = self.model.head(out, None)
        self.output_names = [f for f in self.output_fields if getattr(out, f) is not None]
        return tuple(getattr(out, f) for f in self.output_names)
