"""Load and save Hugging Face-format checkpoint directories.

Reads transformers' SqueezeBERT checkpoints (``transformer.encoder.layers.N.attention.query.weight``, a Conv1d weight
``(out, in/groups, 1)``) and dense BERT checkpoints (``bert.encoder.layer.N.attention.self.query.weight``, a Linear
weight ``(out, in)``), which become the all-groups-1 SqueezeBERT. Writes transformers' SqueezeBERT layout, so
``SqueezeBertFor*.from_pretrained`` loads what we save.

Weights come from ``model.safetensors`` (or its sharded index); ``pytorch_model.bin`` is read only with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import SqueezeBertConfig
from .model import HEADS, SqueezeBertModel, SqueezeBertPreTrainedModel

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")

# transformers architecture name -> our head. BERT names are rewritten to SqueezeBERT ones by the config loader.
ARCHITECTURE_TO_HEAD = {
    "SqueezeBertModel": "base",
    "SqueezeBertForMaskedLM": "masked_lm",
    "SqueezeBertForPreTraining": "pretraining",
    "SqueezeBertForSequenceClassification": "sequence_classification",
    "SqueezeBertForTokenClassification": "token_classification",
    "SqueezeBertForQuestionAnswering": "question_answering",
    "SqueezeBertForMultipleChoice": "multiple_choice",
}

# Dense BERT sub-module names -> ours (which are transformers' SqueezeBERT names).
_BERT_RENAMES = [
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", r"encoder.layers.\1.attention.\2."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layers.\1.post_attention.conv1d."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"encoder.layers.\1.post_attention.layernorm."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"encoder.layers.\1.intermediate.conv1d."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"encoder.layers.\1.output.conv1d."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"encoder.layers.\1.output.layernorm."),
]
_PROJECTION_WEIGHT = re.compile(r"encoder\.layers\.\d+\.(attention\.(query|key|value)|\w+\.conv1d)\.weight$")
_ENCODER_PARTS = ("embeddings.", "encoder.", "pooler.")
# Tensors that are not weights of ours: buffers, and the MLM decoder, which is tied to the word embeddings.
_DERIVED = re.compile(r"(position_ids|cls\.predictions\.decoder\.(weight|bias))$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file or key."""


@dataclass
class LoadReport:
    path: str
    source_format: str  # "squeezebert" or "bert"
    head: str
    missing: list[str] = field(default_factory=list)  # initialised fresh (e.g. a classifier on a headless checkpoint)
    missing_unused: list[str] = field(default_factory=list)  # absent and not used by this head (BERT MLM: no pooler)
    unexpected: list[str] = field(default_factory=list)  # in the file but not used by this head

    def summary(self) -> str:
        lines = [f"loaded {self.path} ({self.source_format} checkpoint) as head '{self.head}'"]
        if self.missing:
            lines.append(f"  initialised (not in checkpoint): {', '.join(self.missing)}")
        if self.missing_unused:
            lines.append(f"  absent but unused by this head: {', '.join(self.missing_unused)}")
        if self.unexpected:
            lines.append(f"  unused (not part of this head): {', '.join(self.unexpected)}")
        return "\n".join(lines)


# ---- reading ------------------------------------------------------------------------------------------------------


def resolve(path: str | os.PathLike) -> Path:
    """A local directory, or a hub id fetched with huggingface_hub when it is installed and online."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p}: expected a checkpoint directory, got a file")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or str(path).startswith((".", "/")) or str(path).count("/") != 1:
        raise FileNotFoundError(f"{path}: no such checkpoint directory")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{path}: no such directory (and huggingface_hub is not installed for hub ids)") from None
    return Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors", "*.txt"]))


def read_state_dict(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of a checkpoint directory, from safetensors (single or sharded) or a weights-only .bin."""
    single, index, pickled = directory / WEIGHTS_NAME, directory / WEIGHTS_INDEX_NAME, directory / PICKLE_WEIGHTS_NAME
    if single.exists():
        return _load_safetensors(single), single
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_load_safetensors(directory / shard))
        return state, index
    if pickled.exists():
        try:
            state = torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, refused pickle opcode, ...: all mean "cannot use this file"
            raise CheckpointError(f"{pickled}: cannot be read as a weights-only PyTorch file ({e})") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{pickled}: expected a state dict, got {type(state).__name__}")
        return state, pickled
    raise FileNotFoundError(f"{directory}: no {WEIGHTS_NAME}, {WEIGHTS_INDEX_NAME} or {PICKLE_WEIGHTS_NAME}")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing safetensors file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({e})") from None


