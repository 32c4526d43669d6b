"""The SqueezeBERT config: a typed dataclass whose JSON is the Hugging Face ``config.json``.

The fields are exactly those of transformers' ``SqueezeBertConfig`` plus the task fields every HF config carries
(num_labels, id2label, label2id, problem_type) and ``architectures``. ``bert-base-uncased`` is this same config with
every ``*_groups`` = 1: a grouped 1x1 convolution with one group is a dense layer, so BERT is a special case.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileio import decode_problem, write_text

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


# Upper bounds no BERT-class model comes near: a value beyond one is a typo, which would otherwise fail (or swap the
# machine to a halt) allocating the embedding matrix. MAX_PARAMETERS bounds the whole model (8 GB in fp32).
LIMITS = {"vocab_size": 1 << 22, "hidden_size": 1 << 16, "num_hidden_layers": 1024, "num_attention_heads": 1 << 12,
          "intermediate_size": 1 << 18, "max_position_embeddings": 1 << 17, "type_vocab_size": 1 << 16,
          "embedding_size": 1 << 16, "num_labels": 1 << 16, **{name: 1 << 16 for name in GROUP_FIELDS}}
MAX_PARAMETERS = 2_000_000_000


# transformers architecture name -> our head (a key of squeezebert.model.HEADS). BERT names are rewritten to
# SqueezeBERT ones by the config loader. Here, not in checkpoint.py, because torch-free runtimes need it too.
ARCHITECTURE_TO_HEAD = {
    "SqueezeBertModel": "base",
    "SqueezeBertForMaskedLM": "masked_lm",
    "SqueezeBertForPreTraining": "pretraining",
    "SqueezeBertForSequenceClassification": "sequence_classification",
    "SqueezeBertForTokenClassification": "token_classification",
    "SqueezeBertForQuestionAnswering": "question_answering",
    "SqueezeBertForMultipleChoice": "multiple_choice",
}


class ConfigError(ValueError):
    """A config that cannot describe a valid model; the message names the offending field."""


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}")


def _check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                  high_open: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")


def _label_key(key: Any) -> int:
    """An id2label key: an int, or its decimal string (JSON object keys are strings)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    raise ConfigError(f"id2label keys must be label ids 0, 1, ..., got {key!r}")


def _id2label(value: Any) -> dict[int, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"id2label must be an object {{id: name}}, got {type(value).__name__} {value!r:.60}")
    if len(value) > LIMITS["num_labels"]:
        raise ConfigError(f"id2label has {len(value)} labels, more than {LIMITS['num_labels']}")
    labels = {}
    for key, name in value.items():
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise ConfigError(f"id2label[{key!r}] must be a label name, got {name!r:.60}")
        labels[_label_key(key)] = str(name)
    return labels


