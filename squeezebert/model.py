"""SqueezeBERT, top to bottom: embeddings, grouped projections, self-attention, post-LayerNorm blocks, pooler, heads.

SqueezeBERT (Iandola et al., 2020) is BERT with the position-wise fully connected layers (Q, K, V and both FFN
layers) replaced by grouped 1x1 convolutions. With one group everywhere it is BERT exactly.

Why the layout: a grouped 1x1 convolution over a sequence is, per group, a plain matrix product. We keep activations
channels-first with batch and sequence folded together, ``x: (C, T)`` with ``T = B * S``, so that a grouped
projection is one batched GEMM over groups with no copies: ``(G, Cout/G, Cin/G) @ (G, Cin/G, T)`` -> ``(Cout, T)``.
nn.Conv1d with groups runs at a fraction of GEMM speed on CPU; this is the same arithmetic at GEMM speed.

Numerics follow transformers' ``SqueezeBertFor*`` exactly, quirks included; each quirk is marked ``QUIRK``.
Parameter names mirror transformers' so a checkpoint maps by name (only the conv weights' trailing 1 differs).

The model is a leaf: this file imports nothing of ours but the config. Inputs reach the encoder through one
contract (``prepare_inputs`` -> ``EncoderInputs`` -> ``forward_prepared``); checkpoint I/O (checkpoint.py) and the
inference variants (infer/, export.py: module swaps over these classes) build on it. See docs/design/architecture.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SqueezeBertConfig

# QUIRK: transformers' SqueezeBertLayerNorm (the two LayerNorms inside every encoder layer) is built with its
# default eps=1e-12 and ignores config.layer_norm_eps; the embedding and MLM-head LayerNorms do use the config.
ENCODER_LAYER_NORM_EPS = 1e-12

ACT_FNS = {
    "gelu": F.gelu,  # exact (erf) GELU, as BERT and transformers' "gelu"
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


@dataclass
class ModelOutput(dict):
    """What every model returns (the Hugging Face field names); fields a head does not produce stay None.

    It behaves like transformers' ``ModelOutput`` (a dict of the fields that are not None, in field order), so code
    written for transformers works unchanged: ``out.logits``, ``out["logits"]``, ``out[0]``, ``out[1:]``,
    ``out.to_tuple()``, ``out.keys()``, ``"loss" in out``. The field order is chosen so that every head's tuple is
    transformers' for that head: ``(loss, logits, hidden_states, attentions)`` for the classifiers and the masked
    LM, ``(loss, start_logits, end_logits, ...)`` for QA, ``(last_hidden_state, pooler_output, ...)`` for the
    encoder (``transformers.Trainer`` reads the loss as ``outputs[0]`` and the predictions as the rest).
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    start_logits: Tensor | None = None  # question answering
    end_logits: Tensor | None = None
    sop_logits: Tensor | None = None  # sentence-order prediction (pretraining)
    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings + each layer, each (B, S, C)
    attentions: tuple[Tensor, ...] | None = None  # softmax probabilities per layer, each (B, H, S, S)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name not in _OUTPUT_ORDER:
            return
        if value is None:
            dict.pop(self, name, None)
        elif name in self or not self or _OUTPUT_ORDER[next(reversed(self))] < _OUTPUT_ORDER[name]:
            dict.__setitem__(self, name, value)  # already in place, or lands last in field order
        else:  # a field set after a later one: rebuild so iteration stays in field order
            present = {f: getattr(self, f) for f in _OUTPUT_ORDER if getattr(self, f) is not None}
            dict.clear(self)
            dict.update(self, present)

    def __getitem__(self, key: str | int | slice) -> Any:
        # names look up the dict (a None field is a KeyError, as in transformers); ints and slices index the tuple
        return dict.__getitem__(self, key) if isinstance(key, str) else self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _OUTPUT_ORDER:
            raise KeyError(f"{key!r} is not a model output field ({', '.join(_OUTPUT_ORDER)})")
        setattr(self, key, value)

    def _immutable(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} fields are set by attribute (out.logits = ...), not by dict methods")

    __delitem__ = pop = popitem = setdefault = update = clear = _immutable  # keep the dict and the fields in step

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def head_logits(self) -> Tensor | None:
        """The head's scores as one tensor: ``logits``, or for QA start and end stacked to (B, S, 2)."""
        if self.logits is None and self.start_logits is not None:
            return torch.stack((self.start_logits, self.end_logits), dim=-1)
        return self.logits


