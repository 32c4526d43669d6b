"""User data from CSV / TSV / JSON lines, and the row-reading core the GLUE and SWAG readers share.

Every reader here returns a :class:`ReadResult`: the examples plus how many malformed rows were skipped.
Bad input raises :class:`DataError`, whose message names the file, the line and the problem; with
``skip_bad_rows=True`` a malformed row is instead counted, logged and left out.

TSV is read with ``csv.QUOTE_NONE`` by default (GLUE-style files contain stray ``"`` characters that are text,
not quoting); CSV with standard quoting. Files are decoded as UTF-8 with a byte-order mark tolerated.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from ..fileio import decode_problem

logger = logging.getLogger(__name__)

ENCODING = "utf-8-sig"  # UTF-8; a leading byte-order mark (MRPC has one) is dropped
FORMATS = ("csv", "tsv", "jsonl")
T = TypeVar("T")


class DataError(ValueError):
    """Malformed input data. ``str(err)`` reads ``path:line: problem``; the parts are attributes too."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Example:
    """One sentence or sentence-pair example. ``label`` is a class-label string, a float (regression) or None."""

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | None = None


@dataclass
class ReadResult(Sequence, Generic[T]):
    """The examples read from one file; behaves as a read-only list of them.

    ``skipped`` counts malformed rows left out under ``skip_bad_rows`` (their line numbers in ``skipped_lines``);
    ``labels`` is the label list in use (given, or inferred from the data), None for regression and unlabeled data.
    """

    examples: list[T]
    skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    labels: list[str] | None = None
    path: str = ""

    def __getitem__(self, index):  # type: ignore[override]
        return self.examples[index]

    def __len__(self) -> int:
        return len(self.examples)


class RowSkipper:
    """Raise a row's DataError, or (skip mode) count it, log it, and carry on."""

    def __init__(self, path: str | Path, skip_bad_rows: bool):
        self.path = str(path)
        self.skip_bad_rows = skip_bad_rows
        self.lines: list[int] = []

    def __call__(self, error: DataError) -> None:
        if not self.skip_bad_rows:
            raise error
        self.lines.append(error.line if error.line is not None else -1)
        logger.debug("skipping row: %s", error)

    def report(self) -> None:
        if self.lines:
            shown = ", ".join(map(str, self.lines[:10])) + (" ..." if len(self.lines) > 10 else "")
            logger.warning("%s: skipped %d malformed row(s) (lines %s)", self.path, len(self.lines), shown)


# ---------------------------------------------------------------------------------------------- raw rows


@contextmanager
def open_text(path: str | Path, **options: Any) -> Iterator[IO[str]]:
    """``open(path)`` as UTF-8 text, where a byte that is not UTF-8 (latin-1 text, UTF-16, gzip, binary) is a
    DataError naming the file's line and byte offset instead of the codec's position in some buffer."""
    try:
        with open(path, encoding=ENCODING, **options) as handle:
            yield handle
    except UnicodeDecodeError:
        line, problem = decode_problem(path)
        raise DataError(path, line, problem) from None


