"""A teacher-labelled transfer set for task distillation: perturbed copies of the training examples.

Why: on a small task the student sees each of a few thousand examples many times and learns them rather than the
teacher's function (STS-B, docs/results.md: the student's training loss on gold scores fell to 0.15 while its dev
Spearman stayed at 0.62 against the teacher's 0.86). TinyBERT's data augmentation shows the student the teacher's
answers on many more inputs: copies of each training example with some words changed, labelled by the teacher.
The copies need not keep the gold label, since the teacher's own output becomes their label (its argmax class, or
its score for regression), so the student's gold-label loss and its soft-label loss agree on them.

The perturbation is word level and needs no extra model: each word is, with probability ``rate`` each, dropped or
replaced by a word drawn from the training texts' own vocabulary, and ``rate`` of the word positions are swapped
with their right neighbour. TinyBERT replaces words with a BERT masked-LM's or GloVe's nearest candidates, which
keeps copies closer to natural text; that needs a masked-LM head the sentence-transformers teachers do not have.
Only sentence and sentence-pair tasks (GLUE, tables) are augmented: changing words in NER or QA would break the
token tags and answer spans.

A task can also take its transfer set from unlabeled text (:func:`corpus_transfer_set`), as DistilBERT and
TinyBERT distil on text beyond the task's own: a single-sentence task the sentences of a corpus, a sentence-pair task
the pairs of a table (another task's file, e.g. MNLI's premise and hypothesis pairs for STS-B or MRPC), an NER task
a corpus's sentences tagged word by word; all labelled by the teacher. Unlike the perturbed copies they are natural
text, and text of the task's domain (movie reviews for SST-2) gives the student the teacher's answers on many inputs
like the ones it will see.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..data.conll import IGNORE_INDEX, Sentence
from ..data.tabular import Example, RowSkipper, detect_format, iter_records
from ..finetune.tasks import TaskData, model_outputs
from .corpus import corpus_files, corpus_sentences, seeded_sample

PAIR_COLUMNS = ("sentence1", "sentence2")  # GLUE's names for a pair's texts (MNLI, STS-B, RTE, WNLI)


def perturb(text: str, vocabulary: Sequence[str], rng: random.Random, rate: float) -> str:
    """``text`` with each word dropped or replaced by a vocabulary word (probability ``rate`` each) and about
    ``rate`` of the positions swapped with the next word; never empty."""
    words = text.split()
    if not words:
        return text
    kept = []
    for word in words:
        draw = rng.random()
        if draw < rate:
            continue
        kept.append(rng.choice(vocabulary) if draw < 2 * rate else word)
    if not kept:
        kept = [rng.choice(words)]
    for _ in range(round(rate * len(kept))):
        if len(kept) > 1:
            i = rng.randrange(len(kept) - 1)
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
    return " ".join(kept)


def augment_examples(examples: Sequence[Any], copies: int, rate: float = 0.1, seed: int = 0) -> list[Any]:
    """``copies`` perturbed copies of every example (``text_a`` and, for pairs, ``text_b``), in example order; their
    labels are left as they were, to be replaced by the teacher's (:func:`teacher_label`)."""
    if copies < 0 or not 0 < rate < 0.5:
        raise ValueError(f"augment: copies must be >= 0 and rate in (0, 0.5); got {copies} and {rate}")
    vocabulary = sorted({word for example in examples for text in (example.text_a, example.text_b or "")
                         for word in text.split()})
    if not vocabulary:
        raise ValueError("augment: the training examples have no words to draw replacements from")
    rng = random.Random(seed)
    out = []
    for example in examples:
        for k in range(copies):
            out.append(dataclasses.replace(
                example, guid=f"{example.guid}-aug{k}", text_a=perturb(example.text_a, vocabulary, rng, rate),
                text_b=None if example.text_b is None else perturb(example.text_b, vocabulary, rng, rate)))
    return out


def teacher_label(teacher: nn.Module, features: list[dict], data: TaskData, batch_size: int = 64) -> float:
    """Set each feature's ``labels`` to the teacher's output (class id, score for regression, or for NER a tag id
    at each labelled position), in place. Returns the fraction of class labels the teacher changed (regression: the
    mean absolute change of the score)."""
    outputs = model_outputs(teacher, features, data.collate, batch_size)
    changes = []
    regression = data.num_labels == 1
    for feature, logits in zip(features, outputs):
        if data.kind == "token":  # the positions the gold tags labelled (first sub-tokens) get the teacher's tags
            old = feature["labels"]
            feature["labels"] = [IGNORE_INDEX if tag == IGNORE_INDEX else int(np.argmax(logits[position]))
                                 for position, tag in enumerate(old)]
            changes.extend(float(a != b) for a, b in zip(old, feature["labels"]) if a != IGNORE_INDEX)
            continue
        new = float(logits.reshape(-1)[0]) if regression else int(np.argmax(logits))
        old = feature.get("labels")
        if old is not None:
            changes.append(abs(new - old) if regression else float(new != old))
        feature["labels"] = new
    return float(np.mean(changes)) if changes else 0.0