_OUTPUT_ORDER = {f.name: i for i, f in enumerate(fields(ModelOutput))}


# ---- building blocks ------------------------------------------------------------------------------------------


def grouped_matmul(bias: Tensor, weight: Tensor, x: Tensor) -> Tensor:
    """``bias + weight @ x`` per group: (G, Cout/G, 1), (G, Cout/G, Cin/G), (G, Cin/G, T) -> (G, Cout/G, T).

    Eager, one ``baddbmm`` (it writes the bias into the output and the GEMM accumulates onto it): over the three
    projection shapes at 4,096 tokens its forward is 1.4x and forward + backward 1.13x those of ``bmm`` + add (fp32,
    AMX, benchmarks/grouped_projection.py). Under ``torch.compile``, ``bmm`` + add: inductor then fuses the add into
    the next elementwise kernel (GELU, or residual + LayerNorm) instead of copying the bias first; paper size at
    1 x 128 on AMX: fp32 50.0 -> 47.7 ms, bf16 25.9 -> 24.2 ms (docs/benchmarks.md)."""
    if torch.compiler.is_compiling():
        return torch.bmm(weight, x) + bias
    return torch.baddbmm(bias, weight, x)


class GroupedProjection(nn.Module):
    """A grouped 1x1 convolution on channels-first activations, computed as one batched matmul over groups.

    ``weight`` is ``(Cout, Cin/G)``: transformers' Conv1d weight without its trailing kernel dimension of 1.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:  # (Cin, T) -> (Cout, T)
        # One batched matmul over the groups rather than a grouped convolution (transformers' Conv1d): the same
        # arithmetic, faster on x86 CPUs in every case measured with benchmarks/grouped_projection.py (4 groups, AVX2,
        # 2 threads): forward 1.4-1.5x at 128 tokens and 1.1-1.7x at 4,096; backward 1.2-1.6x and 1.6-1.9x. Inference
        # in bf16/int8 swaps this module for its own (infer/fast.py, export.py).
        g, t = self.groups, x.shape[1]
        w = self.weight.view(g, self.out_channels // g, self.in_channels // g)  # (G, Cout/G, Cin/G)
        b = self.bias.view(g, self.out_channels // g, 1)
        # (G, Cout/G, Cin/G) @ (G, Cin/G, T) -> (G, Cout/G, T) == (Cout, T): channel c of group g is row g*Cout/G+c
        return grouped_matmul(b, w, x.view(g, self.in_channels // g, t)).view(self.out_channels, t)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, groups={self.groups}"


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dimension of channels-first ``(C, T)`` activations."""

    def forward(self, x: Tensor) -> Tensor:
        # F.layer_norm normalises the last dimension: run it on the (T, C) view and come back to (C, T).
        return F.layer_norm(x.t(), self.normalized_shape, self.weight, self.bias, self.eps).t().contiguous()


