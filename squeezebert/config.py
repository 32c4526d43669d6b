"""The SqueezeBERT config: a typed dataclass whose JSON is the Hugging Face ``config.json``.

The fields are exactly those of transformers' ``SqueezeBertConfig`` plus the task fields every HF config carries
(num_labels, id2label, label2id, problem_type) and ``architectures``. ``bert-base-uncased`` is this same config with
every ``*_groups`` = 1: a grouped 1x1 convolution with one group is a dense layer, so BERT is a special case.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GROUP_FIELDS = ("q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups", "output_groups")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# Keys that HF writes into config.json but that mean nothing to this model. They are dropped on load on purpose;
# anything else we do not know is a typo and an error.
IGNORED_HF_KEYS = frozenset(
    {
        "_name_or_path", "transformers_version", "torch_dtype", "dtype", "return_dict", "output_attentions",
        "output_hidden_states", "torchscript", "use_cache", "gradient_checkpointing", "is_decoder",
        "is_encoder_decoder", "add_cross_attention", "chunk_size_feed_forward", "bos_token_id", "eos_token_id",
        "sep_token_id", "tie_word_embeddings", "classifier_dropout", "finetuning_task", "tokenizer_class",
        "prefix", "task_specific_params", "pruned_heads", "tie_encoder_decoder", "cross_attention_hidden_size",
        "decoder_start_token_id", "label_smoothing", "output_past", "attention_implementation", "_attn_implementation",
        "_attn_implementation_autoset", "use_return_dict", "layer_norm_type", "model_type", "position_embedding_type",
    }
)


class ConfigError(ValueError):
    """A config that cannot describe a valid model; the message names the offending field."""


@dataclass
class SqueezeBertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    embedding_size: int = 768
    q_groups: int = 4
    k_groups: int = 4
    v_groups: int = 4
    post_attention_groups: int = 1
    intermediate_groups: int = 4
    output_groups: int = 4
    # Task fields (HF PretrainedConfig). id2label keys are ints in memory, strings in JSON (as HF writes them).
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None

    def __post_init__(self) -> None:
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
        if self.label2id is not None:
            self.label2id = {str(k): int(v) for k, v in self.label2id.items()}
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if self.label2id is None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        self.validate()

    # ---- validation -------------------------------------------------------------------------------------------
    def validate(self) -> None:
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "type_vocab_size", "embedding_size", *GROUP_FIELDS)
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        if self.embedding_size != self.hidden_size:
            # transformers' SqueezeBERT asserts the same: there is no projection between embeddings and encoder.
            raise ConfigError(f"embedding_size ({self.embedding_size}) must equal hidden_size ({self.hidden_size})")
        channels = {"q_groups": (self.hidden_size, self.hidden_size), "k_groups": (self.hidden_size, self.hidden_size),
                    "v_groups": (self.hidden_size, self.hidden_size),
                    "post_attention_groups": (self.hidden_size, self.hidden_size),
                    "intermediate_groups": (self.hidden_size, self.intermediate_size),
                    "output_groups": (self.intermediate_size, self.hidden_size)}
        for name, (cin, cout) in channels.items():
            groups = getattr(self, name)
            if cin % groups or cout % groups:
                raise ConfigError(f"{name} ({groups}) must divide the layer's input ({cin}) and output ({cout}) channels")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id ({self.pad_token_id}) must be in [0, vocab_size={self.vocab_size})")
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be >= 1, got {self.num_labels}")
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ConfigError(f"id2label keys must be 0..num_labels-1, got {sorted(self.id2label)}")

    @property
    def is_dense(self) -> bool:
        """True when every projection has one group, i.e. the model is exactly BERT."""
        return all(getattr(self, name) == 1 for name in GROUP_FIELDS)

    def replace(self, **changes: Any) -> "SqueezeBertConfig":
        """A copy with some fields changed (labels are re-derived when num_labels changes alone)."""
        if "num_labels" in changes and "id2label" not in changes:
            changes.setdefault("id2label", None)
            changes.setdefault("label2id", None)
        return dataclasses.replace(self, **changes)

    # ---- Hugging Face JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["model_type"] = "squeezebert"
        if d["architectures"] is None:
            del d["architectures"]
        del d["num_labels"]  # HF derives it from id2label and does not write it
        return dict(sorted(d.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json_string())
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "SqueezeBertConfig":
        """Build from a HF config dict: SqueezeBERT's, or BERT's (which becomes the all-groups-1 config)."""
        data = dict(data)
        model_type = data.get("model_type", "squeezebert")
        if model_type == "bert":
            data = _bert_to_squeezebert(data, source)
        elif model_type != "squeezebert":
            raise ConfigError(f"{source}: model_type {model_type!r} is not supported (expected 'squeezebert' or 'bert')")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in known and k not in IGNORED_HF_KEYS)
        if unknown:
            raise ConfigError(f"{source}: unknown config key(s) {', '.join(map(repr, unknown))}")
        kwargs = {k: v for k, v in data.items() if k in known}
        if "id2label" in kwargs and "num_labels" in kwargs and len(kwargs["id2label"] or {}) != kwargs["num_labels"]:
            kwargs.pop("num_labels")  # HF semantics: id2label wins
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "SqueezeBertConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def _bert_to_squeezebert(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A dense BERT config is SqueezeBERT with every group count 1 and embedding_size = hidden_size."""
    pos = data.pop("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ConfigError(f"{source}: position_embedding_type {pos!r} is not supported (only 'absolute')")
    eps = data.get("layer_norm_eps", 1e-12)
    if eps != 1e-12:
        # transformers' SqueezeBERT fixes the encoder LayerNorm eps at 1e-12 whatever the config says (a quirk we
        # reproduce); a BERT with another eps will differ slightly in the encoder LayerNorms.
        log.warning("%s: layer_norm_eps=%g but SqueezeBERT's encoder LayerNorms use 1e-12", source, eps)
    data["model_type"] = "squeezebert"
    data["embedding_size"] = data.get("hidden_size", 768)
    for name in GROUP_FIELDS:
        data[name] = 1
    if data.get("architectures"):
        data["architectures"] = [a.replace("Bert", "SqueezeBert", 1) if a.startswith("Bert") else a
                                 for a in data["architectures"]]
    return data


TINY = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=512, embedding_size=32)

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's model: BERT-base shape, grouped Q/K/V and FFN (4 groups), dense attention-output projection.
    "squeezebert-uncased": {},
    # BERT-base exactly: every projection dense.
    "bert-base-uncased": {name: 1 for name in GROUP_FIELDS},
    # For tests: small enough to run in milliseconds, still grouped.
    "tiny": dict(TINY),
    "tiny-dense": dict(TINY, **{name: 1 for name in GROUP_FIELDS}),
}


def preset(name: str, **overrides: Any) -> SqueezeBertConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return SqueezeBertConfig(**{**PRESETS[name], **overrides})


def count_flops(config: SqueezeBertConfig, seq_len: int) -> int:
    """Forward FLOPs (2 x multiply-adds) for one sequence through the encoder and pooler.

    Counts what the paper counts: the projections (each a 1x1 conv whose cost divides by its groups), the two
    attention matmuls, and the pooler; embeddings lookups, softmax, LayerNorm and activations are not counted.
    """
    h, i, s = config.hidden_size, config.intermediate_size, seq_len
    per_token = (
        h * h // config.q_groups + h * h // config.k_groups + h * h // config.v_groups
        + h * h // config.post_attention_groups + h * i // config.intermediate_groups + i * h // config.output_groups
    )
    attention = 2 * s * s * h  # Q K^T and P V
    macs = config.num_hidden_layers * (per_token * s + attention) + h * h  # + pooler on the first token
    return 2 * macs