def to_internal(state: dict[str, torch.Tensor], source_format: str) -> dict[str, torch.Tensor]:
    """HF SqueezeBERT or BERT names and shapes -> ours, with the encoder under ``transformer.``."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        for prefix in ("bert.", "transformer."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if source_format == "bert":
            for pattern, replacement in _BERT_RENAMES:
                key = re.sub(pattern, replacement, key)
        if key.startswith(_ENCODER_PARTS):
            key = "transformer." + key
        if _PROJECTION_WEIGHT.search(key) and tensor.dim() == 3:
            tensor = tensor.squeeze(-1)  # Conv1d (out, in/groups, 1) -> (out, in/groups)
        out[key] = tensor
    return out


def detect_format(state: dict[str, torch.Tensor]) -> str:
    return "bert" if any(".encoder.layer." in k or k.startswith("encoder.layer.") for k in state) else "squeezebert"


def _check_tied_decoder(state: dict[str, torch.Tensor], path: Path) -> None:
    decoder, embeddings = state.get("cls.predictions.decoder.weight"), state.get("transformer.embeddings.word_embeddings.weight")
    if decoder is not None and embeddings is not None and decoder.shape == embeddings.shape:
        if not torch.equal(decoder, embeddings):
            log.warning("%s: the MLM decoder is not tied to the word embeddings; this model ties them and uses "
                        "the word embeddings", path)


def load_state(model: SqueezeBertPreTrainedModel, state: dict[str, torch.Tensor], report: LoadReport, path: Path) -> None:
    """Copy ``state`` (internal names) into ``model``; shape mismatches are errors, the rest is reported."""
    if isinstance(model, SqueezeBertModel):  # the bare encoder has no "transformer." prefix
        state = {k[len("transformer."):]: v for k, v in state.items() if k.startswith("transformer.")} | {
            k: v for k, v in state.items() if not k.startswith("transformer.")
        }
    own = model.state_dict()
    usable = {}
    for key, tensor in state.items():
        if _DERIVED.search(key):
            continue
        if key not in own:
            report.unexpected.append(key)
            continue
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{path}: shape mismatch for {key}: checkpoint has {tuple(tensor.shape)}, "
                f"the model (from config.json) expects {tuple(own[key].shape)}"
            )
        usable[key] = tensor
    absent = [k for k in own if k not in usable]
    # transformers' BertForMaskedLM / TokenClassification / QuestionAnswering have no pooler; ours computes one
    # for every head, but these heads never read it, so its absence loses nothing.
    unused = (lambda k: "pooler." in k) if not getattr(model, "uses_pooler", True) else (lambda k: False)
    report.missing = [k for k in absent if not unused(k)]
    report.missing_unused = [k for k in absent if unused(k)]
    model.load_state_dict(usable, strict=False)


def load_model(
    path: str | os.PathLike,
    head: str | None = None,
    model_class: type[SqueezeBertPreTrainedModel] | None = None,
    return_report: bool = False,
    **config_overrides: Any,
):
    """Load a checkpoint directory into the head named by ``head``, ``model_class``, or the config's architectures.

    ``config_overrides`` change config fields, e.g. ``num_labels=3`` for a fresh classifier on a headless checkpoint.
    The model is returned in eval mode; with ``return_report`` also the LoadReport.
    """
    directory = resolve(path)
    config = SqueezeBertConfig.from_json_file(directory / "config.json")
    if config_overrides:
        config = config.replace(**config_overrides)
    if model_class is None:
        head = head or _head_from_architectures(config, directory)
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        model_class = HEADS[head]
    head = next(name for name, cls in HEADS.items() if cls is model_class)

    raw, weights_file = read_state_dict(directory)
    source_format = detect_format(raw)
    state = to_internal(raw, source_format)
    _check_tied_decoder(state, weights_file)
    model = model_class(config)
    report = LoadReport(str(directory), source_format, head)
    load_state(model, state, report, weights_file)
    if report.missing:
        log.warning("%s: initialised weights not found in the checkpoint: %s", weights_file, ", ".join(report.missing))
    if report.unexpected:
        log.info("%s: checkpoint weights not used by head '%s': %s", weights_file, head, ", ".join(report.unexpected))
    model.eval()
    return (model, report) if return_report else model


def _head_from_architectures(config: SqueezeBertConfig, directory: Path) -> str:
    for arch in config.architectures or []:
        if arch in ARCHITECTURE_TO_HEAD:
            return ARCHITECTURE_TO_HEAD[arch]
        log.warning("%s: architecture %r has no matching head here; loading the bare encoder", directory, arch)
    return "base"


# ---- writing ------------------------------------------------------------------------------------------------------


def to_hf(model: SqueezeBertPreTrainedModel) -> dict[str, torch.Tensor]:
    """Our state dict -> transformers' SqueezeBERT names and shapes (conv weights get their trailing 1)."""
    out = {}
    for key, tensor in model.state_dict().items():
        if _PROJECTION_WEIGHT.search(key):
            tensor = tensor.unsqueeze(-1)
        out[key] = tensor.detach().contiguous()
    return out


def save_model(model: SqueezeBertPreTrainedModel, directory: str | os.PathLike, tokenizer: Any = None,
               copy_tokenizer_from: str | os.PathLike | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files); each file lands atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.replace(architectures=[model.architecture])
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(to_hf(model), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / WEIGHTS_NAME)
    config.save(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    elif copy_tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            src = Path(copy_tokenizer_from) / name
            if src.exists():
                shutil.copyfile(src, directory / name)
    return directory