class Embeddings(nn.Module):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:  # -> (B, S, C)
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """BERT's multi-head self-attention, unchanged; only the Q/K/V projections are grouped."""

    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        c = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = c // self.num_heads
        self.query = GroupedProjection(c, c, config.q_groups)
        self.key = GroupedProjection(c, c, config.k_groups)
        self.value = GroupedProjection(c, c, config.v_groups)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, x: Tensor, mask: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        return self.attend(self.query(x), self.key(x), self.value(x), mask, batch, x.dtype)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, batch: int, dtype: torch.dtype
               ) -> tuple[Tensor, Tensor]:
        """The heads' attention on projected Q, K, V, each (C, T) with T = B*S: context (C, T), probs (B, H, S, S).
        Channel c belongs to head c // head_size (as in BERT's view(B, S, H, D)). Scores, softmax and context are
        kept in ``dtype``, the activations' (under autocast the projections and products return bf16)."""
        h, d, t = self.num_heads, self.head_size, q.shape[1]
        s = t // batch

        def heads(y: Tensor) -> Tensor:  # (C, B*S) -> (B*H, D, S); a free view when B == 1
            return y.view(h, d, batch, s).permute(2, 0, 1, 3).reshape(batch * h, d, s)

        q, k, v = heads(q), heads(k), heads(v)
        # QUIRK (kept for exact parity): scores are scaled after the product, as transformers does.
        scores = self.matmul(q.transpose(1, 2), k).to(dtype).div_(math.sqrt(d))  # (B*H, S, S): [query, key]
        if mask is not None:
            scores = scores.view(batch, h, s, s).add_(mask).view(batch * h, s, s)
        probs = torch.softmax(scores, dim=-1)
        # Dropout acts on the context only: the returned attentions stay true distributions in training too
        # (attention distillation compares them; dropped entries would make the KL blow up).
        context = self.matmul(v, self.dropout(probs).transpose(1, 2)).to(dtype)  # (B*H, D, S): V P^T
        context = context.view(batch, h, d, s).permute(1, 2, 0, 3).reshape(h * d, t)  # -> (C, B*S)
        return context, probs.view(batch, h, s, s)

    # The two products (scores and context); a subclass may run them in another precision (infer/fast.py).
    matmul = staticmethod(torch.bmm)


class ProjectionDropoutLayerNorm(nn.Module):
    """projection -> dropout -> + residual -> LayerNorm (BERT's post-LN sublayer ending)."""

    def __init__(self, cin: int, cout: int, groups: int, dropout: float):
        super().__init__()
        self.conv1d = GroupedProjection(cin, cout, groups)
        self.layernorm = ChannelLayerNorm(cout, eps=ENCODER_LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.layernorm(self.dropout(self.conv1d(x)) + residual)


class ProjectionActivation(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, act: str):
        super().__init__()
        self.conv1d = GroupedProjection(cin, cout, groups)
        self.act = ACT_FNS[act]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv1d(x))


class EncoderLayer(nn.Module):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        c, i, p = config.hidden_size, config.intermediate_size, config.hidden_dropout_prob
        self.attention = SelfAttention(config)
        self.post_attention = ProjectionDropoutLayerNorm(c, c, config.post_attention_groups, p)
        self.intermediate = ProjectionActivation(c, i, config.intermediate_groups, config.hidden_act)
        self.output = ProjectionDropoutLayerNorm(i, c, config.output_groups, p)

    def forward(self, x: Tensor, mask: Tensor | None, batch: int) -> tuple[Tensor, Tensor]:
        context, probs = self.attention(x, mask, batch)
        x = self.post_attention(context, x)
        return self.output(self.intermediate(x), x), probs


class Encoder(nn.Module):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))


class Pooler(nn.Module):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, last_hidden_state: Tensor) -> Tensor:  # first token -> dense -> tanh
        return torch.tanh(self.dense(last_hidden_state[:, 0]))


# ---- models ---------------------------------------------------------------------------------------------------


class EncoderInputs(NamedTuple):
    """What the encoder runs on, made from a caller's inputs by ``prepare_inputs`` (the one input contract)."""

    input_ids: Tensor  # (B, S); multiple choice (B, K, S) flattened to (B*K, S)
    token_type_ids: Tensor  # (B, S); zeros when not given
    position_ids: Tensor  # (1, S) or (B, S); 0..S-1 when not given
    mask: Tensor | None  # (B, 1, 1, S) additive: 0 where kept, the dtype's minimum where masked; None: nothing masked
    num_choices: int  # K for multiple choice, else 1


class CheckpointIO(NamedTuple):
    """The loader and saver behind ``from_pretrained`` / ``save_pretrained`` (see ``checkpoint_io``)."""

    load: Callable[..., Any]  # (path, model_class=..., **kwargs) -> model
    save: Callable[..., Any]  # (model, directory, **kwargs)


