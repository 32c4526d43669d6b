"""Inference pipelines: text in, labels / entities / answers / embeddings out.

``pipeline("text-classification", model="path/to/checkpoint")`` returns a callable that takes one input or a list
and returns one result or a list, in input order. Each pipeline works in three steps, kept apart so that the HTTP
server (``squeezebert.serve``) can batch features from many requests together:

1. ``prepare(items)``: tokenize into *features* (one per input; several for a long QA context, one per stride
   window), recording whether truncation dropped tokens;
2. ``run_batch(features)``: one padded model call -> one small numpy result per feature;
   ``forward(features)`` plans those calls: sorted by length, cut under a token budget
   (``squeezebert.infer.batching``), outputs put back in feature order;
3. ``finish(item, features, outputs)``: labels, entities, the answer span or the pooled vector of one input.

The model runs through ``for_inference(model, precision)`` (``compile=False`` by default: ``torch.compile`` warms
up for every new input shape, which suits a long-running server better than a one-off call).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_model
from .data.squad import _best_span
from .infer.batching import collate, plan_batches
from .infer.fast import InferenceModel, for_inference
from .model import SqueezeBertModel, SqueezeBertPreTrainedModel, TaskModel
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)

BUCKET = 16  # padded lengths are multiples of this (bounds the shapes a compiled model sees)


class InputTooLong(ValueError):
    """An input longer than ``max_length`` tokens when the caller asked for no truncation."""


@dataclass
class Feature:
    """One model row: token ids plus what ``finish`` needs to map its outputs back to the input text."""

    item: int  # index of the input it came from
    input_ids: list[int]
    token_type_ids: list[int]
    truncated: bool = False
    offsets: list[tuple[int, int] | None] = field(default_factory=list)  # per token, None outside the text
    word_ids: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


class Pipeline:
    """Shared machinery; subclasses define ``parse``, ``prepare``, ``run_batch`` outputs and ``finish``."""

    task = ""
    head = "base"  # the model head this task needs (a key of squeezebert.model.HEADS)

    def __init__(self, model: SqueezeBertPreTrainedModel, tokenizer: Tokenizer, precision: str = "fp32",
                 batch_size: int = 32, max_length: int | None = None, max_tokens: int = 8192,
                 compile: bool = False):
        self.model, self.tokenizer, self.precision = model, tokenizer, precision
        self.config = model.config
        limit = min(tokenizer.model_max_length, self.config.max_position_embeddings)
        self.max_length = min(max_length or limit, limit)
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        # rows are padded to multiples of BUCKET, but never past the position table
        self.pad_cap = min(bucket_ceil(self.max_length), self.config.max_position_embeddings)
        self.max_tokens = max(max_tokens, self.pad_cap)
        self.runner: InferenceModel = for_inference(self.runnable(model), precision, compile=compile)

    def runnable(self, model: SqueezeBertPreTrainedModel) -> SqueezeBertPreTrainedModel:
        return model

    # ---- the three steps ----------------------------------------------------------------------------------------
    def parse(self, value: Any, index: int) -> Any:
        """One raw input -> the canonical item (e.g. a str or a (text, pair) tuple); TypeError/ValueError if bad."""
        return _text(value, f"inputs[{index}]")

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        raise NotImplementedError

    def run_batch(self, features: Sequence[Feature]) -> list[Any]:
        raise NotImplementedError

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> dict:
        raise NotImplementedError

    # ---- driving them -------------------------------------------------------------------------------------------
    def forward(self, features: Sequence[Feature]) -> list[Any]:
        """Outputs for every feature, computed in length-sorted batches under the token budget, in input order."""
        outputs: list[Any] = [None] * len(features)
        plan = plan_batches([len(f) for f in features], self.max_tokens, self.batch_size, BUCKET, self.pad_cap)
        for batch in plan:
            for i, out in zip(batch, self.run_batch([features[i] for i in batch])):
                outputs[i] = out
        return outputs

    def __call__(self, inputs: Any, truncation: bool = True, **options: Any) -> dict | list[dict]:
        single = not isinstance(inputs, list)
        raw = [inputs] if single else inputs
        if not raw:
            return []
        items = [self.parse(value, i) for i, value in enumerate(raw)]
        features = self.prepare(items, truncation)
        outputs = self.forward(features)
        results = self.collect(items, features, outputs, **options)
        return results[0] if single else results

    def collect(self, items: Sequence[Any], features: Sequence[Feature], outputs: Sequence[Any],
                **options: Any) -> list[dict]:
        """Group features (and their outputs) by input and finish each input."""
        grouped: list[tuple[list[Feature], list[Any]]] = [([], []) for _ in items]
        for feature, out in zip(features, outputs):
            grouped[feature.item][0].append(feature)
            grouped[feature.item][1].append(out)
        return [self.finish(item, fs, outs, **options) for item, (fs, outs) in zip(items, grouped)]

    # ---- helpers ------------------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None, truncation: bool, offsets: bool = False,
               first_index: int = 0) -> list[Feature]:
        """Tokenize and cut to ``max_length``; with ``truncation=False`` an input that would be cut is an error."""
        enc = self.tokenizer(list(texts), list(pairs) if pairs is not None else None, max_length=self.max_length,
                             truncation="longest_first", padding=False, return_offsets=offsets,
                             return_tensors=None)
        if not truncation:
            for i, cut in enumerate(enc.truncated):
                if cut:
                    raise InputTooLong(f"inputs[{first_index + i}] is longer than max_length={self.max_length} "
                                       "tokens and truncation is disabled")
        features = []
        for i in range(len(enc["input_ids"])):
            features.append(Feature(first_index + i, enc["input_ids"][i], enc["token_type_ids"][i],
                                    enc.truncated[i], list(enc["offset_mapping"][i]) if offsets else [],
                                    enc.word_ids(i) if offsets else []))
        return features

    def batch_tensors(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        rows = [{"input_ids": f.input_ids, "token_type_ids": f.token_type_ids} for f in features]
        return collate(rows, self.tokenizer.pad_token_id, BUCKET, self.pad_cap)

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "precision": self.precision, "max_length": self.max_length,
                "labels": [self.config.id2label[i] for i in sorted(self.config.id2label)]}


def bucket_ceil(n: int) -> int:
    """``n`` rounded up to a multiple of the bucket."""
    return -(-n // BUCKET) * BUCKET


# ---------------------------------------------------------------------------------------------- text classification


class TextClassificationPipeline(Pipeline):
    """One text or a (text, pair) -> ``{"label", "score", "scores", "truncated"}``; regression models
    (``problem_type="regression"`` or one label) -> ``{"score", "truncated"}``; multi-label -> sigmoid scores."""

    task = "text-classification"
    head = "sequence_classification"

    def parse(self, value: Any, index: int) -> Any:
        where = f"inputs[{index}]"
        if isinstance(value, dict):
            unknown = set(value) - {"text", "text_pair"}
            if unknown or "text" not in value:
                raise ValueError(f"{where}: expected keys 'text' and optional 'text_pair', got {sorted(value)}")
            pair = value.get("text_pair")
            return (_text(value["text"], f"{where}.text"), None if pair is None else _text(pair, f"{where}.text_pair"))
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(f"{where}: a pair is a (text, text_pair) tuple, got {len(value)} elements")
            return (_text(value[0], f"{where}[0]"), _text(value[1], f"{where}[1]"))
        return (_text(value, where), None)

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        features: list[Feature] = []
        # singles and pairs tokenize differently; keep each run of one kind together, indices intact
        for start, end, paired in _runs([item[1] is not None for item in items]):
            texts = [item[0] for item in items[start:end]]
            pairs = [item[1] for item in items[start:end]] if paired else None
            features += self.encode(texts, pairs, truncation, first_index=start)
        return features

    def run_batch(self, features: Sequence[Feature]) -> list[np.ndarray]:
        batch = self.batch_tensors(features)
        logits = self.runner(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        return list(logits.float().numpy())

    @property
    def problem(self) -> str:
        if self.config.problem_type:
            return self.config.problem_type
        return "regression" if self.config.num_labels == 1 else "single_label_classification"

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> dict:
        logits = np.asarray(outputs[0], dtype=np.float64)
        truncated = features[0].truncated
        if self.problem == "regression":
            return {"score": float(logits[0]) if logits.size == 1 else [float(x) for x in logits],
                    "truncated": truncated}
        if self.problem == "multi_label_classification":
            probs = 1.0 / (1.0 + np.exp(-logits))
        else:
            probs = _softmax(logits)
        labels = [self.config.id2label[i] for i in range(len(probs))]
        best = int(np.argmax(probs))
        return {"label": labels[best], "score": float(probs[best]),
                "scores": {label: float(p) for label, p in zip(labels, probs)}, "truncated": truncated}


# ---------------------------------------------------------------------------------------------- token classification


class TokenClassificationPipeline(Pipeline):
    """A text -> ``{"entities": [{"entity", "score", "word", "start", "end"}], "truncated"}``.

    Each word takes the label of its first sub-token (as training aligns labels); words are then grouped into
    entities: ``B-X`` opens an X entity, ``I-X`` continues an X entity (or opens one after something else, as
    IOB1 does), ``O`` closes; a label without a B-/I- prefix continues an entity of the same label.
    ``start``/``end`` are character offsets into the input, ``word = text[start:end]``, ``score`` the mean
    probability of its words' labels. Long texts are truncated (and flagged).
    """

    task = "token-classification"
    head = "token_classification"

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        return self.encode(items, None, truncation, offsets=True)

    def run_batch(self, features: Sequence[Feature]) -> list[np.ndarray]:
        batch = self.batch_tensors(features)
        logits = self.runner(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        return [logits[i, : len(f)].float().numpy() for i, f in enumerate(features)]

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> dict:
        feature, probs = features[0], _softmax(np.asarray(outputs[0], dtype=np.float64))
        words: list[tuple[str, float, int, int]] = []  # (label, score, start char, end char) per word
        previous = None
        for t, word in enumerate(feature.word_ids):
            if word is None:
                continue
            start, end = feature.offsets[t]
            if word != previous:
                k = int(np.argmax(probs[t]))
                words.append((self.config.id2label[k], float(probs[t, k]), start, end))
            else:  # a continuation sub-token extends its word's span
                label, score, first, _ = words[-1]
                words[-1] = (label, score, first, end)
            previous = word
        return {"entities": group_entities(item, words), "truncated": feature.truncated}


def group_entities(text: str, words: Sequence[tuple[str, float, int, int]]) -> list[dict[str, Any]]:
    """Per-word (label, score, start, end) -> entities; see :class:`TokenClassificationPipeline`."""
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    scores: list[float] = []

    def close() -> None:
        nonlocal current
        if current is not None:
            current["score"] = float(np.mean(scores))
            current["word"] = text[current["start"] : current["end"]]
            entities.append(current)
        current = None

    for label, score, start, end in words:
        if label == "O":
            close()
            continue
        prefix, kind = (label[:2], label[2:]) if label[:2] in ("B-", "I-") and len(label) > 2 else ("", label)
        if current is None or prefix == "B-" or current["entity"] != kind:
            close()
            current, scores = {"entity": kind, "start": start, "end": end}, []
        current["end"] = end
        scores.append(score)
    close()
    return entities


# ---------------------------------------------------------------------------------------------- question answering


class QuestionAnsweringPipeline(Pipeline):
    """``{"question", "context"}`` (or a (question, context) tuple) -> ``{"answer", "score", "start", "end",
    "windows"}``.

    A context longer than fits is read in overlapping windows (``doc_stride`` tokens of overlap); each window's
    best span is chosen among the top ``n_best_size`` start and end logits (``squeezebert.data.squad``, the same
    selection the SQuAD evaluation uses), the best over windows by start + end logit wins. ``score`` is that
    span's probability within its window (softmax of start times softmax of end); ``start``/``end`` are character
    offsets into the context.
    """

    task = "question-answering"
    head = "question_answering"

    def __init__(self, *args: Any, doc_stride: int = 128, n_best_size: int = 20, max_answer_length: int = 30,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.doc_stride, self.n_best_size, self.max_answer_length = doc_stride, n_best_size, max_answer_length

    def parse(self, value: Any, index: int) -> Any:
        where = f"inputs[{index}]"
        if isinstance(value, dict):
            if set(value) != {"question", "context"}:
                raise ValueError(f"{where}: expected keys 'question' and 'context', got {sorted(value)}")
            return (_text(value["question"], f"{where}.question"), _text(value["context"], f"{where}.context"))
        if isinstance(value, tuple) and len(value) == 2:
            return (_text(value[0], f"{where}[0]"), _text(value[1], f"{where}[1]"))
        raise TypeError(f"{where}: expected {{'question': ..., 'context': ...}}, got {type(value).__name__}")

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        features: list[Feature] = []
        for index, (question, context) in enumerate(items):
            q_len = len(self.tokenizer.encode(question, add_special_tokens=False))
            room = self.max_length - q_len - 3  # [CLS] q [SEP] c [SEP]
            if room < 8:
                raise InputTooLong(f"inputs[{index}].question has {q_len} tokens: it leaves no room for the "
                                   f"context within max_length={self.max_length}")
            stride = min(self.doc_stride, room // 2)  # the library needs stride < the window's context part
            enc = self.tokenizer(question, context, max_length=self.max_length, truncation="only_second",
                                 stride=stride, return_overflowing=True, return_offsets=True, padding=False,
                                 return_tensors=None)
            for row in range(len(enc["input_ids"])):
                types, words = enc["token_type_ids"][row], enc.word_ids(row)
                offsets = [tuple(o) if types[t] == 1 and words[t] is not None else None
                           for t, o in enumerate(enc["offset_mapping"][row])]
                features.append(Feature(index, enc["input_ids"][row], types, False, offsets, words))
        return features

    def run_batch(self, features: Sequence[Feature]) -> list[tuple[np.ndarray, np.ndarray]]:
        batch = self.batch_tensors(features)
        out = self.runner(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return [(out.start_logits[i, : len(f)].float().numpy(), out.end_logits[i, : len(f)].float().numpy())
                for i, f in enumerate(features)]

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> dict:
        context = item[1]
        best = {"answer": "", "score": 0.0, "start": 0, "end": 0, "windows": len(features)}
        best_logit = -math.inf
        for feature, (starts, ends) in zip(features, outputs):
            starts, ends = np.asarray(starts, np.float64), np.asarray(ends, np.float64)
            logit, span = _best_span(starts, ends, feature.offsets, self.n_best_size, self.max_answer_length)
            if span is None or logit <= best_logit:
                continue
            inside = np.array([o is not None for o in feature.offsets])  # normalise over the context only
            prob = math.exp(logit - _logsumexp(starts[inside]) - _logsumexp(ends[inside]))
            best_logit = logit
            best.update(answer=context[span[0] : span[1]], score=prob, start=span[0], end=span[1])
        return best


# ---------------------------------------------------------------------------------------------- feature extraction


class FeatureExtractionPipeline(Pipeline):
    """A text -> ``{"embedding": [floats], "truncated"}``: the mean of the last hidden states over real tokens
    (``pooling="mean"``, what sentence-transformers' all-MiniLM-L6-v2 uses) or the [CLS] state
    (``pooling="cls"``); ``normalize=True`` scales it to unit length. Runs the encoder of any head."""

    task = "feature-extraction"
    head = "base"
    POOLINGS = ("mean", "cls")

    def __init__(self, *args: Any, pooling: str = "mean", normalize: bool = False, **kwargs: Any):
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        self.pooling, self.normalize = pooling, normalize
        super().__init__(*args, **kwargs)

    def runnable(self, model: SqueezeBertPreTrainedModel) -> SqueezeBertPreTrainedModel:
        return model.transformer if isinstance(model, TaskModel) else model

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        return self.encode(items, None, truncation)

    def run_batch(self, features: Sequence[Feature]) -> list[dict[str, np.ndarray]]:
        batch = self.batch_tensors(features)
        hidden = self.runner(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, S, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        cls = hidden[:, 0]
        return [{"mean": mean[i].float().numpy(), "cls": cls[i].float().numpy()} for i in range(len(features))]

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], pooling: str | None = None,
               normalize: bool | None = None, **options: Any) -> dict:
        pooling = pooling or self.pooling
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        vector = np.asarray(outputs[0][pooling], dtype=np.float64)
        if self.normalize if normalize is None else normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return {"embedding": [float(x) for x in vector], "truncated": features[0].truncated}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": [], "dim": self.config.hidden_size, "pooling": self.pooling}


# ---------------------------------------------------------------------------------------------- registry and entry


TASKS: dict[str, type[Pipeline]] = {
    "text-classification": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "feature-extraction": FeatureExtractionPipeline,
}

# model head -> the task it serves (a bare encoder serves feature extraction)
HEAD_TASKS = {cls.head: task for task, cls in TASKS.items()}


def task_for_model(model: SqueezeBertPreTrainedModel) -> str:
    """The task a loaded model's head serves; every other head falls back to feature extraction."""
    from .model import HEADS

    head = next((name for name, cls in HEADS.items() if type(model) is cls), "base")
    return HEAD_TASKS.get(head, "feature-extraction")


def pipeline(task: str, model: str | os.PathLike | SqueezeBertPreTrainedModel,
             tokenizer: Tokenizer | str | os.PathLike | None = None, precision: str = "fp32", batch_size: int = 32,
             max_length: int | None = None, **kwargs: Any) -> Pipeline:
    """A ready pipeline for ``task`` (a key of :data:`TASKS`).

    ``model`` is a checkpoint directory (loaded with the task's head; a checkpoint without that head's weights
    gets a freshly initialised head, with a warning) or a loaded model. ``tokenizer`` defaults to the checkpoint
    directory's. ``kwargs`` go to the pipeline class (``compile``, ``max_tokens``, ``doc_stride``, ``pooling``...).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    cls = TASKS[task]
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        tokenizer = tokenizer if tokenizer is not None else path
        model = load_model(path, head=cls.head if cls.head != "base" else None)
    elif not isinstance(model, SqueezeBertPreTrainedModel):
        raise TypeError(f"model must be a checkpoint path or a SqueezeBERT model, got {type(model).__name__}")
    if tokenizer is None:
        raise ValueError("a tokenizer (or its directory) is needed when model is an already loaded model")
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_pretrained(tokenizer)
    if cls.head != "base" and task_for_model(model) != task:
        raise ValueError(f"task {task!r} needs a {cls.head} model, got {type(model).__name__}")
    if not isinstance(model, (SqueezeBertModel, TaskModel)):
        raise TypeError(f"unsupported model type {type(model).__name__}")
    return cls(model.eval(), tokenizer, precision=precision, batch_size=batch_size, max_length=max_length, **kwargs)


# ---------------------------------------------------------------------------------------------- small helpers


def _text(value: Any, where: str) -> str:
    """A non-empty string, or a clear error naming the input."""
    if not isinstance(value, str):
        raise TypeError(f"{where} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{where} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. JSON "\ud800") is not text the tokenizer can read
        raise ValueError(f"{where} is not valid Unicode (it contains a lone surrogate)") from None
    return value


def _runs(flags: Sequence[bool]) -> list[tuple[int, int, bool]]:
    """Maximal runs of equal flags as (start, end, flag)."""
    runs: list[tuple[int, int, bool]] = []
    for i, flag in enumerate(flags):
        if runs and runs[-1][2] == flag:
            runs[-1] = (runs[-1][0], i + 1, flag)
        else:
            runs.append((i, i + 1, flag))
    return runs


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m + math.log(float(np.exp(x - m).sum()))