def parse_json(text: str, path: str | Path, line: int | None) -> Any:
    """``json.loads`` whose failures (bad syntax, nesting too deep for the parser) are DataErrors at ``line``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        hint = ""
        if line is not None and text.lstrip().startswith("["):  # a JSON-lines reader given one JSON array
            hint = " (a JSON array file? only JSON lines, one object a line, is supported)"
        raise DataError(path, line if line is not None else error.lineno, f"invalid JSON: {error.msg}{hint}") from None
    except RecursionError:
        raise DataError(path, line, "JSON nested too deeply to read") from None


def iter_delimited(
    path: str | Path, delimiter: str = "\t", quoting: int = csv.QUOTE_NONE
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for each non-blank row; line numbers are 1-based and physical.

    Raises DataError for a file with no non-blank row.
    """
    seen_any = False
    with open_text(path, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        previous = 0
        try:
            for fields in reader:
                # a quoted CSV field may span lines: report the line where the row starts
                start, previous = previous + 1, reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                seen_any = True
                yield start, fields
        except csv.Error as error:
            kind = "CSV" if delimiter == "," else "TSV"
            raise DataError(path, reader.line_num, f"unreadable {kind} row: {error}") from None
    if not seen_any:
        raise DataError(path, None, "empty file")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSON-lines file; invalid JSON is a DataError."""
    seen_any = False
    with open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            record = parse_json(text, path, number)
            seen_any = True
            yield number, record
    if not seen_any:
        raise DataError(path, None, "empty file")


def detect_format(path: str | Path, file_format: str | None = None) -> str:
    """``csv``, ``tsv`` or ``jsonl`` from an explicit choice or the file suffix (``.json`` is read as JSON lines)."""
    if file_format is not None:
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
        return file_format
    suffix = Path(path).suffix.lower()
    known = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
    if suffix not in known:
        raise ValueError(f"cannot tell the format of {path} from its suffix; pass file_format= one of {FORMATS}")
    return known[suffix]


def iter_records(
    path: str | Path,
    fmt: str,
    *,
    column_names: Sequence[str] | None = None,
    quoting: int | None = None,
    required: Sequence[str | None] = (),
    on_error: Callable[[DataError], None],
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Yield ``(line_number, {column: value})`` from a CSV/TSV (header row, or ``column_names`` when headerless)
    or JSON-lines file. A CSV/TSV header without a ``required`` column is a DataError at once; a row whose field
    count differs from the header's goes to ``on_error`` (JSON records are checked by the caller)."""
    if fmt == "jsonl":
        for number, record in iter_jsonl(path):
            if isinstance(record, dict):
                yield number, record
            else:
                on_error(DataError(path, number, f"expected a JSON object, got {type(record).__name__}"))
        return
    delimiter = "," if fmt == "csv" else "\t"
    if quoting is None:
        quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
    rows = iter_delimited(path, delimiter, quoting)
    if column_names is None:
        header_line, header = next(rows)
        header = [name.strip() for name in header]
    else:
        header_line, header = 0, list(column_names)
    missing = [name for name in required if name is not None and name not in header]
    if missing:
        what = "header" if header_line else "column_names"
        raise DataError(path, header_line or None, f"missing column {missing[0]!r}; the {what} has {header}")
    for number, fields in rows:
        if len(fields) != len(header):
            what = f"header (line {header_line})" if header_line else "expected layout"
            on_error(DataError(path, number, f"wrong column count: {len(fields)} fields, the {what} has {len(header)}"))
            continue
        yield number, dict(zip(header, fields))


def require_columns(path: str | Path, line: int, record: Mapping[str, Any], names: Sequence[str | None]) -> None:
    """DataError naming the first of ``names`` missing from ``record`` (None entries are ignored)."""
    for name in names:
        if name is not None and name not in record:
            have = ", ".join(map(repr, record))
            raise DataError(path, line, f"missing column {name!r} (have: {have})")


# ---------------------------------------------------------------------------------------------- labels


class LabelParser:
    """Turns a raw label cell into the Example label: a string from a fixed or inferred label set, or a float.

    ``index_labels`` maps integer labels (as Hugging Face ``datasets`` stores class labels) to label strings;
    an integer label of -1 there means "no label" (a test split).
    """

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        *,
        regression: bool = False,
        value_range: tuple[float, float] | None = None,
        index_labels: Sequence[str] | None = None,
        what: str = "label",
    ):
        self.labels = list(labels) if labels is not None else None
        self.known = set(self.labels) if self.labels is not None else None
        self.regression = regression
        self.value_range = value_range
        self.index_labels = list(index_labels) if index_labels is not None else None
        self.what = what
        self.seen: set[str] = set()

    def __call__(self, raw: Any, path: str | Path, line: int) -> str | float | None:
        if self.regression:
            return self._number(raw, path, line)
        if self.index_labels is not None and isinstance(raw, int) and not isinstance(raw, bool):
            if raw == -1:
                return None
            if not 0 <= raw < len(self.index_labels):
                last = len(self.index_labels) - 1
                raise DataError(path, line, f"unknown {self.what} index {raw} (expected 0..{last})")
            raw = self.index_labels[raw]
        label = raw.strip() if isinstance(raw, str) else str(raw)
        if self.known is not None and label not in self.known:
            raise DataError(path, line, f"unknown {self.what} {label!r} (expected one of {self.labels})")
        if self.known is None and not label:
            raise DataError(path, line, f"empty {self.what}")
        self.seen.add(label)
        return label

    def _number(self, raw: Any, path: str | Path, line: int) -> float:
        try:
            value = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            raise DataError(path, line, f"non-numeric {self.what} {raw!r}") from None
        if not math.isfinite(value):
            raise DataError(path, line, f"non-finite {self.what} {raw!r}")
        if self.value_range is not None and not self.value_range[0] <= value <= self.value_range[1]:
            low, high = self.value_range
            raise DataError(path, line, f"{self.what} {value} outside {low}..{high}")
        return value

    def label_list(self) -> list[str] | None:
        """The given label list, or the labels seen so far sorted (numerically when all are integers)."""
        if self.regression:
            return None
        if self.labels is not None:
            return list(self.labels)
        if not self.seen:
            return None
        if all(_is_int(label) for label in self.seen):
            return sorted(self.seen, key=int)
        return sorted(self.seen)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _text(record: Mapping[str, Any], name: str, path: str | Path, line: int) -> str:
    value = record[name]
    if value is None:
        raise DataError(path, line, f"column {name!r} is null")
    if not isinstance(value, str):
        raise DataError(path, line, f"column {name!r} is not text: {value!r}")
    return value


