"""The nine GLUE tasks (plus MNLI-mismatched and the AX diagnostic) read from the official GLUE TSV release.

The layouts, as the GLUE download script writes them (``<data_dir>/<Task>/<split>.tsv``):

=========  ==================================================================================================
CoLA       train/dev: NO header, 4 columns ``source, label, original-label mark, sentence``; test: ``index sentence``
SST-2      ``sentence label``; test ``index sentence``
MRPC       ``Quality #1 ID #2 ID #1 String #2 String`` (UTF-8 BOM); test ``index #1 ID #2 ID #1 String #2 String``
STS-B      10 columns ``index genre filename year old_index source1 source2 sentence1 sentence2 score``
           (score a float in 0..5); test has the first 9
QQP        ``id qid1 qid2 question1 question2 is_duplicate``; test ``id question1 question2``. The real train
           file has rows with missing fields: they are skipped, counted and logged by default
MNLI       train 12 / dev 16 columns, ``sentence1`` ``sentence2`` at 8, 9, ``gold_label`` last; test 10 columns.
           The reduced layout ``index sentence1 sentence2 gold_label`` reads the same: columns are found by name
QNLI       ``index question sentence label``
RTE, WNLI  ``index sentence1 sentence2 label``
AX         ``diagnostic/diagnostic.tsv``: ``index sentence1 sentence2`` (test only; predicted with an MNLI model)
=========  ==================================================================================================

Columns are located by header name (only CoLA's headerless train/dev use positions). Files are read with
``csv.QUOTE_NONE`` (GLUE text has stray quotes) and ``utf-8-sig``. A split whose name starts with ``test``
has no labels. Hugging Face ``datasets`` exports in JSON lines (``.jsonl``/``.json``; fields such as
``sentence``, ``sentence1``/``sentence2``, ``premise``/``hypothesis``, ``question``, ``label``, ``idx``; integer
class labels in ``datasets``' order, -1 for unlabeled) read into the same :class:`Example`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from ..tasks import spelled
from .tabular import (
    DataError,
    Example,
    LabelParser,
    ReadResult,
    RowSkipper,
    build_examples,
    iter_delimited,
    iter_jsonl,
    iter_records,
)

MNLI_LABELS = ("contradiction", "entailment", "neutral")  # the order of GLUE's processors / transformers
NLI2_LABELS = ("entailment", "not_entailment")
BINARY_LABELS = ("0", "1")
SUBMISSION_HEADER = "index\tprediction"


@dataclass(frozen=True)
class TaskSpec:
    """How one GLUE task is laid out on disk, labelled, scored and submitted.

    ``labels`` is the label-string list whose positions are the model's class ids (None: regression).
    ``metrics`` are the GLUE paper's metric names (``squeezebert.metrics.primary_metric`` picks among them).
    ``hf_text`` / ``hf_label_names`` describe the Hugging Face ``datasets`` copy (field names; label strings in
    ``datasets``' class-index order).
    """

    name: str
    directory: str
    files: dict[str, str]
    text_a: str
    text_b: str | None
    label_column: str | None
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    submission_file: str
    id_column: str = "index"
    headerless_columns: tuple[str, ...] | None = None
    score_range: tuple[float, float] | None = None
    skip_bad_rows: bool = False
    hf_text: tuple[str, str | None] = ("sentence", None)
    hf_label_names: tuple[str, ...] | None = None

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


_SPLITS = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
_MNLI_FILES = {
    "train": "train.tsv",
    "dev": "dev_matched.tsv",
    "test": "test_matched.tsv",
    "dev_matched": "dev_matched.tsv",
    "dev_mismatched": "dev_mismatched.tsv",
    "test_matched": "test_matched.tsv",
    "test_mismatched": "test_mismatched.tsv",
}

TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        "cola", "CoLA", _SPLITS, "sentence", None, "label", BINARY_LABELS, ("mcc",), "CoLA.tsv",
        headerless_columns=("source", "label", "label_mark", "sentence"),
        hf_label_names=BINARY_LABELS,
    ),
    "sst2": TaskSpec(
        "sst2", "SST-2", _SPLITS, "sentence", None, "label", BINARY_LABELS, ("accuracy",), "SST-2.tsv",
        hf_label_names=BINARY_LABELS,
    ),
    "mrpc": TaskSpec(
        "mrpc", "MRPC", _SPLITS, "#1 String", "#2 String", "Quality", BINARY_LABELS, ("f1", "accuracy"), "MRPC.tsv",
        hf_text=("sentence1", "sentence2"), hf_label_names=BINARY_LABELS,
    ),
    "stsb": TaskSpec(
        "stsb", "STS-B", _SPLITS, "sentence1", "sentence2", "score", None, ("pearson", "spearman"), "STS-B.tsv",
        score_range=(0.0, 5.0), hf_text=("sentence1", "sentence2"),
    ),
    "qqp": TaskSpec(
        "qqp", "QQP", _SPLITS, "question1", "question2", "is_duplicate", BINARY_LABELS, ("f1", "accuracy"), "QQP.tsv",
        id_column="id", skip_bad_rows=True, hf_text=("question1", "question2"), hf_label_names=BINARY_LABELS,
    ),
    "mnli": TaskSpec(
        "mnli", "MNLI", _MNLI_FILES, "sentence1", "sentence2", "gold_label", MNLI_LABELS, ("accuracy",), "MNLI-m.tsv",
        hf_text=("premise", "hypothesis"), hf_label_names=("entailment", "neutral", "contradiction"),
    ),
    "mnli-mm": TaskSpec(
        "mnli-mm", "MNLI", {"train": "train.tsv", "dev": "dev_mismatched.tsv", "test": "test_mismatched.tsv"},
        "sentence1", "sentence2", "gold_label", MNLI_LABELS, ("accuracy",), "MNLI-mm.tsv",
        hf_text=("premise", "hypothesis"), hf_label_names=("entailment", "neutral", "contradiction"),
    ),
    "qnli": TaskSpec(
        "qnli", "QNLI", _SPLITS, "question", "sentence", "label", NLI2_LABELS, ("accuracy",), "QNLI.tsv",
        hf_text=("question", "sentence"), hf_label_names=NLI2_LABELS,
    ),
    "rte": TaskSpec(
        "rte", "RTE", _SPLITS, "sentence1", "sentence2", "label", NLI2_LABELS, ("accuracy",), "RTE.tsv",
        hf_text=("sentence1", "sentence2"), hf_label_names=NLI2_LABELS,
    ),
    "wnli": TaskSpec(
        "wnli", "WNLI", _SPLITS, "sentence1", "sentence2", "label", BINARY_LABELS, ("accuracy",), "WNLI.tsv",
        hf_text=("sentence1", "sentence2"), hf_label_names=BINARY_LABELS,
    ),
    "ax": TaskSpec(
        "ax", "diagnostic", {"test": "diagnostic.tsv"}, "sentence1", "sentence2", None, MNLI_LABELS, ("mcc",), "AX.tsv",
        hf_text=("premise", "hypothesis"), hf_label_names=("entailment", "neutral", "contradiction"),
    ),
}


def get_task(task: str) -> TaskSpec:
    """The TaskSpec for ``task`` (case-insensitive; the task table's aliases, e.g. ``sst-2``/``sts-b``, accepted)."""
    key = spelled(task)
    if key not in TASKS:
        raise KeyError(f"unknown GLUE task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[key]


def glue_file(task: str, data_dir: str | Path, split: str) -> Path:
    """The path of ``split`` for ``task`` under ``data_dir`` (the GLUE root, or the task's own folder)."""
    spec = get_task(task)
    if split not in spec.files:
        raise ValueError(f"{spec.name} has no split {split!r}; splits: {', '.join(spec.files)}")
    root = Path(data_dir)
    name = spec.files[split]
    if not (root / spec.directory).is_dir() and (root / name).is_file():
        return root / name  # data_dir is the task's own folder
    return root / spec.directory / name


def _split_of(spec: TaskSpec, path: Path) -> str | None:
    for split, name in spec.files.items():
        if name == path.name:
            return split
    return None


def read_glue(
    task: str,
    source: str | Path,
    split: str | None = None,
    *,
    skip_bad_rows: bool | None = None,
) -> ReadResult[Example]:
    """Read one split of a GLUE task.

    Args:
        task: a key of :data:`TASKS` (``cola``, ``sst2``, ``mrpc``, ``stsb``, ``qqp``, ``mnli``, ``mnli-mm``,
            ``qnli``, ``rte``, ``wnli``, ``ax``).
        source: a ``.tsv`` file (or a Hugging Face ``datasets`` ``.jsonl``/``.json`` export), or a directory
            (GLUE root or task folder) together with ``split``.
        split: ``train``/``dev``/``test`` (MNLI also ``dev_matched``... ``test_mismatched``). For a file it is
            inferred from the official file name; a ``test*`` split is read without labels.
        skip_bad_rows: count, log and leave out malformed rows instead of raising DataError. None: the task's
            default (True only for QQP, whose official files contain rows with missing fields).

    Returns a ReadResult: examples with guids ``"<split>-<index>"``, ``skipped`` and the task's ``labels``.
    """
    spec = get_task(task)
    path = Path(source)
    if path.is_dir():
        if split is None:
            raise ValueError(f"{path} is a directory: pass split= one of {', '.join(spec.files)}")
        path = glue_file(task, path, split)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: no file {path}")
    split = split or _split_of(spec, path)
    unlabeled = spec.label_column is None or (split or "").startswith("test")
    skip = spec.skip_bad_rows if skip_bad_rows is None else skip_bad_rows
    skipper = RowSkipper(path, skip)
    parse_label = LabelParser(
        spec.labels,
        regression=spec.is_regression,
        value_range=spec.score_range,
        index_labels=spec.hf_label_names,
        what="STS-B score" if spec.is_regression else f"{spec.name} label",
    )
    if path.suffix.lower() in (".jsonl", ".json"):
        return _read_hf_json(spec, path, split, unlabeled, parse_label, skipper)

    column_names = None
    if spec.headerless_columns is not None:
        _, first_row = next(iter_delimited(path))
        if spec.text_a not in (name.strip() for name in first_row):
            column_names = spec.headerless_columns  # CoLA train/dev: the first row is data
    label_column = None if unlabeled else spec.label_column
    required = (spec.text_a, spec.text_b, label_column)
    records = iter_records(path, "tsv", column_names=column_names, required=required, on_error=skipper)
    return build_examples(
        path,
        records,
        text_column=spec.text_a,
        text_pair_column=spec.text_b,
        label_column=label_column,
        id_column=spec.id_column,
        id_optional=True,
        parse_label=parse_label,
        guid_prefix=split or path.stem,
        skipper=skipper,
    )


def _read_hf_json(
    spec: TaskSpec, path: Path, split: str | None, unlabeled: bool, parse_label: LabelParser, skipper: RowSkipper
) -> ReadResult[Example]:
    """A ``datasets`` JSON-lines export: the task's ``datasets`` field names or its GLUE header names."""
    records = list(iter_jsonl(path))
    first = records[0][1] if isinstance(records[0][1], dict) else {}
    hf_a, hf_b = spec.hf_text
    text_a = hf_a if hf_a in first else spec.text_a
    text_b = (hf_b if hf_b in first else spec.text_b) if spec.text_b else None
    label_column = None
    if not unlabeled:
        label_column = spec.label_column if spec.label_column in first and "label" not in first else "label"
    objects = []
    for line, record in records:
        if isinstance(record, dict):
            objects.append((line, record))
        else:
            skipper(DataError(path, line, f"expected a JSON object, got {type(record).__name__}"))
    return build_examples(
        path,
        iter(objects),
        text_column=text_a,
        text_pair_column=text_b,
        label_column=label_column,
        id_column="idx",
        id_optional=True,
        parse_label=parse_label,
        guid_prefix=split or path.stem,
        skipper=skipper,
    )


def write_glue_predictions(
    task: str,
    predictions: Sequence[int | str | float] | Mapping[int, int | str | float],
    path: str | Path,
) -> Path:
    """Write test-set predictions as the GLUE server expects: ``index<TAB>prediction`` with a header.

    ``predictions`` is in test-file order (index 0..n-1) or a mapping ``{index: prediction}``. A classification
    prediction is a class id (position in ``TASKS[task].labels``) or the label string itself; it is written as
    the label string (``0``/``1`` for CoLA, SST-2, MRPC, QQP, WNLI; ``entailment``... for MNLI, QNLI, RTE, AX).
    STS-B predictions are floats written with 3 decimals. ``path`` is the file, or a directory in which the
    task's official name is used (``CoLA.tsv``, ``SST-2.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``AX.tsv``...).
    Returns the path written.
    """
    spec = get_task(task)
    target = Path(path)
    if target.is_dir():
        target = target / spec.submission_file
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(predictions, Mapping):
        rows = sorted(((int(index), value) for index, value in predictions.items()), key=lambda row: row[0])
    else:
        rows = list(enumerate(predictions))
    if not rows:
        raise ValueError(f"{spec.name}: no predictions to write")
    lines = [SUBMISSION_HEADER] + [f"{index}\t{_format_prediction(spec, value, index)}" for index, value in rows]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _format_prediction(spec: TaskSpec, value: int | str | float, index: int) -> str:
    if spec.labels is None:
        if isinstance(value, str) or not isinstance(value, Real):
            raise ValueError(f"{spec.name}: prediction {index} must be a number, got {value!r}")
        return f"{float(value):.3f}"
    if isinstance(value, str):
        if value not in spec.labels:
            raise ValueError(f"{spec.name}: prediction {index} {value!r} is not one of {list(spec.labels)}")
        return value
    if isinstance(value, Integral) and not isinstance(value, bool) and 0 <= int(value) < len(spec.labels):
        return spec.labels[int(value)]
    last = len(spec.labels) - 1
    raise ValueError(f"{spec.name}: prediction {index} {value!r} is not a class id 0..{last} or a label")
