"""Inference pipelines: text in, labels / entities / answers / embeddings out, in two shapes.

``pipe = pipeline("text-classification", model="path/to/checkpoint")`` (or transformers' names and aliases:
``"sentiment-analysis"``, ``"ner"``) returns a pipeline with two ways to call it:

- ``pipe(inputs, **options)``: transformers' call and shapes, so code written for ``transformers.pipeline`` works
  unchanged: ``[{"label", "score"}]`` for one text, ``top_k`` / ``function_to_apply`` for classification,
  ``aggregation_strategy`` for entities (``entity_group`` when grouped), ``question=`` / ``context=`` for QA, token
  vectors for feature extraction (or ``pooling="mean"`` for one sentence vector). Unknown options are errors.
- ``pipe.run(inputs)``: our richer results, what the server and ``squeezebert predict`` return: every label's
  score, a ``truncated`` flag, the number of QA windows, pooled embeddings.

Each pipeline works in three steps, kept apart so that the HTTP server (``squeezebert.serve``) can batch features
from many requests together:

1. ``prepare(items)``: tokenize into *features* (one per input; several for a long QA context, one per stride
   window), recording whether truncation dropped tokens;
2. ``run_batch(features)``: one padded model call -> one small numpy result per feature;
   ``forward(features)`` plans those calls: sorted by length, cut under a token budget
   (``squeezebert.infer.batching``), outputs put back in feature order;
3. ``finish`` (``run``) or ``postprocess`` (``__call__``): labels, entities, the answer span or the vectors of one
   input.

The model runs through a *runner*: ``runner(input_ids, attention_mask, token_type_ids)`` on int64 numpy arrays ->
``{output name: float32 array}``. ``backend="torch"`` (default for a checkpoint) runs the PyTorch model through
``for_inference(model, precision)`` (``compile=False`` by default: ``torch.compile`` warms up for every new input
shape, which suits a long-running server better than a one-off call); ``backend="onnxruntime"`` (default for a
folder written by ``squeezebert export --format onnx``) runs ``squeezebert.onnx_backend.OnnxModel``, and that path
never imports torch: this module imports it only inside the torch runner.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from .config import SqueezeBertConfig
from .data.squad import _best_span
from .infer.batching import pad_batch, plan_batches
from .tasks import HEAD_TASKS, PIPELINE_ALIASES, pipeline_head
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .model import SqueezeBertPreTrainedModel
    from .onnx_backend import OnnxModel

log = logging.getLogger(__name__)

BUCKET = 16  # padded lengths are multiples of this (bounds the shapes a compiled model sees)
BACKENDS = ("torch", "onnxruntime")
# A model call: int64 (input_ids, attention_mask, token_type_ids), each (B, S) -> {output name: float32 array}
Runner = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


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
    """Shared machinery; subclasses define ``parse``, ``prepare``, ``run_batch``, ``finish`` and ``postprocess``."""

    task = ""  # a pipeline task of squeezebert.tasks.HEAD_TASKS, which also names the model head it needs
    OUTPUTS: tuple[str, ...] = ()  # the model outputs run_batch reads
    # __call__'s keyword options (transformers' names) and their defaults; any other keyword is an error
    CALL_OPTIONS: dict[str, Any] = {"truncation": True}

    def __init__(self, runner: Runner, config: SqueezeBertConfig, tokenizer: Tokenizer, precision: str = "fp32",
                 batch_size: int = 32, max_length: int | None = None, max_tokens: int = 8192, **call_defaults: Any):
        self.runner, self.config, self.tokenizer, self.precision = runner, config, tokenizer, precision
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
        # options given to pipeline(...) are __call__'s defaults, as in transformers (pipeline(..., top_k=3))
        self.call_defaults = self.check_options(call_defaults)

    # ---- the three steps ----------------------------------------------------------------------------------------
    def parse(self, value: Any, index: int) -> Any:
        """One raw input -> the canonical item (e.g. a str or a (text, pair) tuple); TypeError/ValueError if bad."""
        return _text(value, f"inputs[{index}]")

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        raise NotImplementedError

    def run_batch(self, features: Sequence[Feature]) -> list[Any]:
        raise NotImplementedError

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> dict:
        """Our result for one input (``run``, the server, the CLI)."""
        raise NotImplementedError

    def postprocess(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> Any:
        """transformers' result for one input (``__call__``)."""
        raise NotImplementedError

    # ---- driving them -------------------------------------------------------------------------------------------
    def forward(self, features: Sequence[Feature], progress: bool = False) -> list[Any]:
        """Outputs for every feature, computed in length-sorted batches under the token budget, in input order
        (``progress``: a bar over the batches on stderr, when it is a terminal)."""
        outputs: list[Any] = [None] * len(features)
        plan = plan_batches([len(f) for f in features], self.max_tokens, self.batch_size, BUCKET, self.pad_cap)
        for batch in tqdm(plan, desc=self.task, unit="batch", disable=None if progress else True,
                          file=sys.stderr):
            for i, out in zip(batch, self.run_batch([features[i] for i in batch])):
                outputs[i] = out
        return outputs

    def __call__(self, inputs: Any = None, **options: Any) -> Any:
        """transformers' call: one input or a list, the task's options (``CALL_OPTIONS``), transformers' shapes."""
        options = {**self.CALL_OPTIONS, **self.call_defaults, **self.check_options(options)}
        inputs = self.call_inputs(inputs, options)
        truncation = options.pop("truncation")
        single = not isinstance(inputs, list)
        raw = [inputs] if single else inputs
        if not raw:
            return []
        results = self.compute(raw, truncation, self.postprocess, **options)
        return self.shape(results, inputs, single, options)

    def run(self, inputs: Any, truncation: bool = True, progress: bool = False, **options: Any) -> dict | list[dict]:
        """Our results: one input -> one dict, a list -> a list of dicts, in input order."""
        single = not isinstance(inputs, list)
        raw = [inputs] if single else inputs
        if not raw:
            return []
        results = self.compute(raw, truncation, self.finish, progress, **options)
        return results[0] if single else results

    def compute(self, raw: Sequence[Any], truncation: bool, finish: Callable[..., Any], progress: bool = False,
                **options: Any) -> list:
        items = [self.parse(value, i) for i, value in enumerate(raw)]
        features = self.prepare(items, truncation)
        return self.collect(items, features, self.forward(features, progress), finish=finish, **options)

    def collect(self, items: Sequence[Any], features: Sequence[Feature], outputs: Sequence[Any],
                finish: Callable[..., Any] | None = None, **options: Any) -> list:
        """Group features (and their outputs) by input and finish each input (with ``finish``, by default ours)."""
        grouped: list[tuple[list[Feature], list[Any]]] = [([], []) for _ in items]
        for feature, out in zip(features, outputs):
            grouped[feature.item][0].append(feature)
            grouped[feature.item][1].append(out)
        finish = finish or self.finish
        return [finish(item, fs, outs, **options) for item, (fs, outs) in zip(items, grouped)]

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` if every one is a ``__call__`` option of this task, else a TypeError naming the known ones
        (transformers passes unknown ones on to the tokenizer, where a typo silently does nothing)."""
        unknown = sorted(set(options) - set(self.CALL_OPTIONS))
        if unknown:
            raise TypeError(f"{self.task} pipeline: unknown option(s) {', '.join(unknown)}; it takes "
                            f"{', '.join(self.CALL_OPTIONS)}")
        return options

    def call_inputs(self, inputs: Any, options: dict[str, Any]) -> Any:
        """The inputs of a ``__call__`` (QA also takes them as keywords)."""
        if inputs is None:
            raise TypeError(f"{self.task} pipeline: no inputs given")
        return inputs

    def shape(self, results: list, inputs: Any, single: bool, options: dict[str, Any]) -> Any:
        """transformers' outer shape: one input -> its result, a list -> the list."""
        return results[0] if single else results

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

    def run_model(self, features: Sequence[Feature]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One padded model call on ``features``: (the model's outputs, the padded inputs), numpy both."""
        rows = [{"input_ids": f.input_ids, "token_type_ids": f.token_type_ids} for f in features]
        batch = pad_batch(rows, self.tokenizer.pad_token_id, BUCKET, self.pad_cap)
        return self.runner(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]), batch

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "precision": self.precision, "max_length": self.max_length,
                "labels": [self.config.id2label[i] for i in sorted(self.config.id2label)]}


def bucket_ceil(n: int) -> int:
    """``n`` rounded up to a multiple of the bucket."""
    return -(-n // BUCKET) * BUCKET


# ---------------------------------------------------------------------------------------------- text classification


class TextClassificationPipeline(Pipeline):
    """One text or a (text, pair) -> ``{"label", "score", "scores", "truncated"}``; regression models
    (``problem_type="regression"`` or one label) -> ``{"score", "truncated"}``; multi-label -> sigmoid scores.

    Called (transformers): ``{"label", "score"}`` of the best label, in a list for a single text (not for a pair);
    ``top_k=k`` (or None: all) -> the best k, best first; ``function_to_apply`` ``"softmax"`` / ``"sigmoid"`` /
    ``"none"`` (default as transformers: none for regression, sigmoid for multi-label or one label, else softmax).
    """

    task = "text-classification"
    OUTPUTS = ("logits",)
    CALL_OPTIONS = {"truncation": True, "top_k": "", "function_to_apply": None}  # "": transformers' "not given"
    FUNCTIONS = ("softmax", "sigmoid", "none")

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
        return list(self.run_model(features)[0]["logits"])

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

    def postprocess(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], top_k: Any = "",
                    function_to_apply: str | None = None) -> dict | list[dict]:
        logits = np.asarray(outputs[0], dtype=np.float64)
        function = function_to_apply or ("none" if self.problem == "regression" else
                                         "sigmoid" if self.problem == "multi_label_classification"
                                         or len(logits) == 1 else "softmax")
        if function not in self.FUNCTIONS:
            raise ValueError(f"function_to_apply must be one of {', '.join(self.FUNCTIONS)}, got {function!r}")
        scores = _softmax(logits) if function == "softmax" else 1 / (1 + np.exp(-logits)) if function == "sigmoid" \
            else logits
        labels = [self.config.id2label[i] for i in range(len(scores))]
        if top_k == "":  # not given: transformers' legacy form, the best label alone
            best = int(np.argmax(scores))
            return {"label": labels[best], "score": float(scores[best])}
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None (every label), got {top_k!r}")
        ranked = sorted(({"label": label, "score": float(p)} for label, p in zip(labels, scores)),
                        key=lambda r: -r["score"])
        return ranked if top_k is None else ranked[:top_k]

    def shape(self, results: list, inputs: Any, single: bool, options: dict[str, Any]) -> Any:
        # transformers wraps a single text's best label in a list (but not a pair's, nor a top_k list)
        if single and isinstance(inputs, str) and options["top_k"] == "":
            return results
        return results[0] if single else results


# ---------------------------------------------------------------------------------------------- token classification


class TokenClassificationPipeline(Pipeline):
    """A text -> ``{"entities": [{"entity", "score", "word", "start", "end"}], "truncated"}``.

    Each word takes the label of its first sub-token (as training aligns labels); words are then grouped into
    entities: ``B-X`` opens an X entity, ``I-X`` continues an X entity (or opens one after something else, as
    IOB1 does), ``O`` closes; a label without a B-/I- prefix continues an entity of the same label.
    ``start``/``end`` are character offsets into the input, ``word = text[start:end]``, ``score`` the mean
    probability of its words' labels. Long texts are truncated (and flagged).

    Called (transformers): a list of entities per text. ``aggregation_strategy`` ``"none"`` (default): one
    ``{"entity", "score", "index", "word", "start", "end"}`` per sub-word token; ``"simple"``: adjacent tokens of
    one type grouped into ``{"entity_group", "score", "word", "start", "end"}``; ``"first"`` / ``"average"`` /
    ``"max"``: each word labelled from its first token / mean scores / most confident token, then grouped. Labels
    in ``ignore_labels`` (default ``["O"]``) are left out. Same rules as transformers' pipeline.
    """

    task = "token-classification"
    OUTPUTS = ("logits",)
    CALL_OPTIONS = {"truncation": True, "aggregation_strategy": "none", "ignore_labels": None}
    STRATEGIES = ("none", "simple", "first", "average", "max")

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        return self.encode(items, None, truncation, offsets=True)

    def run_batch(self, features: Sequence[Feature]) -> list[np.ndarray]:
        logits = self.run_model(features)[0]["logits"]
        return [logits[i, : len(f)] for i, f in enumerate(features)]

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

    def postprocess(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any],
                    aggregation_strategy: Any = "none", ignore_labels: Sequence[str] | None = None) -> list[dict]:
        strategy = str(getattr(aggregation_strategy, "value", aggregation_strategy)).lower()  # str or HF's enum
        if strategy not in self.STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {', '.join(self.STRATEGIES)}, "
                             f"got {aggregation_strategy!r}")
        feature, probs = features[0], _softmax(np.asarray(outputs[0], dtype=np.float64))
        tokens = []
        for t, word in enumerate(feature.word_ids):
            if word is None:  # [CLS], [SEP]
                continue
            start, end = feature.offsets[t]
            token, text = self.tokenizer.backend.id_to_token(feature.input_ids[t]), item[start:end]
            subword = len(token) != len(text)  # "##ith" vs "ith": a WordPiece continuation
            if feature.input_ids[t] == self.tokenizer.unk_token_id:
                token, subword = text, False
            tokens.append(TokenScores(token, probs[t], start, end, t, subword))
        ignore = ["O"] if ignore_labels is None else list(ignore_labels)
        entities = aggregate_entities(tokens, strategy, self.config.id2label, self.decode)
        return [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore]

    def decode(self, tokens: Sequence[str]) -> str:
        """Sub-word tokens -> text (the WordPiece decoder joins ``##`` continuations), as transformers does."""
        decoder = self.tokenizer.backend.decoder
        return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)


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


@dataclass
class TokenScores:
    """One text token's label probabilities, for transformers' entity aggregation."""

    word: str  # the token (sub-word pieces keep their ``##``)
    scores: np.ndarray  # (num_labels,)
    start: int
    end: int
    index: int  # position in the model's row, [CLS] = 0
    is_subword: bool


def aggregate_entities(tokens: Sequence[TokenScores], strategy: str, id2label: dict[int, str],
                       decode: Callable[[Sequence[str]], str]) -> list[dict[str, Any]]:
    """transformers' ``TokenClassificationPipeline.aggregate``: per-token entities (``none``), grouped tokens
    (``simple``), or words (``first`` / ``average`` / ``max``) grouped."""
    if strategy in ("none", "simple"):
        entities = [{"entity": id2label[int(t.scores.argmax())], "score": float(t.scores.max()), "index": t.index,
                     "word": t.word, "start": t.start, "end": t.end} for t in tokens]
    else:
        words: list[list[TokenScores]] = []
        for t in tokens:
            if words and t.is_subword:
                words[-1].append(t)
            else:
                words.append([t])
        entities = [_word_entity(word, strategy, id2label, decode) for word in words]
    return entities if strategy == "none" else _group_adjacent(entities, decode)


def _word_entity(word: Sequence[TokenScores], strategy: str, id2label: dict[int, str],
                 decode: Callable[[Sequence[str]], str]) -> dict[str, Any]:
    if strategy == "first":
        scores = word[0].scores
    elif strategy == "max":
        scores = max(word, key=lambda t: t.scores.max()).scores
    else:  # average
        scores = np.nanmean(np.stack([t.scores for t in word]), axis=0)
    best = int(scores.argmax())
    return {"entity": id2label[best], "score": float(scores[best]), "word": decode([t.word for t in word]),
            "start": word[0].start, "end": word[-1].end}


def _group_adjacent(entities: Sequence[dict[str, Any]], decode: Callable[[Sequence[str]], str]
                    ) -> list[dict[str, Any]]:
    """Adjacent entities of one type -> one ``entity_group``: ``B-X`` starts a group, ``I-X`` (or a bare ``X``)
    continues an X group (transformers' ``group_entities``)."""
    def tag(label: str) -> tuple[str, str]:
        return ("B", label[2:]) if label.startswith("B-") else ("I", label[2:] if label.startswith("I-") else label)

    groups: list[list[dict[str, Any]]] = []
    for entity in entities:
        bi, kind = tag(entity["entity"])
        if groups and bi != "B" and tag(groups[-1][-1]["entity"])[1] == kind:
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return [{"entity_group": group[0]["entity"].split("-", 1)[-1],
             "score": float(np.nanmean([e["score"] for e in group])), "word": decode([e["word"] for e in group]),
             "start": group[0]["start"], "end": group[-1]["end"]} for group in groups]


# ---------------------------------------------------------------------------------------------- question answering


class QuestionAnsweringPipeline(Pipeline):
    """``{"question", "context"}`` (or a (question, context) tuple) -> ``{"answer", "score", "start", "end",
    "windows"}``.

    A context longer than fits is read in overlapping windows (``doc_stride`` tokens of overlap); each window's
    best span is chosen among the top ``n_best_size`` start and end logits (``squeezebert.data.squad``, the same
    selection the SQuAD evaluation uses), the best over windows by start + end logit wins. ``score`` is that
    span's probability within its window (softmax of start times softmax of end); ``start``/``end`` are character
    offsets into the context.

    Called (transformers 4's form: transformers 5 has no QA pipeline): ``qa(question=..., context=...)`` or
    ``qa({"question", "context"})`` -> ``{"score", "start", "end", "answer"}``; lists (or a list of questions with
    one context, or the reverse) -> a list of them.
    """

    task = "question-answering"
    OUTPUTS = ("start_logits", "end_logits")
    CALL_OPTIONS = {"truncation": True, "question": None, "context": None}

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
        out = self.run_model(features)[0]
        return [(out["start_logits"][i, : len(f)], out["end_logits"][i, : len(f)]) for i, f in enumerate(features)]

    def call_inputs(self, inputs: Any, options: dict[str, Any]) -> Any:
        question, context = options.pop("question"), options.pop("context")
        if question is None and context is None:
            return super().call_inputs(inputs, options)
        if inputs is not None or question is None or context is None:
            raise TypeError("question-answering: pass inputs, or both question= and context=, not a mix")
        if not isinstance(question, list) and not isinstance(context, list):
            return {"question": question, "context": context}
        questions = question if isinstance(question, list) else [question] * len(context)
        contexts = context if isinstance(context, list) else [context] * len(questions)
        if len(questions) != len(contexts):
            raise ValueError(f"question-answering: {len(questions)} questions for {len(contexts)} contexts")
        return [{"question": q, "context": c} for q, c in zip(questions, contexts)]

    def postprocess(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], **options: Any) -> dict:
        best = self.finish(item, features, outputs)
        return {"score": best["score"], "start": best["start"], "end": best["end"], "answer": best["answer"]}

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
    (``pooling="cls"``); ``normalize=True`` scales it to unit length. Runs the encoder of any head.

    Called (transformers): one vector per token, ``[[[...], ...]]`` for a text (a batch of one, [CLS] and [SEP]
    included); with ``pooling`` given (here or to ``pipeline``) one sentence vector per text instead, as
    sentence-transformers' ``encode`` gives it.
    """

    task = "feature-extraction"
    OUTPUTS = ("last_hidden_state",)
    CALL_OPTIONS = {"truncation": True, "pooling": None, "normalize": None}
    POOLINGS = ("mean", "cls")

    def __init__(self, *args: Any, pooling: str | None = None, normalize: bool = False, **kwargs: Any):
        if pooling is not None and pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        # ``pooling`` is run()'s (the server's) pooling; __call__ pools only when one was asked for
        self.pooling, self.normalize, self.pool_calls = pooling or "mean", normalize, pooling is not None
        super().__init__(*args, **kwargs)

    def prepare(self, items: Sequence[Any], truncation: bool = True) -> list[Feature]:
        return self.encode(items, None, truncation)

    def run_batch(self, features: Sequence[Feature]) -> list[dict[str, np.ndarray]]:
        out, batch = self.run_model(features)
        hidden = out["last_hidden_state"]  # (B, S, C)
        mask = batch["attention_mask"][..., None].astype(hidden.dtype)  # (B, S, 1)
        mean = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1)
        return [{"mean": mean[i], "cls": hidden[i, 0], "tokens": hidden[i, : len(f)]} for i, f in enumerate(features)]

    def finish(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], pooling: str | None = None,
               normalize: bool | None = None, **options: Any) -> dict:
        pooling = pooling or self.pooling
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        vector = np.asarray(outputs[0][pooling], dtype=np.float64)
        if self.normalize if normalize is None else normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return {"embedding": [float(x) for x in vector], "truncated": features[0].truncated}

    def postprocess(self, item: Any, features: Sequence[Feature], outputs: Sequence[Any], pooling: str | None = None,
                    normalize: bool | None = None) -> list:
        pooling = pooling or (self.pooling if self.pool_calls else None)
        if pooling is None:  # transformers' shape: the token vectors of a batch of one
            if normalize:
                raise ValueError("normalize=True needs a pooling ('mean' or 'cls'): token vectors are not normalised")
            return [np.asarray(outputs[0]["tokens"]).tolist()]
        return self.finish(item, features, outputs, pooling=pooling, normalize=normalize)["embedding"]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": [], "dim": self.config.hidden_size, "pooling": self.pooling}


# ---------------------------------------------------------------------------------------------- registry and entry


# the pipeline tasks of squeezebert.tasks.HEAD_TASKS that have an endpoint -> their pipelines
TASKS: dict[str, type[Pipeline]] = {
    cls.task: cls
    for cls in (TextClassificationPipeline, TokenClassificationPipeline, QuestionAnsweringPipeline,
                FeatureExtractionPipeline)
}


def task_for_model(model: SqueezeBertPreTrainedModel) -> str:
    """The task a loaded model's head serves; every other head falls back to feature extraction."""
    from .model import HEADS

    return task_for_head(next((name for name, cls in HEADS.items() if type(model) is cls), "base"))


def task_for_head(head: str) -> str:
    """The pipeline task of a model head; a head without a pipeline here (masked LM...) serves feature extraction
    from its encoder."""
    task = HEAD_TASKS[head].pipeline if head in HEAD_TASKS else None
    return task if task in TASKS else "feature-extraction"


def pipeline(task: str | None = None, model: str | os.PathLike | SqueezeBertPreTrainedModel | OnnxModel | None = None,
             tokenizer: Tokenizer | str | os.PathLike | None = None, precision: str = "fp32", batch_size: int = 32,
             max_length: int | None = None, backend: str | None = None, **kwargs: Any) -> Pipeline:
    """A ready pipeline for ``task``: a key of :data:`TASKS` or a transformers alias (``"sentiment-analysis"``,
    ``"ner"``); None: the task of the model's head.

    ``model``: a checkpoint directory (loaded with the task's head; a checkpoint without that head's weights gets
    a freshly initialised head, with a warning), a loaded model, or a folder written by ``squeezebert export
    --format onnx`` (or an :class:`~squeezebert.onnx_backend.OnnxModel`). ``backend``: ``"torch"`` or
    ``"onnxruntime"`` (default: onnxruntime for an ONNX folder, else torch); the onnxruntime path never imports
    torch. ``tokenizer`` defaults to the model directory's. ``kwargs``: the pipeline's settings (``compile`` for
    torch, ``max_tokens``, ``doc_stride``, ``pooling``...) and defaults for its call options (``top_k``,
    ``aggregation_strategy``...); anything else is an error.
    """
    if model is None:
        raise TypeError("pipeline() needs model=: a checkpoint directory, an exported ONNX folder or a loaded model")
    task = resolve_task(task) if task is not None else None
    backend = backend or default_backend(model)
    if backend == "onnxruntime":
        runner, config, tokenizer, task = _onnx_runner(model, task, tokenizer, precision, kwargs)
    elif backend == "torch":
        runner, config, tokenizer, task = _torch_runner(model, task, tokenizer, precision, kwargs.pop("compile", False))
    else:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if tokenizer is None:
        raise ValueError("a tokenizer (or its directory) is needed when model is an already loaded model")
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_pretrained(tokenizer)
    return TASKS[task](runner, config, tokenizer, precision=precision, batch_size=batch_size, max_length=max_length,
                       **kwargs)


def resolve_task(task: str) -> str:
    """A task name or transformers alias -> our task name."""
    name = PIPELINE_ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join([*TASKS, *PIPELINE_ALIASES])}")
    return name


def default_backend(model: Any) -> str:
    """onnxruntime for an ONNX folder (``model.onnx`` and no PyTorch weights) or a loaded one, else torch."""
    if type(model).__name__ == "OnnxModel":  # by name: importing the class would import onnxruntime
        return "onnxruntime"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        if (path / "model.onnx").is_file() and not any((path / name).is_file() for name in weights):
            return "onnxruntime"
    return "torch"


def _onnx_runner(model: Any, task: str | None, tokenizer: Any, precision: str, kwargs: dict[str, Any]
                 ) -> tuple[Runner, SqueezeBertConfig, Any, str]:
    from .onnx_backend import OnnxModel

    if precision != "fp32":
        raise ValueError(f"precision={precision!r} applies to the torch backend; an ONNX folder's precision is "
                         "fixed at export (squeezebert export --int8)")
    if "compile" in kwargs:
        raise TypeError("compile applies to the torch backend only")
    onnx = model if isinstance(model, OnnxModel) else OnnxModel(model)
    task = task or task_for_head(onnx.head)
    cls, head = TASKS[task], pipeline_head(task)
    missing = [name for name in cls.OUTPUTS if name not in onnx.output_names]
    if missing or (head != "base" and onnx.head != head):
        raise ValueError(f"{onnx.path}: task {task!r} needs a {head} model with output(s) "
                         f"{', '.join(cls.OUTPUTS)}; this export is a {onnx.head} model with "
                         f"{', '.join(onnx.output_names)} (export the checkpoint with the task's head; "
                         "--head base for feature-extraction)")
    return onnx, onnx.config, tokenizer if tokenizer is not None else onnx.tokenizer, task


def _torch_runner(model: Any, task: str | None, tokenizer: Any, precision: str, compile: bool
                  ) -> tuple[Runner, SqueezeBertConfig, Any, str]:
    from .checkpoint import load_model
    from .model import SqueezeBertModel, SqueezeBertPreTrainedModel, TaskModel, encoder_of

    if isinstance(model, (str, os.PathLike)):
        head = pipeline_head(task) if task is not None else None
        tokenizer = tokenizer if tokenizer is not None else Path(model)
        model = load_model(Path(model), head=head if head != "base" else None)
    elif not isinstance(model, SqueezeBertPreTrainedModel):
        raise TypeError("model must be a checkpoint path, an exported ONNX folder or a SqueezeBERT model, got "
                        f"{type(model).__name__}")
    if not isinstance(model, (SqueezeBertModel, TaskModel)):
        raise TypeError(f"unsupported model type {type(model).__name__}")
    task = task or task_for_model(model)
    head = pipeline_head(task)
    if head != "base" and task_for_model(model) != task:
        raise ValueError(f"task {task!r} needs a {head} model, got {type(model).__name__}")
    encoder = encoder_of(model) if head == "base" else model
    return TorchRunner(encoder.eval(), precision, compile), model.config, tokenizer, task


class TorchRunner:
    """A PyTorch model on numpy batches, through ``for_inference`` (precision as a module swap, optional compile)."""

    def __init__(self, model: SqueezeBertPreTrainedModel, precision: str = "fp32", compile: bool = False):
        from .infer.fast import for_inference

        self.model = for_inference(model, precision, compile=compile)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
                 ) -> dict[str, np.ndarray]:
        import torch

        out = self.model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask),
                         torch.from_numpy(token_type_ids))
        return {name: value.float().numpy() for name, value in out.items() if isinstance(value, torch.Tensor)}


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