def build_examples(
    path: str | Path,
    records: Iterator[tuple[int, Mapping[str, Any]]],
    *,
    text_column: str,
    text_pair_column: str | None,
    label_column: str | None,
    id_column: str | None,
    parse_label: LabelParser,
    guid_prefix: str,
    skipper: RowSkipper,
    id_optional: bool = False,
) -> ReadResult[Example]:
    """Records -> Examples, with each row's problems routed through ``skipper``.

    The guid is ``"<guid_prefix>-<id>"``, the id from ``id_column`` or else the 0-based example number
    (``id_optional``: use the column only where a record has it).
    """
    examples: list[Example] = []
    needed = (text_column, text_pair_column, label_column, None if id_optional else id_column)
    for line, record in records:
        try:
            require_columns(path, line, record, needed)
            text_a = _text(record, text_column, path, line)
            text_b = _text(record, text_pair_column, path, line) if text_pair_column else None
            label = parse_label(record[label_column], path, line) if label_column else None
        except DataError as error:
            skipper(error)
            continue
        has_id = id_column is not None and id_column in record
        row_id = str(record[id_column]).strip() if has_id else str(len(examples))
        examples.append(Example(f"{guid_prefix}-{row_id}", text_a, text_b, label))
    skipper.report()
    if not examples:
        raise DataError(path, None, "no examples (only a header, or every row was malformed)")
    return ReadResult(examples, len(skipper.lines), list(skipper.lines), parse_label.label_list(), str(path))


# ---------------------------------------------------------------------------------------------- public reader


def read_table(
    path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str | None = "label",
    id_column: str | None = None,
    labels: Sequence[str] | None = None,
    regression: bool = False,
    file_format: str | None = None,
    column_names: Sequence[str] | None = None,
    quoting: int | None = None,
    skip_bad_rows: bool = False,
) -> ReadResult[Example]:
    """Read user data into Examples.

    Args:
        path: a ``.csv``, ``.tsv`` (``.txt``) or ``.jsonl`` (``.json``: JSON lines) file, or set ``file_format``.
        text_column, text_pair_column: the column(s) holding the text (pair column optional).
        label_column: the label column; None for unlabeled data (labels become None).
        id_column: a column used in each guid (``"<file stem>-<id>"``); by default the row number.
        labels: the label list; a label outside it is a DataError naming it and its line. When None the label
            set is inferred from the data (``result.labels``, sorted; numerically when all are integers).
        regression: labels are floats (a non-numeric one is a DataError).
        column_names: names for a headerless CSV/TSV (the first row is then data).
        quoting: a ``csv.QUOTE_*`` constant; default QUOTE_MINIMAL for CSV, QUOTE_NONE for TSV.
        skip_bad_rows: count, log and leave out malformed rows instead of raising.
    """
    fmt = detect_format(path, file_format)
    skipper = RowSkipper(path, skip_bad_rows)
    required = (text_column, text_pair_column, label_column, id_column)
    records = iter_records(path, fmt, column_names=column_names, quoting=quoting, required=required, on_error=skipper)
    parse_label = LabelParser(labels, regression=regression)
    return build_examples(
        path,
        records,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        id_column=id_column,
        parse_label=parse_label,
        guid_prefix=Path(path).stem,
        skipper=skipper,
    )
