"""The task layer: a task name + data directory -> tokenized features, a collate function, and official scoring.

``load_task("sst2", "glue/", tokenizer)`` returns a :class:`TaskData` that fine-tuning (``finetune/run.py``) and
distillation both train on: ``train`` features, ``evals`` features per dev split, ``collate`` (dynamic padding to
a multiple of 8), ``evaluate(model)`` (official metrics) and ``predict(model, split)``.

Tasks (``squeezebert.tasks.TASKS``): the nine GLUE tasks (+ ``mnli-mm`` and the ``ax`` diagnostic, test only),
``table`` (your CSV / TSV / JSON lines), ``conll`` (NER), ``squad`` / ``squad_v2`` (extractive QA) and ``swag``
(multiple choice). The table names each task's reader, featurizer, head and metric; the code behind a reader or
featurizer name is here (``READERS``, ``FEATURIZERS``). Reading and validating files is the readers' job
(``squeezebert.data``); they raise DataError naming the file, line and problem. What lives here is what finds a
task's files, turns examples into features and model outputs back into predictions.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .. import metrics
from ..data import (
    DataError,
    get_task,
    glue_file,
    postprocess_predictions,
    read_conll,
    read_glue,
    read_squad,
    read_swag,
    read_table,
    write_glue_predictions,
)
from ..data.conll import b_to_i_map
from ..data.squad import references
from ..tasks import TASKS, Task, canonical_task
from ..tokenizer import Tokenizer
from .features import collate, encode_choices, encode_sequences, encode_squad, encode_words

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- kinds
# A kind (the table's featurizer) turns examples into features, and per-feature model outputs back into per-example
# predictions and scores.


class Kind:
    """What every kind holds: the task's metric (a key of squeezebert.metrics.METRICS) and its labels."""

    def __init__(self, metric_task: str | None, labels: list[str] | None):
        self.metric_task = metric_task
        self.labels = labels

    @property
    def metric(self) -> str:
        """The score that picks the best checkpoint."""
        return metrics.primary_metric(self.metric_task)


class SequenceKind(Kind):
    """Sentence / sentence-pair classification or regression (GLUE, your own table). Labels None: regression;
    metric None (your own table): accuracy, or Pearson/Spearman for regression."""

    def featurize(self, tokenizer: Tokenizer, examples: Sequence, max_length: int, training: bool, what: str):
        label_ids = None if self.labels is None else {label: i for i, label in enumerate(self.labels)}
        return encode_sequences(tokenizer, examples, label_ids, max_length, what)

    def decode(self, examples: Sequence, features: Sequence[dict], outputs: Sequence[np.ndarray]) -> list:
        if self.labels is None:
            return [float(logits.reshape(-1)[0]) for logits in outputs]
        return [self.labels[int(np.argmax(logits))] for logits in outputs]

    def score(self, examples: Sequence, predictions: list) -> dict[str, float]:
        gold = [example.label for example in examples]
        if self.labels is not None:  # class ids on both sides (MRPC/QQP F1 is of class id 1)
            index = {label: i for i, label in enumerate(self.labels)}
            predictions, gold = [index[p] for p in predictions], [index[g] for g in gold]
        if self.metric_task is not None:
            return metrics.compute(self.metric_task, predictions, gold)
        return metrics.pearson_spearman(predictions, gold) if self.labels is None else metrics.accuracy(predictions, gold)

    @property
    def metric(self) -> str:
        if self.metric_task is not None:
            return super().metric
        return "spearman" if self.labels is None else "accuracy"