def _label2id(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"label2id must be an object {{name: id}}, got {type(value).__name__} {value!r:.60}")
    for name, index in value.items():
        if not isinstance(index, int) or isinstance(index, bool):
            raise ConfigError(f"label2id[{name!r}] must be an integer id, got {index!r:.60}")
    return {str(k): v for k, v in value.items()}


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
        # Label fields first: the others are derived from them, and a wrong type must not reach int()/len().
        if self.id2label is not None:
            self.id2label = _id2label(self.id2label)
            self.num_labels = len(self.id2label)
        if self.label2id is not None:
            self.label2id = _label2id(self.label2id)
        _check_int("num_labels", self.num_labels, 1, LIMITS["num_labels"])
        if self.id2label is None:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        inverse = {v: k for k, v in self.id2label.items()}
        if self.label2id is not None and self.label2id != inverse:
            # id2label is what predictions are named by (and what HF counts labels from); a label2id that does not
            # invert it is stale (checkpoints fine-tuned before this fix carry {"LABEL_0": 0, ...}): derive it again.
            log.warning("label2id %s does not match id2label %s; using id2label's inverse", self.label2id,
                        self.id2label)
        self.label2id = inverse
        self.validate()

    # ---- validation -------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Every field's type and range, then the constraints between fields; the first problem is a ConfigError."""
        for name, limit in LIMITS.items():
            _check_int(name, getattr(self, name), 1, limit)
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
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            _check_number(name, getattr(self, name), 0.0, 1.0, high_open=True)
        _check_number("initializer_range", self.initializer_range, 0.0, 1.0)
        _check_number("layer_norm_eps", self.layer_norm_eps, 0.0, 1.0, low_open=True)  # > 0: it divides
        if not isinstance(self.pad_token_id, int) or isinstance(self.pad_token_id, bool) or not (
                0 <= self.pad_token_id < self.vocab_size):
            raise ConfigError(f"pad_token_id must be an integer in [0, vocab_size={self.vocab_size}), "
                              f"got {self.pad_token_id!r}")
        if not (self.problem_type is None or isinstance(self.problem_type, str)) or \
                self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}")
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ConfigError(f"id2label keys must be 0..num_labels-1, got {sorted(self.id2label)}")
        if self.architectures is not None and (not isinstance(self.architectures, list) or not all(
                isinstance(a, str) for a in self.architectures)):
            raise ConfigError(f"architectures must be a list of class names, e.g. [\"SqueezeBertModel\"], got "
                              f"{self.architectures!r:.80}")
        parameters = self.parameter_estimate()
        if parameters > MAX_PARAMETERS:
            raise ConfigError(f"the sizes describe a model of {parameters / 1e9:.1f} billion parameters, more than "
                              f"{MAX_PARAMETERS / 1e9:g} billion: a typo in vocab_size, hidden_size, "
                              "intermediate_size, num_hidden_layers or max_position_embeddings?")

    def parameter_estimate(self) -> int:
        """Parameters of the encoder (embeddings, layers, pooler), ignoring biases and norms: a bound check only."""
        h, i = self.hidden_size, self.intermediate_size
        layer = sum(h * h // getattr(self, g) for g in GROUP_FIELDS[:4]) + 2 * h * i // self.intermediate_groups
        return (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + \
            self.num_hidden_layers * layer + h * h

    @property
    def is_dense(self) -> bool:
        """True when every projection has one group, i.e. the model is exactly BERT."""
        return all(getattr(self, name) == 1 for name in GROUP_FIELDS)

    def replace(self, **changes: Any) -> "SqueezeBertConfig":
        """A copy with some fields changed: new label names (or a new label count) re-derive the labels not given,
        so ``label2id`` always inverts ``id2label``."""
        if "num_labels" in changes and "id2label" not in changes:
            changes.setdefault("id2label", None)
        if "id2label" in changes:
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
        write_text(path, self.to_json_string())
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
        unknown = sorted((k for k in data if k not in known and k not in IGNORED_HF_KEYS), key=str)
        if unknown:
            raise ConfigError(f"{source}: unknown config key(s) {', '.join(map(repr, unknown))}")
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("id2label"), dict) and "num_labels" in kwargs and \
                len(kwargs["id2label"]) != kwargs["num_labels"]:
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
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        except UnicodeDecodeError:
            line, problem = decode_problem(path)
            raise ConfigError(f"{path}:{line}: {problem}") from None
        except RecursionError:
            raise ConfigError(f"{path}: JSON nested too deeply to read") from None
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
        log.warning("%s: layer_norm_eps=%r but SqueezeBERT's encoder LayerNorms use 1e-12", source, eps)
    data["model_type"] = "squeezebert"
    data["embedding_size"] = data.get("hidden_size", 768)
    for name in GROUP_FIELDS:
        data[name] = 1
    if isinstance(data.get("architectures"), list):  # anything else is refused by validate(), not iterated here
        data["architectures"] = [a.replace("Bert", "SqueezeBert", 1) if a.startswith("Bert") else a
                                 if isinstance(a, str) else a for a in data["architectures"]]
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