class SqueezeBertPreTrainedModel(nn.Module):
    """Shared by the bare encoder and every head: config, initialisation, the input contract, checkpoint I/O."""

    architecture = "SqueezeBertModel"
    multiple_choice = False  # True: inputs are (B, K, S), K choices per example (see prepare_inputs)
    # transformers.Trainer: our losses are batch means, so the Trainer must scale them for gradient accumulation
    # itself (without this it sees **kwargs in forward and passes num_items_in_batch, which we do not use).
    accepts_loss_kwargs = False
    # Checkpoint I/O depends on the model, never the reverse: this file imports nothing of ours but the config.
    # squeezebert.checkpoint fills this slot with its load_model / save_model when it is imported, and everything
    # that hands out a model (squeezebert's top-level names, load_model) imports it first.
    checkpoint_io: ClassVar[CheckpointIO | None] = None

    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.config = config

    def init_weights(self) -> "SqueezeBertPreTrainedModel":
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, GroupedProjection)):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("predictions.bias"):
                nn.init.zeros_(p)
        return self

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        skip = "embeddings." if exclude_embeddings else "\0"
        return sum(p.numel() for n, p in self.named_parameters() if skip not in n)

    def prepare_inputs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        traceable: bool = False,
    ) -> EncoderInputs:
        """The one input contract: a caller's ids, 1/0 mask, token types and positions -> the encoder's inputs.

        Every path in (``forward``, fast inference, export) comes through here. ``traceable`` (for ``torch.export``):
        no value checks and the mask always built, so the traced graph has no data-dependent branches.
        """
        num_choices = 1
        if self.multiple_choice:
            if input_ids.dim() != 3:
                raise ValueError(
                    f"multiple choice input_ids must be (batch, choices, seq_len), got {tuple(input_ids.shape)}")
            num_choices = input_ids.shape[1]
            input_ids, attention_mask, token_type_ids, position_ids = (  # (B, K, S) -> (B*K, S)
                None if t is None else t.reshape(-1, t.shape[-1])
                for t in (input_ids, attention_mask, token_type_ids, position_ids))
        if not traceable:
            self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        mask = None  # nothing masked saves an add per layer
        if attention_mask is not None and (traceable or not bool(attention_mask.all())):
            # As transformers: masked keys get the dtype's most negative value, so they get exactly 0 probability.
            dtype = encoder_of(self).embeddings.LayerNorm.weight.dtype
            keep = attention_mask.to(torch.bool)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)
            mask = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
        return EncoderInputs(input_ids, token_type_ids, position_ids, mask, num_choices)

    def _check_inputs(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None) -> None:
        # Clear errors instead of an index error from deep inside an embedding lookup.
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
        batch, seq = input_ids.shape
        if seq == 0 or batch == 0:
            raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)})")
        if seq > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {seq} exceeds max_position_embeddings={self.config.max_position_embeddings}; "
                "truncate the input (the tokenizer's max_length) or split it into windows"
            )
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"input_ids must be in [0, {self.config.vocab_size}), got values in [{lo}, {hi}]")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name} shape {tuple(t.shape)} does not match input_ids {tuple(input_ids.shape)}")
        if token_type_ids is not None and int(token_type_ids.max()) >= self.config.type_vocab_size:
            raise ValueError(f"token_type_ids must be < type_vocab_size={self.config.type_vocab_size}")

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> "SqueezeBertPreTrainedModel":
        return cls._checkpoint_io().load(path, model_class=cls, **kwargs)

    def save_pretrained(self, directory: str, **kwargs: Any) -> None:
        self._checkpoint_io().save(self, directory, **kwargs)

    @classmethod
    def _checkpoint_io(cls) -> CheckpointIO:
        if cls.checkpoint_io is None:
            raise RuntimeError("checkpoint I/O lives in squeezebert.checkpoint: import it (or take the model classes "
                               "from `squeezebert`, which does) before from_pretrained / save_pretrained")
        return cls.checkpoint_io