def teacher_labelled(teacher: nn.Module, data: TaskData, examples: Sequence[Any], what: str,
                     batch_size: int = 64) -> tuple[list[dict], float]:
    """``examples`` as training features labelled by the teacher, and how much it changed their labels
    (:func:`teacher_label`)."""
    features = data.task_kind.featurize(data.tokenizer, examples, data.max_length, True, what)
    return features, teacher_label(teacher, features, data, batch_size)


def transfer_set(teacher: nn.Module, data: TaskData, copies: int, rate: float = 0.1, seed: int = 0,
                 batch_size: int = 64) -> tuple[list[dict], float]:
    """The teacher-labelled perturbed copies of ``data``'s training examples, as training features, and how much
    the teacher changed their labels (see :func:`teacher_label`)."""
    if data.kind != "sequence":
        raise ValueError(f"augment: {data.name} is a {data.kind} task; only sentence and sentence-pair tasks are "
                         "augmented (changing words would break token tags and answer spans)")
    examples = augment_examples(data.train_examples, copies, rate, seed)
    return teacher_labelled(teacher, data, examples, "augmented", batch_size)


def pairs_sentences(data: TaskData) -> bool:
    """Whether ``data``'s examples are sentence pairs."""
    examples = [*data.train_examples, *(e for split in data.examples.values() for e in split)]
    return any(getattr(example, "text_b", None) is not None for example in examples)


def table_pairs(entry: str, count: int | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """The distinct sentence pairs of a table (TSV, CSV or JSON lines; ``path`` or ``path?columns=A,B``): its
    ``sentence1`` and ``sentence2`` columns, or the two named; a seeded sample of ``count`` of them (None: all), in
    file order. Its labels, if any, are not read: the teacher labels the pairs."""
    path, _, query = entry.partition("?")
    columns = PAIR_COLUMNS
    if query:
        key, _, names = query.partition("=")
        if key != "columns" or len(names.split(",")) != 2 or not all(names.split(",")):
            raise ValueError(f"--transfer-text {entry!r}: a pair table takes one option, ?columns=A,B (its two "
                             "text columns)")
        columns = tuple(names.split(","))
    if not Path(path).is_file():
        raise FileNotFoundError(f"--transfer-text {entry!r}: a sentence-pair task reads its transfer pairs from one "
                                f"table file (columns {', '.join(columns)}); {path} is not a file")
    records = iter_records(path, detect_format(path), required=columns, on_error=RowSkipper(path, skip_bad_rows=False))
    pairs = list(dict.fromkeys((str(record[columns[0]]).strip(), str(record[columns[1]]).strip())
                               for _, record in records))
    pairs = [(a, b) for a, b in pairs if a and b]
    if not pairs:
        raise ValueError(f"--transfer-text {entry!r}: no pairs with both texts")
    return seeded_sample(pairs, count, seed, "pairs")


def check_transfer_task(data: TaskData) -> None:
    """Transfer text fits sentence, sentence-pair and NER tasks, not answer spans or choices."""
    if data.kind not in ("sequence", "token"):
        raise ValueError(f"--transfer-text: {data.name} is a {data.kind} task; transfer text (a corpus's sentences, "
                         "a table's pairs) is for sentence, sentence-pair and NER tasks")


def transfer_examples(data: TaskData, corpus: str, count: int | None = None,
                      seed: int = 0) -> tuple[list[Example], list[str]]:
    """The unlabeled examples of a transfer set and the files they came from: ``count`` sentences of ``corpus`` (a
    folder, file or entry, as general distillation reads it) for a single-sentence or NER task, ``count`` pairs of
    a table (:func:`table_pairs`) for a sentence-pair task (None: all)."""
    check_transfer_task(data)
    if pairs_sentences(data):
        return [Example(guid=f"transfer-{i}", text_a=a, text_b=b)
                for i, (a, b) in enumerate(table_pairs(corpus, count, seed))], [corpus.partition("?")[0]]
    files = corpus_files(corpus)
    sentences = corpus_sentences(files, count, seed)
    if data.kind == "token":
        # words at white space (WikiText and CoNLL already set punctuation apart; elsewhere "end." is one word, tagged
        # at its first sub-token as the gold data's words are), each tagged O until the teacher tags it
        return [Sentence(words, ["O"] * len(words)) for words in map(str.split, sentences)], files
    return [Example(guid=f"transfer-{i}", text_a=sentence) for i, sentence in enumerate(sentences)], files


def corpus_transfer_set(teacher: nn.Module, data: TaskData, corpus: str, count: int | None = None, seed: int = 0,
                        batch_size: int = 64) -> tuple[list[dict], list[str]]:
    """The transfer set of :func:`transfer_examples` as training features labelled by the teacher, and its files."""
    examples, files = transfer_examples(data, corpus, count, seed)
    return teacher_labelled(teacher, data, examples, "transfer text", batch_size)[0], files
