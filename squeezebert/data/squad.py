"""SQuAD v1.1 / v2.0: the JSON reader, a split by article, the official answer normalisation and EM/F1, and
n-best span selection.

Scoring follows the algorithm of the official evaluation scripts: an answer is normalised by lower-casing,
dropping ASCII punctuation, dropping the articles a/an/the and collapsing whitespace; exact match and
token-overlap F1 are taken as the maximum over the gold answers. For v2.0, an unanswerable question's gold is the
empty answer, which only an empty prediction matches (EM = F1 = 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..fileio import write_json, write_text
from .tabular import DataError, ReadResult, RowSkipper, open_text, parse_json


class Answer(NamedTuple):
    text: str
    answer_start: int


@dataclass(frozen=True)
class SquadExample:
    id: str
    title: str
    context: str
    question: str
    answers: list[Answer] = field(default_factory=list)
    is_impossible: bool = False


def read_squad(path: str | Path, *, skip_bad_rows: bool = False) -> ReadResult[SquadExample]:
    """Read a SQuAD v1.1 or v2.0 JSON file into one example per question.

    Each answer's ``answer_start`` must point at its text in the context; a question where it does not (or
    with missing fields) is a DataError naming the question, or with ``skip_bad_rows`` a counted, logged skip.
    v2.0's ``is_impossible`` questions have no answers (``plausible_answers`` are not read).
    """
    document = _document(path)
    skipper = RowSkipper(path, skip_bad_rows)
    examples = [example for a, article in enumerate(document["data"])
                for example in _article_examples(article, a, path, skipper)]
    skipper.report()
    if not examples:
        raise DataError(path, None, "no questions")
    return ReadResult(examples, len(skipper.lines), [], None, str(path))


def _document(path: str | Path) -> dict:
    """The parsed file, checked to be a SQuAD document with at least one article."""
    with open_text(path) as handle:
        document = parse_json(handle.read(), path, None)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(path, None, "not a SQuAD file: no top-level 'data' list")
    if not document["data"]:
        raise DataError(path, None, "empty file (no articles in 'data')")
    return document


def _article_examples(article: Any, a: int, path: str | Path, skipper: RowSkipper) -> list[SquadExample]:
    """One example per question of article ``a`` (``data[a]``); a malformed one goes to ``skipper``."""
    examples = []
    for p, paragraph in enumerate(_children(article, "paragraphs", f"data[{a}]", path, skipper)):
        for q, qa in enumerate(_children(paragraph, "qas", f"data[{a}].paragraphs[{p}]", path, skipper)):
            where = f"data[{a}].paragraphs[{p}].qas[{q}]"
            try:
                examples.append(_example(article, paragraph, qa, where, path))
            except DataError as error:
                skipper(error)
    return examples


def _children(parent: Any, key: str, where: str, path: str | Path, skipper: RowSkipper) -> list:
    """``parent[key]`` as a list (absent: empty); a parent that is no object or a value that is no list is malformed:
    raised, or skipped (empty) by ``skipper``."""
    value = parent.get(key, []) if isinstance(parent, dict) else None
    if not isinstance(value, list):
        what = f"{where}.{key} is a {type(value).__name__}" if isinstance(parent, dict) else \
            f"{where} is a {type(parent).__name__}"
        skipper(DataError(path, None, f"{what}, not a list of objects as SQuAD has"))
        return []
    return value


def _example(article: dict, paragraph: dict, qa: Any, where: str, path: str | Path) -> SquadExample:
    if not isinstance(qa, dict):
        raise DataError(path, None, f"{where} is a {type(qa).__name__}, not a question object")
    for owner, key in ((paragraph, "context"), (qa, "id"), (qa, "question")):
        if not isinstance(owner.get(key), str):
            raise DataError(path, None, f"{where}: missing or non-text {key!r}")
    context, qid = paragraph["context"], qa["id"]
    is_impossible = bool(qa.get("is_impossible", False))
    answers = []
    given = [] if is_impossible else qa.get("answers", [])
    if not isinstance(given, list):
        raise DataError(path, None, f"{where} (id {qid}): answers is a {type(given).__name__}, not a list")
    for answer in given:
        text, start = (answer.get("text"), answer.get("answer_start")) if isinstance(answer, dict) else (None, None)
        if not isinstance(text, str) or not isinstance(start, int) or start < 0:
            raise DataError(path, None, f"{where} (id {qid}): answer without text/answer_start: {answer!r:.80}")
        if context[start : start + len(text)] != text:
            problem = f"answer {text!r} is not at answer_start {start} of the context"
            raise DataError(path, None, f"{where} (id {qid}): {problem}")
        answers.append(Answer(text, start))
    if not answers and not is_impossible:
        raise DataError(path, None, f"{where} (id {qid}): no answers and not marked is_impossible")
    return SquadExample(qid, str(article.get("title", "")), context, qa["question"], answers, is_impossible)


# ---------------------------------------------------------------------------------------------- split by article

# SQuAD v1.1 has only its dev file in ../shared/data (48 articles), so QA trains and evaluates on two parts of it cut
# by article. The first 8 articles (2,804 questions) evaluate and the next 40 (7,766) train: evaluated articles come
# first so that they stay the same whatever number of articles is trained on.
EVAL_ARTICLES = range(0, 8)
TRAIN_ARTICLES = range(8, 48)


class ArticleSplit(NamedTuple):
    """Two SQuAD documents cut from one file by article, and the record of the cut (``split.json``)."""

    train: dict
    eval: dict
    record: dict


def article_range(text: str) -> range:
    """``"8:48"`` -> ``range(8, 48)``: article indices, 0-based in file order, STOP excluded."""
    start, _, stop = text.partition(":")
    try:
        return range(int(start), int(stop))
    except ValueError:
        raise ValueError(f"article range {text!r} is not START:STOP (0-based, STOP excluded, e.g. 8:48)") from None


def split_by_article(path: str | Path, train: range = TRAIN_ARTICLES, evaluate: range = EVAL_ARTICLES
                     ) -> ArticleSplit:
    """Cut one SQuAD file into a training and an evaluation document by article (0-based indices, file order).

    Each side keeps its articles whole and in file order under the source's ``version``; articles in neither range
    are left out. A range that is empty, outside the file or overlapping the other is a ValueError. Every question of
    the chosen articles must read as :func:`read_squad` reads it, each side must have questions, and no article
    title, paragraph context or question id may be on both sides (a passage filed under two titles would leak): each
    a DataError naming what is wrong. The cut depends on the file and the ranges alone.
    """
    document = _document(path)
    articles, parts = document["data"], {"train": train, "eval": evaluate}
    for name, chosen in parts.items():
        if chosen.step != 1 or not 0 <= chosen.start < chosen.stop:
            raise ValueError(f"{name} articles {_span(chosen)}: need 0 <= START < STOP")
        if chosen.stop > len(articles):
            raise ValueError(f"{name} articles {_span(chosen)}: {path} has only {len(articles)} articles "
                             f"(0:{len(articles)})")
    if set(train) & set(evaluate):
        both = range(max(train.start, evaluate.start), min(train.stop, evaluate.stop))
        raise ValueError(f"train articles {_span(train)} and eval articles {_span(evaluate)} overlap "
                         f"(articles {_span(both)})")
    skipper = RowSkipper(path, skip_bad_rows=False)
    sides = {name: {a: _article_examples(articles[a], a, path, skipper) for a in chosen}
             for name, chosen in parts.items()}
    _check_disjoint(sides["train"], sides["eval"], path)
    record: dict[str, Any] = {
        "source": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "source_articles": len(articles),
        "rule": "articles by 0-based index in file order, STOP excluded; no article title, paragraph context or "
                "question id on both sides",
    }
    for name, chosen in parts.items():
        questions = sum(len(examples) for examples in sides[name].values())
        if not questions:
            raise DataError(path, None, f"{name} articles {_span(chosen)} have no questions")
        record[name] = {"articles": _span(chosen), "article_count": len(chosen),
                        "paragraphs": sum(len(articles[a].get("paragraphs", [])) for a in chosen),
                        "questions": questions, "titles": [str(articles[a].get("title", "")) for a in chosen]}
    train_part, eval_part = ({"version": document.get("version"), "data": articles[chosen.start : chosen.stop]}
                             for chosen in (train, evaluate))
    return ArticleSplit(train_part, eval_part, record)


def write_article_split(path: str | Path, out_dir: str | Path, train: range = TRAIN_ARTICLES,
                        evaluate: range = EVAL_ARTICLES) -> dict:
    """:func:`split_by_article` written where ``squeezebert finetune --task squad --data-dir OUT_DIR`` finds it.

    The files are ``train-v1.1.json`` and ``dev-v1.1.json`` (``-v2.0`` for a v2.0 source, plain ``train.json`` /
    ``dev.json`` for any other version), then ``split.json``, the record, last. Returns the record.
    """
    split = split_by_article(path, train, evaluate)
    suffix = {"1.1": "-v1.1", "v2.0": "-v2.0"}.get(str(split.train["version"]), "")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(split.record)
    for name, file, document in (("train", f"train{suffix}.json", split.train),
                                 ("eval", f"dev{suffix}.json", split.eval)):
        write_text(out / file, json.dumps(document) + "\n")
        record[name] = {"file": file, **record[name]}
    write_json(out / "split.json", record)
    return record


def _span(chosen: range) -> str:
    return f"{chosen.start}:{chosen.stop}" if chosen.step == 1 else str(chosen)


def _check_disjoint(train: dict[int, list[SquadExample]], evaluate: dict[int, list[SquadExample]],
                    path: str | Path) -> None:
    """No article title, paragraph context or question id of an eval article is in a train article."""
    for what, key in (("article title", "title"), ("paragraph context", "context"), ("question id", "id")):
        seen = {getattr(example, key): a for a, examples in train.items() for example in examples}
        for a, examples in evaluate.items():
            for example in examples:
                value = getattr(example, key)
                if value in seen:
                    raise DataError(path, None, f"{what} {value!r:.60} is in train article {seen[value]} and "
                                                f"eval article {a}")


# ---------------------------------------------------------------------------------------------- scoring

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (the official order)."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of normalised answers; when either is empty, 1 if both are, else 0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def _golds(answers: Sequence[str]) -> list[str]:
    """Gold answer texts; none (or only ones normalising to empty) means "no answer", i.e. ``[""]``."""
    kept = [answer for answer in answers if normalize_answer(answer)]
    return kept or [""]


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """EM and F1 in percent over every question in ``references`` ({id: [gold answer texts]}).

    A question with no prediction scores 0. An empty gold list is an unanswerable (v2.0) question. When both
    kinds are present, ``has_answer_*`` and ``no_answer_*`` break the scores down.
    """
    if not references:
        raise ValueError("no reference answers")
    totals = {"exact_match": 0.0, "f1": 0.0}
    by_kind = {"has_answer": [0.0, 0.0, 0], "no_answer": [0.0, 0.0, 0]}  # [EM sum, F1 sum, count]
    for qid, answers in references.items():
        golds = _golds(answers)
        prediction = predictions.get(qid, None)
        em = f1 = 0.0
        if prediction is not None:
            em = max(exact_match(prediction, gold) for gold in golds)
            f1 = max(token_f1(prediction, gold) for gold in golds)
        totals["exact_match"] += em
        totals["f1"] += f1
        kind = by_kind["no_answer" if golds == [""] else "has_answer"]
        kind[0], kind[1], kind[2] = kind[0] + em, kind[1] + f1, kind[2] + 1
    count = len(references)
    scores = {name: 100.0 * value / count for name, value in totals.items()}
    if by_kind["has_answer"][2] and by_kind["no_answer"][2]:
        for kind, (em, f1, n) in by_kind.items():
            scores[f"{kind}_exact_match"] = 100.0 * em / n
            scores[f"{kind}_f1"] = 100.0 * f1 / n
    return scores


def references(examples: Sequence[SquadExample]) -> dict[str, list[str]]:
    """{id: [gold answer texts]} for :func:`squad_scores`."""
    return {example.id: [answer.text for answer in example.answers] for example in examples}


# ---------------------------------------------------------------------------------------------- span selection


def postprocess_predictions(
    examples: Sequence[SquadExample] | Mapping[str, str],
    feature_example_ids: Sequence[str],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    offset_mapping: Sequence[Sequence[tuple[int, int] | None]],
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_threshold: float | None = None,
    null_index: int = 0,
) -> dict[str, str]:
    """Pick each example's answer text from its features' start/end logits.

    Args:
        examples: the examples (or {example id: context}); the answer is a slice of the context.
        feature_example_ids: for each feature (a window of one example), its example's id.
        start_logits, end_logits: per feature, one logit per token.
        offset_mapping: per feature, each token's (start, end) character span in the context, or None for
            tokens outside the context (question, special tokens, padding).
        n_best_size: how many top start and end positions to pair up.
        max_answer_length: longest span, in tokens.
        null_score_threshold: SQuAD v2.0: answer "" when the no-answer score (start + end logit at
            ``null_index``, the [CLS] token, minimum over the example's features) exceeds the best span's score
            by more than this. None (v1.1): always answer with the best span.

    Candidate spans are those whose start and end are both among the top ``n_best_size`` logits, lie in the
    context, have end >= start and are at most ``max_answer_length`` tokens; the score is start + end logit.
    An example with no valid span gets "".
    """
    contexts = examples if isinstance(examples, Mapping) else {example.id: example.context for example in examples}
    features_of: dict[str, list[int]] = {}
    for feature, example_id in enumerate(feature_example_ids):
        features_of.setdefault(example_id, []).append(feature)
    answers: dict[str, str] = {}
    for example_id, context in contexts.items():
        best_score, best_text = -math.inf, ""
        null_score = math.inf
        for feature in features_of.get(example_id, []):
            starts, ends = np.asarray(start_logits[feature]), np.asarray(end_logits[feature])
            offsets = offset_mapping[feature]
            null_score = min(null_score, float(starts[null_index] + ends[null_index]))
            score, span = _best_span(starts, ends, offsets, n_best_size, max_answer_length)
            if span is not None and score > best_score:
                best_score, best_text = score, context[span[0] : span[1]]
        found = best_score != -math.inf
        if null_score_threshold is not None and found and null_score - best_score > null_score_threshold:
            best_text = ""
        answers[example_id] = best_text
    return answers


def _best_span(
    starts: np.ndarray, ends: np.ndarray, offsets: Sequence[tuple[int, int] | None], n_best: int, max_length: int
) -> tuple[float, tuple[int, int] | None]:
    """The highest-scoring valid (start char, end char) span among the top ``n_best`` starts x ends."""
    length = min(len(starts), len(ends), len(offsets))
    top_starts = np.argsort(starts[:length])[::-1][:n_best]
    top_ends = np.argsort(ends[:length])[::-1][:n_best]
    best_score, best_span = -math.inf, None
    for start in top_starts:
        if offsets[start] is None:
            continue
        for end in top_ends:
            if offsets[end] is None or end < start or end - start + 1 > max_length:
                continue
            score = float(starts[start] + ends[end])
            if score > best_score:
                best_score, best_span = score, (int(offsets[start][0]), int(offsets[end][1]))
    return best_score, best_span