class SqueezeBertModel(SqueezeBertPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, S, C) and ``pooler_output`` (B, C)."""

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config)
        self.init_weights()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        inputs = self.prepare_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        return self.forward_prepared(inputs, output_hidden_states, output_attentions)

    def forward_prepared(
        self, inputs: EncoderInputs, output_hidden_states: bool = False, output_attentions: bool = False
    ) -> ModelOutput:
        """The forward pass proper, on prepared inputs (no data-dependent branches, so ``torch.compile`` and
        ``torch.export`` see one graph)."""
        batch, seq = inputs.input_ids.shape
        embedded = self.embeddings(inputs.input_ids, inputs.token_type_ids, inputs.position_ids)  # (B, S, C)
        c = embedded.shape[-1]

        x = embedded.permute(2, 0, 1).reshape(c, batch * seq)  # (B, S, C) -> (C, B*S)
        hidden, attentions = [embedded] if output_hidden_states else None, [] if output_attentions else None
        for layer in self.encoder.layers:
            x, probs = layer(x, inputs.mask, batch)
            if hidden is not None:
                hidden.append(x.view(c, batch, seq).permute(1, 2, 0))
            if attentions is not None:
                attentions.append(probs)
        last = x.view(c, batch, seq).permute(1, 2, 0).contiguous()  # (C, B*S) -> (B, S, C)
        return ModelOutput(
            last_hidden_state=last,
            pooler_output=self.pooler(last),
            hidden_states=tuple(hidden) if hidden is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )


def encoder_of(model: SqueezeBertPreTrainedModel) -> SqueezeBertModel:
    """The encoder of any model here: the model itself when it is the bare encoder, else its ``transformer``."""
    return model if isinstance(model, SqueezeBertModel) else model.transformer


class TaskModel(SqueezeBertPreTrainedModel):
    """An encoder (``self.transformer``) plus a small head; subclasses define the head and its loss.

    Every head takes the encoder's output (and labels, and the few inputs of its own, such as ``num_choices``) and
    returns a ModelOutput with its logits.
    """

    uses_pooler = True  # heads that read only token states say False (their checkpoints may lack a pooler)

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.transformer = SqueezeBertModel(config)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **head_kwargs: Tensor | None,
    ) -> ModelOutput:
        inputs = self.prepare_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        return self.forward_prepared(inputs, labels, output_hidden_states, output_attentions, **head_kwargs)

    def forward_prepared(
        self,
        inputs: EncoderInputs,
        labels: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        **head_kwargs: Tensor | None,
    ) -> ModelOutput:
        encoded = self.transformer.forward_prepared(inputs, output_hidden_states, output_attentions)
        out = self.head(encoded, labels, num_choices=inputs.num_choices, **head_kwargs)
        out.hidden_states, out.attentions = encoded.hidden_states, encoded.attentions
        return out

    def head(self, encoded: ModelOutput, labels: Tensor | None, **kwargs: Any) -> ModelOutput:
        raise NotImplementedError


class PredictionHeadTransform(nn.Module):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT_FNS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class LMPredictionHead(nn.Module):
    """Transform + decoder. The decoder weight IS the word-embedding matrix (tied), so it is not a parameter here."""

    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: Tensor, word_embeddings: Tensor) -> Tensor:
        return F.linear(self.transform(x), word_embeddings, self.bias)


class MLMHead(nn.Module):
    def __init__(self, config: SqueezeBertConfig, sentence_order: bool = False):
        super().__init__()
        self.predictions = LMPredictionHead(config)
        # Sentence-order prediction reuses BERT's next-sentence head (same shape, same checkpoint name).
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if sentence_order else None


class SqueezeBertForMaskedLM(TaskModel):
    architecture = "SqueezeBertForMaskedLM"
    uses_pooler = False

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.cls = MLMHead(config)
        self.init_weights()

    def head(self, encoded, labels, **kwargs):
        logits = self.cls.predictions(encoded.last_hidden_state, self.transformer.embeddings.word_embeddings.weight)
        loss = None if labels is None else F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return ModelOutput(loss=loss, logits=logits)


class SqueezeBertForPreTraining(TaskModel):
    """Masked LM + sentence-order prediction (the paper's pretraining objective). ``sop_labels``: 0 in order, 1 swapped."""

    architecture = "SqueezeBertForPreTraining"

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.cls = MLMHead(config, sentence_order=True)
        self.init_weights()

    def head(self, encoded, labels, sop_labels: Tensor | None = None, **kwargs):
        # ``last_hidden_state`` may be any selection of token states (..., C): pretraining passes only the masked
        # positions (M, C), since the vocabulary projection is a small model's largest product.
        logits = self.cls.predictions(encoded.last_hidden_state, self.transformer.embeddings.word_embeddings.weight)
        sop_logits = self.cls.seq_relationship(encoded.pooler_output)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
            if sop_labels is not None:
                loss = loss + F.cross_entropy(sop_logits, sop_labels.view(-1))
        return ModelOutput(loss=loss, logits=logits, sop_logits=sop_logits)


def sequence_loss(logits: Tensor, labels: Tensor, problem_type: str | None) -> Tensor:
    """transformers' rule: 1 label -> regression; integer labels -> single-label; else multi-label."""
    num_labels = logits.shape[-1]
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class SqueezeBertForSequenceClassification(TaskModel):
    """Pooled first token -> dropout -> linear. ``num_labels=1`` is regression (STS-B)."""

    architecture = "SqueezeBertForSequenceClassification"

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def head(self, encoded, labels, **kwargs):
        logits = self.classifier(self.dropout(encoded.pooler_output))
        loss = None if labels is None else sequence_loss(logits, labels, self.config.problem_type)
        return ModelOutput(loss=loss, logits=logits)


class SqueezeBertForTokenClassification(TaskModel):
    """Every token -> dropout -> linear. Label -100 is ignored (sub-word continuations, padding)."""

    architecture = "SqueezeBertForTokenClassification"
    uses_pooler = False

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights()

    def head(self, encoded, labels, **kwargs):
        logits = self.classifier(self.dropout(encoded.last_hidden_state))
        loss = None if labels is None else F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
        return ModelOutput(loss=loss, logits=logits)


class SqueezeBertForQuestionAnswering(TaskModel):
    """Span extraction: start and end logits per token, each (B, S). ``labels`` is (B, 2) = (start, end), or pass
    ``start_positions`` / ``end_positions`` as transformers does."""

    architecture = "SqueezeBertForQuestionAnswering"
    uses_pooler = False

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def head(self, encoded, labels, start_positions=None, end_positions=None, **kwargs):
        logits = self.qa_outputs(encoded.last_hidden_state)
        start, end = logits[..., 0].contiguous(), logits[..., 1].contiguous()
        if labels is not None:
            start_positions, end_positions = labels[:, 0], labels[:, 1]
        loss = None
        if start_positions is not None and end_positions is not None:
            # As transformers: positions outside the window are clamped to seq_len and ignored.
            ignored = start.shape[1]
            loss = (
                F.cross_entropy(start, start_positions.view(-1).clamp(0, ignored), ignore_index=ignored)
                + F.cross_entropy(end, end_positions.view(-1).clamp(0, ignored), ignore_index=ignored)
            ) / 2
        return ModelOutput(loss=loss, start_logits=start, end_logits=end)  # transformers' QA fields, no `logits`


class SqueezeBertForMultipleChoice(TaskModel):
    """Inputs are (B, num_choices, S); each choice is scored from its pooled output; logits (B, num_choices)."""

    architecture = "SqueezeBertForMultipleChoice"
    multiple_choice = True

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def head(self, encoded, labels, num_choices: int = 1, **kwargs):
        logits = self.classifier(self.dropout(encoded.pooler_output)).view(-1, num_choices)
        loss = None if labels is None else F.cross_entropy(logits, labels.view(-1))
        return ModelOutput(loss=loss, logits=logits)


# A plain registry: head name -> class. ``architectures`` in config.json picks one (see checkpoint.py).
HEADS: dict[str, type[SqueezeBertPreTrainedModel]] = {
    "base": SqueezeBertModel,
    "masked_lm": SqueezeBertForMaskedLM,
    "pretraining": SqueezeBertForPreTraining,
    "sequence_classification": SqueezeBertForSequenceClassification,
    "token_classification": SqueezeBertForTokenClassification,
    "question_answering": SqueezeBertForQuestionAnswering,
    "multiple_choice": SqueezeBertForMultipleChoice,
}
