"""Load and save Hugging Face-format checkpoint directories.

Reads transformers' SqueezeBERT checkpoints (``transformer.encoder.layers.N.attention.query.weight``, a Conv1d weight
``(out, in/groups, 1)``) and dense BERT checkpoints (``bert.encoder.layer.N.attention.self.query.weight``, a Linear
weight ``(out, in)``), which become the all-groups-1 SqueezeBERT. Writes transformers' SqueezeBERT layout, so
``SqueezeBertFor*.from_pretrained`` loads what we save.

This module depends on the model, never the reverse (model.py imports nothing of ours but the config): the model
classes' HF-style ``from_pretrained`` / ``save_pretrained`` reach ``load_model`` / ``save_model`` through the slot
``SqueezeBertPreTrainedModel.checkpoint_io``, which this module fills at the bottom.

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

from .config import ARCHITECTURE_TO_HEAD, SqueezeBertConfig
from .fileio import atomic_path, write_json
from .model import HEADS, CheckpointIO, SqueezeBertPreTrainedModel, encoder_of

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


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
        state: dict[str, torch.Tensor] = {}
        for shard in _index_shards(index):
            state.update(_load_safetensors(shard))
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


def _index_shards(index: Path) -> list[Path]:
    """The shard files a ``model.safetensors.index.json`` names, each checked to lie inside the checkpoint directory
    (an index is data from whoever made the checkpoint: it must not make us read ``/etc/...`` or ``../..``)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a valid safetensors index ({type(e).__name__}: {e})") from None
    root = index.parent.resolve()
    shards = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{index}: shard names must be file names, got {name!r}")
        shard = (index.parent / name).resolve()
        if shard.parent != root and root not in shard.parents:
            raise CheckpointError(f"{index}: shard {name!r} lies outside the checkpoint directory {index.parent}")
        shards.append(shard)
    return shards


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
    if not _encoder_prefix(model):  # the bare encoder: its names lack the internal names' "transformer." prefix
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
    _check_mostly_loaded(model, usable, state, path)
    model.load_state_dict(usable, strict=False)


def _encoder_prefix(model: SqueezeBertPreTrainedModel) -> str:
    """Where the encoder's tensors sit in ``model``'s state dict: at the top for the bare encoder."""
    return "" if encoder_of(model) is model else "transformer."


def _check_mostly_loaded(model: SqueezeBertPreTrainedModel, usable: dict[str, torch.Tensor],
                         state: dict[str, torch.Tensor], path: Path) -> None:
    """A fresh head is normal; an encoder left mostly at its random init means the file is not this model's."""
    prefix = _encoder_prefix(model)
    encoder = [k for k in model.state_dict() if k.startswith(prefix) and ".pooler." not in f".{k}"]
    matched = sum(k in usable for k in encoder)
    if matched * 2 < len(encoder):
        example = next(iter(state), None)
        raise CheckpointError(
            f"{path}: only {matched} of the model's {len(encoder)} encoder tensors match a tensor in the checkpoint "
            f"({len(state)} tensors, e.g. {example!r}): the model would be mostly random. Not a BERT or SqueezeBERT "
            "checkpoint, or renamed tensors?")


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
               copy_tokenizer_from: str | os.PathLike | None = None,
               sentence_transformers_from: str | os.PathLike | None = None,
               card: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) and a model card (``README.md``; ``card``:
    facts for :func:`~squeezebert.model_card.write_model_card`); each file lands atomically. With
    ``sentence_transformers_from`` a sentence-transformers source's own files come along (see
    :func:`copy_sentence_transformers_files`)."""
    from .model_card import write_model_card

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.replace(architectures=[model.architecture])
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(to_hf(model), str(tmp), metadata={"format": "pt"})
    config.save(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    elif copy_tokenizer_from is not None:
        copy_tokenizer_files(copy_tokenizer_from, directory)
    if sentence_transformers_from is not None:
        copy_sentence_transformers_files(sentence_transformers_from, directory, config.hidden_size)
    write_model_card(directory, config, **(card or {}))
    return directory


def copy_tokenizer_files(source: str | os.PathLike, directory: str | os.PathLike) -> list[str]:
    """The tokenizer files of checkpoint directory ``source`` copied into ``directory``; returns the names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            shutil.copyfile(Path(source) / name, Path(directory) / name)
            copied.append(name)
    return copied


SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def copy_sentence_transformers_files(source: str | os.PathLike, directory: str | os.PathLike,
                                     hidden_size: int) -> list[str]:
    """A sentence-transformers model's own files copied from ``source``: ``modules.json``, its settings and the
    module folders ``modules.json`` lists (``1_Pooling/``, ``2_Normalize/``, ``2_Dense/``...), so that
    ``SentenceTransformer(directory)`` loads the new checkpoint as the same sentence model (same pooling, same
    normalisation). Returns the names copied: none for a plain transformers checkpoint."""
    source, directory = Path(source), Path(directory)
    modules_file = source / "modules.json"
    if not modules_file.is_file():
        return []
    try:
        folders = [m["path"] for m in json.loads(modules_file.read_text(encoding="utf-8")) if m.get("path")]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{modules_file}: not a valid sentence-transformers modules.json ({e})") from None
    copied = []
    for name in SENTENCE_TRANSFORMERS_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, directory / name)
            copied.append(name)
    for folder in folders:
        src = (source / folder).resolve() if isinstance(folder, str) else None
        if src is None or source.resolve() not in src.parents:
            raise CheckpointError(f"{modules_file}: module path {folder!r} lies outside {source}")
        if src.is_dir():  # a module without settings (Normalize) may have no folder at all
            shutil.copytree(src, directory / folder, dirs_exist_ok=True)
            _set_embedding_dimension(directory / folder / "config.json", hidden_size)
            copied.append(folder)
    return copied


def _set_embedding_dimension(path: Path, hidden_size: int) -> None:
    """Pooling's ``word_embedding_dimension`` follows the new model (a student may be narrower than its teacher)."""
    if not path.is_file():
        return
    settings = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(settings, dict) and settings.get("word_embedding_dimension", hidden_size) != hidden_size:
        settings["word_embedding_dimension"] = hidden_size
        write_json(path, settings)


# The model classes' from_pretrained / save_pretrained (model.py cannot import this module: the model is a leaf).
SqueezeBertPreTrainedModel.checkpoint_io = CheckpointIO(load=load_model, save=save_model)