class TokenKind(Kind):
    """Named-entity recognition: a tag per word, scored at entity level (seqeval, conlleval rules)."""

    def __init__(self, metric_task: str, labels: list[str], label_all_subtokens: bool = False):
        super().__init__(metric_task, labels)
        self.label_all_subtokens = label_all_subtokens

    def featurize(self, tokenizer: Tokenizer, examples: Sequence, max_length: int, training: bool, what: str):
        label_ids = {label: i for i, label in enumerate(self.labels)}
        b_to_i = b_to_i_map(self.labels) if self.label_all_subtokens else None
        return encode_words(tokenizer, examples, label_ids, max_length, self.label_all_subtokens, b_to_i, what)

    def decode(self, examples: Sequence, features: Sequence[dict], outputs: Sequence[np.ndarray]) -> list:
        predictions = []
        for example, feature, logits in zip(examples, features, outputs):
            tags = [self.labels[int(i)] for i in np.argmax(logits[feature["word_starts"]], axis=-1)]
            predictions.append(tags + ["O"] * (len(example.tokens) - len(tags)))  # words cut by max_length
        return predictions

    def score(self, examples: Sequence, predictions: list) -> dict[str, float]:
        return metrics.compute(self.metric_task, predictions, [example.tags for example in examples])


class QAKind(Kind):
    """Extractive QA (SQuAD): windows over the context, n-best span selection, official EM / F1."""

    def __init__(self, metric_task: str, labels: None, version_2: bool, doc_stride: int | None,
                 max_query_length: int, n_best_size: int, max_answer_length: int):
        super().__init__(metric_task, labels)
        self.version_2 = version_2
        self.doc_stride = doc_stride
        self.max_query_length = max_query_length
        self.n_best_size = n_best_size
        self.max_answer_length = max_answer_length

    def featurize(self, tokenizer: Tokenizer, examples: Sequence, max_length: int, training: bool, what: str):
        stride = self.doc_stride if self.doc_stride is not None else max_length // 4
        return encode_squad(tokenizer, examples, max_length, stride, self.max_query_length, training, what)

    def decode(self, examples: Sequence, features: Sequence[dict], outputs: Sequence[np.ndarray]) -> list:
        answers = postprocess_predictions(
            examples,
            [examples[feature["example_index"]].id for feature in features],
            [logits[:, 0] for logits in outputs],
            [logits[:, 1] for logits in outputs],
            [feature["offset_mapping"] for feature in features],
            n_best_size=self.n_best_size,
            max_answer_length=self.max_answer_length,
            null_score_threshold=0.0 if self.version_2 else None,
        )
        return [answers[example.id] for example in examples]

    def score(self, examples: Sequence, predictions: list) -> dict[str, float]:
        answers = {example.id: answer for example, answer in zip(examples, predictions)}
        return metrics.compute(self.metric_task, answers, references(examples))


class ChoiceKind(Kind):
    """Multiple choice (SWAG): one score per (context, choice); accuracy."""

    def featurize(self, tokenizer: Tokenizer, examples: Sequence, max_length: int, training: bool, what: str):
        return encode_choices(tokenizer, examples, max_length, what)

    def decode(self, examples: Sequence, features: Sequence[dict], outputs: Sequence[np.ndarray]) -> list:
        return [int(np.argmax(logits)) for logits in outputs]

    def score(self, examples: Sequence, predictions: list) -> dict[str, float]:
        return metrics.compute(self.metric_task, predictions, [example.label for example in examples])


# the table's featurizer names -> their kinds
FEATURIZERS: dict[str, type[Kind]] = {
    "sequence": SequenceKind,
    "token": TokenKind,
    "qa": QAKind,
    "multiple_choice": ChoiceKind,
}


# ---------------------------------------------------------------------------------------------- running a model


