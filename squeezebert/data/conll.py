"""CoNLL-2003 named-entity data: ``token POS chunk NER`` lines, blank lines between sentences, ``-DOCSTART-``
lines between documents. Tags are returned in IOB2 (every entity starts with ``B-``); IOB1 input (``I-`` starts
an entity, ``B-`` only splits two adjacent entities of one type, as in the original 2003 release) is detected or
declared and converted.

Sub-word alignment needs the tokenizer's ``word_ids``; :func:`align_labels` is the pure part of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .tabular import DataError, ReadResult, RowSkipper, open_text

DOCSTART = "-DOCSTART-"
IGNORE_INDEX = -100  # the label id a loss ignores (PyTorch's cross-entropy default)
SCHEMES = ("auto", "IOB1", "IOB2")


class Sentence(NamedTuple):
    tokens: list[str]
    tags: list[str]


def _check_tag(tag: str, path: str | Path, line: int) -> None:
    if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
        raise DataError(path, line, f"tag {tag!r} is not O, B-<type> or I-<type>")


def _starts_without_b(tags: Sequence[str]) -> int | None:
    """Index of the first ``I-X`` that opens an entity (after O, another type, or at the start), else None."""
    previous = "O"
    for index, tag in enumerate(tags):
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return index
        previous = tag
    return None


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an ``I-X`` that does not continue an X entity becomes ``B-X``."""
    converted: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def read_conll(
    path: str | Path,
    *,
    scheme: str = "auto",
    tag_column: int = -1,
    skip_bad_rows: bool = False,
) -> ReadResult[Sentence]:
    """Read a CoNLL-2003 file into sentences of (tokens, IOB2 tags).

    Args:
        scheme: ``"IOB2"`` (an ``I-X`` opening an entity is then a DataError), ``"IOB1"`` (converted), or
            ``"auto"``: IOB1 if any entity in the file opens with ``I-``, else IOB2.
        tag_column: which whitespace-separated column holds the tag (the NER column is the last).
        skip_bad_rows: leave out (count, log) sentences with a malformed line instead of raising.

    ``result.labels`` is the tag set seen, ordered ``O`` first, then by entity type, ``B-`` before ``I-``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    skipper = RowSkipper(path, skip_bad_rows)
    raw = _read_blocks(path, tag_column, skipper)
    if not raw:
        raise DataError(path, None, "empty file (no sentences)")
    if scheme == "auto":
        scheme = "IOB1" if any(_starts_without_b(tags) is not None for _, _, tags, _ in raw) else "IOB2"
    sentences: list[Sentence] = []
    for _, tokens, tags, lines in raw:
        if scheme == "IOB1":
            tags = iob1_to_iob2(tags)
        else:
            bad = _starts_without_b(tags)
            if bad is not None:
                problem = f"{tags[bad]!r} opens an entity, which IOB2 does not allow (IOB1 data? pass scheme='IOB1')"
                skipper(DataError(path, lines[bad], problem))
                continue
        sentences.append(Sentence(tokens, tags))
    skipper.report()
    labels = label_list(sentences)
    return ReadResult(sentences, len(skipper.lines), list(skipper.lines), labels, str(path))


_Block = tuple[int, list[str], list[str], list[int]]  # first line, tokens, tags, each token's line


def _read_blocks(path: str | Path, tag_column: int, skipper: RowSkipper) -> list[_Block]:
    """Sentences as (first line, tokens, tags, line numbers); a malformed line drops its sentence via skipper."""
    blocks: list[_Block] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width: int | None = None
    broken: DataError | None = None

    def close() -> None:
        nonlocal tokens, tags, lines, broken
        if broken is not None:
            skipper(broken)
        elif tokens:
            blocks.append((lines[0], tokens, tags, lines))
        tokens, tags, lines, broken = [], [], [], None

    with open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            fields = text.split()
            if not fields or fields[0] == DOCSTART:
                close()
                continue
            if broken is not None:
                continue
            width = width or len(fields)
            try:
                if len(fields) < 2:
                    raise DataError(path, number, f"expected a token and a tag, got {text.strip()!r}")
                if len(fields) != width:
                    problem = f"wrong column count: {len(fields)} fields, earlier lines have {width}"
                    raise DataError(path, number, problem)
                _check_tag(fields[tag_column], path, number)
            except DataError as error:
                broken = error
                continue
            tokens.append(fields[0])
            tags.append(fields[tag_column])
            lines.append(number)
    close()
    return blocks


def label_list(sentences: Sequence[Sentence]) -> list[str]:
    """The tags used, ``O`` first, then by entity type with ``B-`` before ``I-``."""
    seen = {tag for sentence in sentences for tag in sentence.tags}
    return sorted(seen, key=lambda tag: ("" if tag == "O" else tag[2:], tag[:1] != "B" if tag != "O" else False))


def b_to_i_map(labels: Sequence[str]) -> list[int]:
    """For each label id, the id continuation sub-tokens get when labelled (``B-X`` -> ``I-X``; others unchanged)."""
    index = {label: position for position, label in enumerate(labels)}
    return [
        index.get("I-" + label[2:], position) if label.startswith("B-") else position
        for position, label in enumerate(labels)
    ]


def align_labels(
    word_ids: Sequence[int | None],
    word_labels: Sequence[int],
    label_all_subtokens: bool = False,
    b_to_i: Sequence[int] | None = None,
) -> list[int]:
    """Word-level label ids -> one per sub-token, from a tokenizer's ``word_ids`` (None for special tokens).

    Special tokens get -100; a word's first sub-token gets the word's label; later sub-tokens get -100, or with
    ``label_all_subtokens`` the word's label (mapped through ``b_to_i`` if given, so ``B-X`` continues as ``I-X``).
    """
    aligned: list[int] = []
    previous: int | None = None
    for word_id in word_ids:
        if word_id is None:
            aligned.append(IGNORE_INDEX)
        elif word_id != previous:
            aligned.append(word_labels[word_id])
        elif label_all_subtokens:
            label = word_labels[word_id]
            aligned.append(b_to_i[label] if b_to_i is not None else label)
        else:
            aligned.append(IGNORE_INDEX)
        previous = word_id
    return aligned
