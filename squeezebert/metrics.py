"""Task metrics, computed by the reference libraries: scikit-learn (accuracy, F1, Matthews), scipy (Pearson,
Spearman), seqeval (entity-level NER scores); SQuAD EM/F1 follow the official script (``data/squad.py``).

``METRICS[task](predictions, labels)`` returns a dict of floats named as the GLUE paper names them:
``{"mcc"}`` (CoLA, AX), ``{"accuracy"}`` (SST-2, MNLI, QNLI, RTE, WNLI, SWAG), ``{"f1", "accuracy"}``
(MRPC, QQP; F1 of the positive class 1), ``{"pearson", "spearman"}`` (STS-B), ``{"precision", "recall",
"f1", "accuracy"}`` (NER). GLUE and NER scores are fractions in 0..1; SQuAD's ``exact_match``/``f1`` are
percentages (0..100), as the official SQuAD script prints them. :func:`primary_metric` names the score used to
pick the best checkpoint: the one the BERT and SqueezeBERT papers report (F1 for MRPC and QQP, Spearman for
STS-B, MCC for CoLA, accuracy elsewhere).

Classification predictions and labels may be class ids or label strings (``"0"``/``"1"``...), not mixed with
different meanings: ids and strings are compared as strings, so 1 and "1" agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from seqeval import metrics as seqeval_metrics
from seqeval.scheme import IOB2
from sklearn import metrics as sk_metrics

from .data.squad import squad_scores
from .tasks import TASKS, spelled

Metric = Callable[[Any, Any], dict[str, float]]


def _as_classes(values: Any, name: str) -> np.ndarray:
    """Class ids or label strings -> an array of strings (1, 1.0, True and "1" all become "1")."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind in "biuf":
        if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"{name} are not class ids: {array[:5]}...")
        array = array.astype(np.int64)
    return array.astype(str)


def _pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    preds, gold = _as_classes(predictions, "predictions"), _as_classes(labels, "labels")
    if len(preds) != len(gold):
        raise ValueError(f"{len(preds)} predictions for {len(gold)} labels")
    if len(gold) == 0:
        raise ValueError("no labels to score")
    return preds, gold


def accuracy(predictions: Any, labels: Any) -> dict[str, float]:
    preds, gold = _pair(predictions, labels)
    return {"accuracy": float(sk_metrics.accuracy_score(gold, preds))}


def matthews(predictions: Any, labels: Any) -> dict[str, float]:
    """Matthews correlation coefficient (CoLA); 0 when either side has a single class."""
    preds, gold = _pair(predictions, labels)
    return {"mcc": float(sk_metrics.matthews_corrcoef(gold, preds))}


def f1_and_accuracy(predictions: Any, labels: Any) -> dict[str, float]:
    """Binary F1 of the positive class 1 (MRPC: paraphrase, QQP: duplicate), and accuracy."""
    preds, gold = _pair(predictions, labels)
    classes = set(preds) | set(gold)
    if not classes <= {"0", "1"}:
        raise ValueError(f"binary F1 needs classes 0 and 1, got {sorted(classes)}")
    f1 = sk_metrics.f1_score(gold, preds, pos_label="1", average="binary", labels=["0", "1"], zero_division=0)
    return {"f1": float(f1), "accuracy": float(sk_metrics.accuracy_score(gold, preds))}


def pearson_spearman(predictions: Any, labels: Any) -> dict[str, float]:
    """Pearson and Spearman correlation (STS-B); NaN when either side is constant."""
    preds = np.asarray(predictions, dtype=np.float64).reshape(-1)
    gold = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(preds) != len(gold):
        raise ValueError(f"{len(preds)} predictions for {len(gold)} labels")
    if len(gold) < 2:
        raise ValueError("correlation needs at least 2 values")
    if np.ptp(preds) == 0 or np.ptp(gold) == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {
        "pearson": float(stats.pearsonr(preds, gold).statistic),
        "spearman": float(stats.spearmanr(preds, gold).statistic),
    }


def ner_scores(
    predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]], *, strict: bool = False
) -> dict[str, float]:
    """Entity-level micro precision / recall / F1 over sentences of tags (seqeval), plus token accuracy.

    The default mode reproduces the official CoNLL ``conlleval`` script (an entity is a maximal chunk, so an
    ``I-X`` that opens a chunk still counts). ``strict=True`` parses tags strictly as IOB2 (such an ``I-X`` is
    not an entity), as seqeval's ``mode="strict"``.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(labels)} gold sentences")
    for index, (predicted, gold) in enumerate(zip(predictions, labels)):
        if len(predicted) != len(gold):
            raise ValueError(f"sentence {index}: {len(predicted)} predicted tags for {len(gold)} gold tags")
    predictions, labels = [list(tags) for tags in predictions], [list(tags) for tags in labels]
    options: dict[str, Any] = {"mode": "strict", "scheme": IOB2} if strict else {}
    return {
        "precision": float(seqeval_metrics.precision_score(labels, predictions, zero_division=0, **options)),
        "recall": float(seqeval_metrics.recall_score(labels, predictions, zero_division=0, **options)),
        "f1": float(seqeval_metrics.f1_score(labels, predictions, zero_division=0, **options)),
        "accuracy": float(seqeval_metrics.accuracy_score(labels, predictions)),
    }


def squad(predictions: Mapping[str, str], labels: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """SQuAD v1.1 / v2.0 exact match and F1 in percent: {id: predicted text} against {id: [gold texts]}."""
    return squad_scores(predictions, labels)


METRICS: dict[str, Metric] = {
    "cola": matthews,
    "sst2": accuracy,
    "mrpc": f1_and_accuracy,
    "stsb": pearson_spearman,
    "qqp": f1_and_accuracy,
    "mnli": accuracy,
    "mnli-mm": accuracy,
    "qnli": accuracy,
    "rte": accuracy,
    "wnli": accuracy,
    "ax": matthews,
    "conll2003": ner_scores,
    "squad": squad,
    "squad_v2": squad,
    "swag": accuracy,
}

PRIMARY_METRIC: dict[str, str] = {
    "cola": "mcc",
    "sst2": "accuracy",
    "mrpc": "f1",
    "stsb": "spearman",
    "qqp": "f1",
    "mnli": "accuracy",
    "mnli-mm": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
    "wnli": "accuracy",
    "ax": "mcc",
    "conll2003": "f1",
    "squad": "f1",
    "squad_v2": "f1",
    "swag": "accuracy",
}


def _key(task: str) -> str:
    """A metric name, or a task name in any spelling the task table knows (``SST-2``, ``ner``) -> its metric."""
    key = spelled(task)
    if key not in METRICS and key in TASKS:  # a task scored under another metric's name (conll -> conll2003)
        key = TASKS[key].metric or key
    if key not in METRICS:
        raise KeyError(f"no metric for task {task!r}; known: {', '.join(METRICS)}")
    return key


def compute(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """``METRICS[task](predictions, labels)``, accepting ``SST-2``-style spellings."""
    return METRICS[_key(task)](predictions, labels)


def primary_metric(task: str) -> str:
    """The key of ``compute(task, ...)`` that picks the best checkpoint (higher is better for all)."""
    return PRIMARY_METRIC[_key(task)]