def model_outputs(model: Any, features: Sequence[dict], collate_fn: Callable[[list[dict]], dict[str, Tensor]],
                  batch_size: int = 64, progress: bool = False) -> list[np.ndarray]:
    """One logits array per feature, in feature order: (num_labels,) for a sentence, (choices,) for multiple
    choice, (tokens, num_labels) for NER and (tokens, 2) for QA (trimmed to the feature's own length).

    ``model`` is an ``nn.Module`` (run in eval mode under inference_mode, its train/eval mode restored after) or
    any callable taking ``(input_ids, attention_mask, token_type_ids)``, such as ``for_inference(model)``.
    Features are run longest first in length-sorted batches, so little compute goes to padding. ``progress``
    shows a bar over the batches (stderr).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    module = model if isinstance(model, nn.Module) else None
    device = torch.device("cpu")
    if module is not None:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else device
    was_training = module.training if module is not None else False
    lengths = [_length(feature) for feature in features]
    order = sorted(range(len(features)), key=lambda i: -lengths[i])
    outputs: list[np.ndarray | None] = [None] * len(features)
    try:
        if module is not None:
            module.eval()
        with torch.inference_mode():
            # disable=None: a bar on a terminal only, so logs and pipes stay clean
            for start in tqdm(range(0, len(order), batch_size), desc="predicting", unit="batch",
                              disable=None if progress else True, file=sys.stderr):
                chunk = order[start : start + batch_size]
                batch = collate_fn([features[i] for i in chunk])
                inputs = [batch[name].to(device) for name in ("input_ids", "attention_mask", "token_type_ids")]
                logits = model(*inputs).head_logits().float().cpu().numpy()
                for row, i in enumerate(chunk):
                    outputs[i] = logits[row, : lengths[i]] if logits.ndim == 3 else logits[row]
    finally:
        if module is not None:
            module.train(was_training)
    return outputs  # type: ignore[return-value]


def _length(feature: dict) -> int:
    ids = feature["input_ids"]
    return max(len(row) for row in ids) if ids and isinstance(ids[0], list) else len(ids)


# ---------------------------------------------------------------------------------------------- TaskData


@dataclass
class TaskData:
    """A task ready to train and score. ``train`` and ``evals`` hold features (see ``finetune/features.py``);
    ``examples`` holds the examples behind each eval (and predicted) split, which scoring compares against."""

    name: str
    kind: str  # "sequence" | "token" | "qa" | "multiple_choice"
    head: str  # key of squeezebert.model.HEADS
    num_labels: int
    id2label: dict[int, str] | None
    problem_type: str | None
    train: list[dict]
    evals: dict[str, list[dict]]
    collate: Callable[[list[dict]], dict[str, Tensor]]
    metric: str
    examples: dict[str, Sequence] = field(default_factory=dict, repr=False)
    files: dict[str, str] = field(default_factory=dict)
    task_kind: Kind | None = field(default=None, repr=False)
    tokenizer: Tokenizer | None = field(default=None, repr=False)
    max_length: int = 128
    split_files: Callable[[str], Path | None] | None = field(default=None, repr=False)
    read_split: Callable[[Path, str], Sequence] | None = field(default=None, repr=False)
    predict_features: dict[str, list[dict]] = field(default_factory=dict, repr=False)  # splits read on demand
    progress: bool = False  # a progress bar over the batches of evaluate / predict
    train_examples: Sequence = field(default=(), repr=False)  # the examples behind ``train`` (distillation's copies)

    def eval_splits(self, split: str = "dev") -> list[str]:
        """``split`` itself, or every eval split whose name starts with it (``dev`` -> MNLI's two dev sets)."""
        if split in self.evals:
            return [split]
        matching = [name for name in self.evals if name.startswith(split)]
        if not matching and self.split_files is not None and split in self.examples:
            return [split]  # a split read on demand (e.g. CoNLL test)
        if not matching:
            known = ", ".join(self.evals) or "none loaded"
            raise ValueError(f"{self.name}: no evaluation split {split!r} (eval splits: {known})")
        return matching

    def evaluate(self, model: Any, split: str = "dev", batch_size: int = 64) -> dict[str, float]:
        """Official metrics of ``model`` on ``split``. Where ``split`` names several sets (MNLI's ``dev`` =
        matched + mismatched), the first set's metrics come unprefixed and every set's also as ``<set>_<metric>``."""
        if split not in self.evals and not any(name.startswith(split) for name in self.evals):
            self._features(split)  # another labelled split of the layout (e.g. CoNLL test): read it now
        splits = self.eval_splits(split)
        results: dict[str, float] = {}
        for name in splits:
            scores = self._score(model, name, batch_size)
            if not results:
                results.update(scores)
            if len(splits) > 1:
                results.update({f"{name}_{key}": value for key, value in scores.items()})
        return results

    def _score(self, model: Any, split: str, batch_size: int) -> dict[str, float]:
        examples = self.examples[split]
        predictions = self._decode(model, split, batch_size)
        return self.task_kind.score(examples, predictions)

    def _decode(self, model: Any, split: str, batch_size: int) -> list:
        features = self._features(split)
        outputs = model_outputs(model, features, self.collate, batch_size, self.progress)
        return self.task_kind.decode(self.examples[split], features, outputs)

    def predict(self, model: Any, split: str, batch_size: int = 64) -> list:
        """One prediction per example of ``split``, in file order: a label string or float (sequence), a tag
        list (NER), an answer text (QA) or a choice index (multiple choice). Splits not loaded yet (a GLUE
        ``test`` file, unlabeled) are read and tokenized on first use."""
        return self._decode(model, split, batch_size)

    def _features(self, split: str) -> list[dict]:
        if split in self.evals:
            return self.evals[split]
        if split not in self.examples:
            path = self.split_files(split) if self.split_files else None
            if path is None or not path.is_file():
                where = f" (looked for {path})" if path is not None else ""
                raise FileNotFoundError(f"{self.name}: no data for split {split!r}{where}")
            self.examples[split] = self.read_split(path, split)
            self.files[split] = str(path)
        if split not in self.predict_features:
            self.predict_features[split] = self.task_kind.featurize(
                self.tokenizer, self.examples[split], self.max_length, False, split)
        return self.predict_features[split]

    def write_predictions(self, model: Any, split: str, path: str | Path, batch_size: int = 64) -> Path:
        """Predictions for ``split`` written to ``path``: a GLUE task's ``test*`` split in the GLUE server's
        format (``path`` may be a directory: the official file name is used), anything else as JSON lines
        ``{"id": ..., "prediction": ...}``."""
        predictions = self.predict(model, split, batch_size)
        ids = [_example_id(example) for example in self.examples[split]]
        if TASKS[self.name].reader == "glue" and split.startswith("test"):
            indices = [int(guid.rsplit("-", 1)[1]) for guid in ids]
            target = Path(path)
            if target.is_dir() or not target.suffix:  # a submission folder (made if need be): GLUE's file names
                target.mkdir(parents=True, exist_ok=True)
                target = target / submission_name(self.name, split)
            return write_glue_predictions(self.name, dict(zip(indices, predictions)), target)
        target = Path(path)
        if target.is_dir():
            target = target / f"{self.name}-{split}-predictions.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"id": i, "prediction": p}) for i, p in zip(ids, predictions)]
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return target


def submission_name(task: str, split: str) -> str:
    """GLUE's file name for a test split's predictions (``SST-2.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``AX.tsv``)."""
    if task == "mnli" and split == "test_mismatched":
        return get_task("mnli-mm").submission_file
    return get_task(task).submission_file


def _example_id(example: Any) -> str:
    for name in ("guid", "id"):
        if hasattr(example, name):
            return str(getattr(example, name))
    return ""


# ---------------------------------------------------------------------------------------------- sources
# A source (the table's reader) finds a task's files and reads examples; each returns a _Source, with the task's
# featurizer built from the labels and options it knows, that the common code below featurises.


@dataclass
class _Source:
    task_kind: Kind
    problem_type: str | None
    train_path: Path | None
    eval_paths: dict[str, Path]
    read: Callable[[Path, str], Sequence]  # (path, split) -> examples
    find: Callable[[str], Path | None]  # split -> its file (for splits read on demand)


def _first_existing(directory: Path | None, names: Sequence[str]) -> Path | None:
    if directory is None:
        return None
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return directory / names[0]  # the expected (official) name, for error messages


def _eval_paths(found: dict[str, Path | None], eval_files: dict[str, str] | None, dev_file: str | None
                ) -> dict[str, Path]:
    if eval_files:
        return {split: Path(path) for split, path in eval_files.items()}
    if dev_file:
        return {"dev": Path(dev_file)}
    return {split: path for split, path in found.items() if path is not None and path.is_file()}


def _featurizer(task: Task, labels: list[str] | None, **options: Any) -> Kind:
    return FEATURIZERS[task.featurizer](task.metric, labels, **options)


def _glue_source(task: Task, data_dir: Path | None, *, train_file: str | None = None,
                 eval_files: dict[str, str] | None = None, dev_file: str | None = None,
                 skip_bad_rows: bool | None = None) -> _Source:
    spec = get_task(task.name)

    def find(split: str) -> Path | None:
        if data_dir is None or split not in spec.files:
            return None
        official = glue_file(spec.name, data_dir, split)
        if official.is_file():
            return official
        # a Hugging Face ``datasets`` export beside it: train.jsonl, validation.jsonl, test.jsonl
        hf_split = {"dev": "validation", "dev_matched": "validation_matched",
                    "dev_mismatched": "validation_mismatched"}.get(split, split)
        for name in (f"{hf_split}.jsonl", f"{hf_split}.json", f"{split}.jsonl"):
            if (official.parent / name).is_file():
                return official.parent / name
        return official

    dev_splits = ["dev_matched", "dev_mismatched"] if spec.name == "mnli" else ["dev"]
    train = Path(train_file) if train_file else find("train")
    evals = _eval_paths({split: find(split) for split in dev_splits}, eval_files, dev_file)
    labels = list(spec.labels) if spec.labels is not None else None
    return _Source(
        _featurizer(task, labels),
        "regression" if spec.is_regression else "single_label_classification",
        train, evals,
        read=lambda path, split: read_glue(spec.name, path, split, skip_bad_rows=skip_bad_rows).examples,
        find=find,
    )


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def _table_source(task: Task, data_dir: Path | None, *, train_file: str | None = None,
                  eval_files: dict[str, str] | None = None, dev_file: str | None = None, text_column: str = "text",
                  text_pair_column: str | None = None, label_column: str = "label", id_column: str | None = None,
                  labels: Sequence[str] | None = None, regression: bool = False, file_format: str | None = None,
                  skip_bad_rows: bool = False) -> _Source:
    def find(split: str) -> Path | None:
        stems = {"dev": ("dev", "validation", "valid")}.get(split, (split,))
        return _first_existing(data_dir, [stem + suffix for stem in stems for suffix in TABLE_SUFFIXES])

    kind = _featurizer(task, None if regression else (list(labels) if labels is not None else None))
    options = dict(text_column=text_column, text_pair_column=text_pair_column, id_column=id_column,
                   regression=regression, file_format=file_format, skip_bad_rows=skip_bad_rows)

    def read(path: Path, split: str) -> Sequence:
        unlabeled = split.startswith("test")
        result = read_table(path, label_column=None if unlabeled else label_column,
                            labels=None if regression or unlabeled else kind.labels, **options)
        if not regression and not unlabeled and kind.labels is None:
            kind.labels = result.labels  # inferred from the first file read (train), then enforced on the rest
        return result.examples

    train = Path(train_file) if train_file else find("train")
    evals = _eval_paths({"dev": find("dev")}, eval_files, dev_file)
    return _Source(kind, "regression" if regression else "single_label_classification", train, evals, read, find)


def _conll_source(task: Task, data_dir: Path | None, *, train_file: str | None = None,
                  eval_files: dict[str, str] | None = None, dev_file: str | None = None,
                  labels: Sequence[str] | None = None, scheme: str = "auto",
                  label_all_subtokens: bool = False, skip_bad_rows: bool = False) -> _Source:
    names = {"train": ("train.txt",), "dev": ("valid.txt", "dev.txt", "testa.txt"), "test": ("test.txt", "testb.txt")}

    def find(split: str) -> Path | None:
        return _first_existing(data_dir, names.get(split, (f"{split}.txt",)))

    kind = _featurizer(task, list(labels) if labels is not None else [], label_all_subtokens=label_all_subtokens)

    def read(path: Path, split: str) -> Sequence:
        result = read_conll(path, scheme=scheme, skip_bad_rows=skip_bad_rows)
        if not kind.labels:
            kind.labels = list(result.labels)
        unknown = sorted(set(result.labels) - set(kind.labels))
        if unknown:
            raise DataError(path, None, f"tag(s) {unknown} not in the label set {kind.labels} (from training "
                                        "data or the model's id2label)")
        return result.examples

    train = Path(train_file) if train_file else find("train")
    evals = _eval_paths({"dev": find("dev")}, eval_files, dev_file)
    return _Source(kind, None, train, evals, read, find)


def _squad_source(task: Task, data_dir: Path | None, *, version_2: bool, train_file: str | None = None,
                  eval_files: dict[str, str] | None = None, dev_file: str | None = None,
                  doc_stride: int | None = None, max_query_length: int = 64, n_best_size: int = 20,
                  max_answer_length: int = 30, skip_bad_rows: bool = False) -> _Source:
    version = "v2.0" if version_2 else "v1.1"

    def find(split: str) -> Path | None:
        return _first_existing(data_dir, [f"{split}-{version}.json", f"{split}.json"])

    kind = _featurizer(task, None, version_2=version_2, doc_stride=doc_stride, max_query_length=max_query_length,
                       n_best_size=n_best_size, max_answer_length=max_answer_length)
    train = Path(train_file) if train_file else find("train")
    evals = _eval_paths({"dev": find("dev")}, eval_files, dev_file)
    read = lambda path, split: read_squad(path, skip_bad_rows=skip_bad_rows).examples  # noqa: E731
    return _Source(kind, None, train, evals, read, find)


def _swag_source(task: Task, data_dir: Path | None, *, train_file: str | None = None,
                 eval_files: dict[str, str] | None = None, dev_file: str | None = None,
                 skip_bad_rows: bool = False) -> _Source:
    def find(split: str) -> Path | None:
        stems = {"dev": ("val", "dev", "validation")}.get(split, (split,))
        return _first_existing(data_dir, [stem + suffix for stem in stems for suffix in (".csv", ".jsonl")])

    train = Path(train_file) if train_file else find("train")
    evals = _eval_paths({"dev": find("dev")}, eval_files, dev_file)
    read = lambda path, split: read_swag(path, skip_bad_rows=skip_bad_rows).examples  # noqa: E731
    return _Source(_featurizer(task, None), None, train, evals, read, find)


# the table's reader names -> their sources
READERS: dict[str, Callable[..., _Source]] = {
    "glue": _glue_source,
    "table": _table_source,
    "conll": _conll_source,
    "squad": partial(_squad_source, version_2=False),
    "squad_v2": partial(_squad_source, version_2=True),
    "swag": _swag_source,
}


def _source(task: Task, data_dir: Path | None, options: dict[str, Any]) -> _Source:
    try:
        return READERS[task.reader](task, data_dir, **options)
    except TypeError as error:  # an option this task does not take: say which task and what it does take
        raise TypeError(f"task {task.name!r}: {error}") from None


# ---------------------------------------------------------------------------------------------- load_task


def load_task(task: str, data_dir: str | Path | None, tokenizer: Tokenizer, max_length: int = 128,
              limit_train: int | None = None, limit_eval: int | None = None, **table_options: Any) -> TaskData:
    """Read, tokenize and package a task.

    Args:
        task: a key of :data:`squeezebert.tasks.TASKS` or one of its aliases (``SST-2``, ``ner`` = ``conll``).
        data_dir: where the files are, in the official layout: the GLUE root or a task folder
            (``SST-2/train.tsv``, ``MNLI/dev_matched.tsv`` + ``dev_mismatched.tsv``; a Hugging Face
            ``validation.jsonl`` export is read where the TSV is absent); ``train``/``dev`` ``.csv``/``.tsv``/
            ``.jsonl`` for ``table``; ``train.txt``/``valid.txt`` for ``conll``; ``train-v1.1.json``/
            ``dev-v1.1.json`` (``-v2.0`` for ``squad_v2``) for SQuAD; ``train.csv``/``val.csv`` for ``swag``.
            None when every file is given as an option.
        tokenizer: the model's tokenizer.
        max_length: tokens per feature (SQuAD contexts longer than this become overlapping windows).
        limit_train: use this many training examples, a seeded random sample (seed 0) in file order; 0 reads
            no training data (evaluation only).
        limit_eval: use the first this-many examples of each eval split.
        table_options: per task: ``train_file``, ``dev_file`` or ``eval_files={split: path}`` (override the
            layout), ``skip_bad_rows``; table: ``text_column``, ``text_pair_column``, ``label_column``,
            ``id_column``, ``labels``, ``regression``, ``file_format``; conll: ``labels``, ``scheme``,
            ``label_all_subtokens``; squad: ``doc_stride`` (default max_length // 4), ``max_query_length``,
            ``n_best_size``, ``max_answer_length``.

    A missing training file leaves ``train`` empty (fine for evaluation; fine-tuning refuses it, naming the path);
    with no training data and no eval split found, FileNotFoundError names the files looked for.
    """
    entry = TASKS[canonical_task(task)]
    directory = Path(data_dir) if data_dir is not None else None
    if directory is not None and not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such data directory")
    source = _source(entry, directory, dict(table_options))
    files: dict[str, str] = {}  # split -> the file read, filled in as they are read
    train_examples = _read_train(entry.name, source, limit_train, files)
    eval_examples = _read_evals(entry.name, source, limit_eval, files)
    if not train_examples and not eval_examples:
        looked = ", ".join(str(path) for path in (source.train_path, source.find("dev")) if path is not None)
        raise FileNotFoundError(f"{entry.name}: found neither training nor evaluation data (looked for: "
                                f"{looked or '-'}); pass data_dir, or train_file / dev_file")
    return _task_data(entry, source, tokenizer, max_length, train_examples, eval_examples, files)


def _read_train(name: str, source: _Source, limit: int | None, files: dict[str, str]) -> Sequence:
    """The training examples (``limit``: a seeded random sample of them, in file order; 0: none read)."""
    if limit == 0:
        return []
    if source.train_path is None or not source.train_path.is_file():
        log.info("%s: no training file (looked for %s)", name, source.train_path)
        return []
    examples = source.read(source.train_path, "train")
    files["train"] = str(source.train_path)
    if limit is not None and limit < len(examples):
        keep = sorted(random.Random(0).sample(range(len(examples)), limit))
        examples = [examples[i] for i in keep]
    return examples


def _read_evals(name: str, source: _Source, limit: int | None, files: dict[str, str]) -> dict[str, Sequence]:
    """Each eval split's examples (``limit``: the first this-many); a missing eval file is an error."""
    evals: dict[str, Sequence] = {}
    for split, path in source.eval_paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no {split} file {path}")
        examples = source.read(path, split)
        evals[split] = list(examples[:limit] if limit is not None else examples)
        files[split] = str(path)
    return evals


def _task_data(entry: Task, source: _Source, tokenizer: Tokenizer, max_length: int, train_examples: Sequence,
               eval_examples: dict[str, Sequence], files: dict[str, str]) -> TaskData:
    """Tokenize the examples read and package them with what training and scoring need."""
    kind = source.task_kind
    train = kind.featurize(tokenizer, train_examples, max_length, True, "train") if train_examples else []
    evals = {split: kind.featurize(tokenizer, examples, max_length, True, split)
             for split, examples in eval_examples.items()}
    labels = kind.labels
    if entry.featurizer == "multiple_choice":
        num_labels = 1  # one score per (context, choice)
    else:
        num_labels = len(labels) if labels is not None else (1 if entry.featurizer == "sequence" else 2)
    return TaskData(
        name=entry.name,
        kind=entry.featurizer,
        head=entry.head,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)) if labels is not None else None,
        problem_type=source.problem_type,
        train=train,
        evals=evals,
        collate=partial(collate, pad_token_id=tokenizer.pad_token_id),
        metric=kind.metric,
        examples=eval_examples,
        files=files,
        task_kind=kind,
        tokenizer=tokenizer,
        max_length=max_length,
        split_files=source.find,
        read_split=source.read,
        train_examples=train_examples,
    )
