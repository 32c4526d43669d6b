"""Unlabeled text for distillation: a corpus read as pretraining reads it (:mod:`..data.pretraining`), cut into
the windows general distillation trains on (:func:`text_features`, :func:`hold_out`) or into the sentences of a
teacher-labelled transfer set (:func:`corpus_sentences`, used by :mod:`.augment`)."""

from __future__ import annotations

import logging
import os
import random
import sys
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..data.pretraining import TEXT_COLUMN, expand_corpus, plan_units, tsv_header, unit_document_chunks
from ..tokenizer import Tokenizer

log = logging.getLogger(__name__)


def corpus_files(data_dir: str | os.PathLike) -> list[str]:
    """The corpus entries of a corpus argument (``--data-dir`` of general distillation, ``--transfer-text``): a
    folder gives every ``.txt`` file under it and every ``.tsv`` file
    with a ``text`` column (a .tsv without one, e.g. a labelled GLUE file, is skipped with a warning that says how
    to read it); a file, glob or entry with options (``reviews.tsv?column=review``) is read as it is."""
    path = Path(data_dir)
    if not path.is_dir():
        return expand_corpus([str(data_dir)])
    files = []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".tsv")):
        if file.suffix == ".tsv" and TEXT_COLUMN not in tsv_header(file):
            log.warning("corpus: skipping %s: no %r column (name one as the corpus: '%s?column=NAME')", file,
                        TEXT_COLUMN, file)
            continue
        files.append(str(file))
    if not files:
        raise FileNotFoundError(f"{path}: no .txt files (or .tsv files with a {TEXT_COLUMN!r} column) to read as a "
                                "corpus")
    return files


def corpus_documents(entries: Sequence[str]) -> Iterator[tuple[str, list[list[str]]]]:
    """(file, its documents as lists of sentences) for every corpus entry, read as pretraining reads them
    (:mod:`..data.pretraining`): plain text in blocks of lines up to a blank line, so hard-wrapped books read as
    running text; a .tsv file's ``text`` column (or ``?column=NAME``) one row a document; an ``hf:`` dataset one
    row a document; ``?documents=line|paragraph`` and ``?repeat=N`` as there. Unlike pretraining, plain-text lines
    starting with ``#`` are skipped (the speeches corpus's file separators), as general distillation always did.
    Lines end at a line feed only (general distillation's earlier reader also split at form feeds and lone carriage
    returns; both read the same windows from ../shared/data/corpus)."""
    for unit in plan_units(entries, part_bytes=sys.maxsize):  # one unit a file (a repeat copy: one more)
        for documents in unit_document_chunks(unit, "paragraph", skip_comments=True):
            yield unit.path, documents


def corpus_paragraphs(entries: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """(file, its paragraphs): each document of :func:`corpus_documents` as running text."""
    for path, documents in corpus_documents(entries):
        yield path, [" ".join(sentences) for sentences in documents]


def text_features(tokenizer: Tokenizer, entries: Sequence[str | os.PathLike], max_length: int = 128,
                  limit: int | None = None, min_words: int = 8) -> tuple[list[dict], dict[str, int]]:
    """Unlabeled text -> features and the number of windows from each file: each paragraph
    (:func:`corpus_paragraphs`) of at least ``min_words`` words, cut into windows of ``max_length`` tokens
    ([CLS] ... [SEP]). Full windows give every position of the student a training signal; a paragraph's last
    piece is kept when it has ``min_words`` tokens or more. ``limit`` caps the number of windows."""
    body = max_length - 2

    def windows() -> Iterator[tuple[str, list[int]]]:
        for path, paragraphs in corpus_paragraphs([str(e) for e in entries]):
            paragraphs = [p for p in paragraphs if len(p.split()) >= min_words]
            if not paragraphs:
                continue
            encoded = tokenizer(paragraphs, padding=False, truncation=None, add_special_tokens=False,
                                return_tensors=None)["input_ids"]
            for ids in encoded:
                for start in range(0, len(ids), body):
                    if len(piece := ids[start:start + body]) >= min_words:
                        yield path, [tokenizer.cls_token_id, *piece, tokenizer.sep_token_id]

    features: list[dict] = []
    counts: dict[str, int] = {}
    for path, window in islice(windows(), limit):
        features.append({"input_ids": window, "token_type_ids": [0] * len(window)})
        counts[path] = counts.get(path, 0) + 1
    if not features:
        raise ValueError(f"no paragraphs of >= {min_words} words in {', '.join(map(str, entries))}")
    return features, counts


def hold_out(windows: list[dict], count: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(training windows, held-out windows): a seeded sample of ``count`` but at most a tenth of the windows (a
    small corpus keeps most of its text for training), both in corpus order."""
    if count > len(windows) // 10:
        log.warning("--held-out %d: the corpus gives %d windows, so %d (a tenth) are held out", count, len(windows),
                    len(windows) // 10)
        count = len(windows) // 10
    chosen = set(torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))[:count].tolist())
    return ([w for i, w in enumerate(windows) if i not in chosen], [w for i, w in enumerate(windows) if i in chosen])


def corpus_sentences(entries: Sequence[str], count: int | None, seed: int, min_words: int = 4) -> list[str]:
    """The distinct sentences of the corpus (:func:`corpus_documents`, split as pretraining splits them) with at
    least ``min_words`` words; a seeded sample of ``count`` of them (None: all), in corpus order."""
    sentences = list(dict.fromkeys(sentence for _, documents in corpus_documents(entries)
                                   for document in documents for sentence in document
                                   if len(sentence.split()) >= min_words))
    if not sentences:
        raise ValueError(f"no sentences of >= {min_words} words in {', '.join(entries)}")
    return seeded_sample(sentences, count, seed, "sentences")


def seeded_sample(items: list, count: int | None, seed: int, what: str) -> list:
    """A seeded sample of ``count`` of ``items`` (None, or more than there are: all of them), in their order."""
    if count is not None and count >= len(items):
        log.info("transfer text: %d %s asked for, the corpus has %d: all of them", count, what, len(items))
    elif count is not None:
        chosen = sorted(random.Random(seed).sample(range(len(items)), count))
        items = [items[i] for i in chosen]
    return items
