"""SWAG-style multiple choice: a CSV with ``sent1``, ``sent2``, ``ending0`` ... ``endingN`` and ``label``.

As in SWAG's own setup, the context is ``sent1`` and each choice is ``sent2`` (the start of the next sentence)
followed by one ending. Other columns (``video-id``, ``fold-ind``, ``startphrase``, ``gold-source``) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .tabular import DataError, ReadResult, RowSkipper, detect_format, iter_records, require_columns

_ENDING = re.compile(r"ending(\d+)$")


@dataclass(frozen=True)
class MultipleChoiceExample:
    guid: str
    context: str
    choices: list[str]
    label: int | None


def read_swag(
    path: str | Path,
    *,
    context_column: str = "sent1",
    start_column: str = "sent2",
    label_column: str | None = "label",
    skip_bad_rows: bool = False,
) -> ReadResult[MultipleChoiceExample]:
    """Read a SWAG-layout CSV (or TSV / JSON lines with the same fields).

    The number of choices is the number of ``ending<k>`` columns (k = 0, 1, ...; SWAG has 4). The label is the
    correct ending's index; ``label_column=None`` (or an empty label cell, as in SWAG's test file) gives None.
    """
    skipper = RowSkipper(path, skip_bad_rows)
    examples: list[MultipleChoiceExample] = []
    n_choices: int | None = None
    required = (context_column, start_column, label_column, "ending0", "ending1")
    for line, record in iter_records(path, detect_format(path), required=required, on_error=skipper):
        if n_choices is None:
            n_choices = _count_endings(record)
            if n_choices < 2:
                raise DataError(path, line, f"need columns ending0, ending1, ...; have {', '.join(map(repr, record))}")
        try:
            examples.append(_example(path, line, record, n_choices, context_column, start_column, label_column))
        except DataError as error:
            skipper(error)
    skipper.report()
    if not examples:
        raise DataError(path, None, "no examples (only a header, or every row was malformed)")
    choice_ids = [str(k) for k in range(n_choices or 0)]
    return ReadResult(examples, len(skipper.lines), list(skipper.lines), choice_ids, str(path))


def _count_endings(record: dict) -> int:
    indices = {int(match.group(1)) for name in record if (match := _ENDING.match(name))}
    count = 0
    while count in indices:
        count += 1
    return count


def _example(
    path: str | Path,
    line: int,
    record: dict,
    n_choices: int,
    context_column: str,
    start_column: str,
    label_column: str | None,
) -> MultipleChoiceExample:
    endings = [f"ending{k}" for k in range(n_choices)]
    require_columns(path, line, record, [context_column, start_column, label_column, *endings])
    start = str(record[start_column]).strip()
    choices = [f"{start} {str(record[name]).strip()}".strip() for name in endings]
    label = None
    raw = record[label_column] if label_column else None
    if raw is not None and str(raw).strip() != "":
        try:
            label = int(str(raw).strip())
        except ValueError:
            raise DataError(path, line, f"label {raw!r} is not an ending index") from None
        if not 0 <= label < n_choices:
            raise DataError(path, line, f"label {label} outside 0..{n_choices - 1}")
    guid = str(record.get("fold-ind") or record.get("id") or f"line-{line}")
    return MultipleChoiceExample(guid, str(record[context_column]), choices, label)
