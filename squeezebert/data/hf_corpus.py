"""Hugging Face ``datasets`` corpora for pretraining, named in the corpus list as ``hf:`` entries.

    hf:PATH_OR_NAME?split=train&column=text&name=CONFIG&streaming=true&rows=1000

``PATH_OR_NAME`` is a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (opened with
``load_from_disk``, memory-mapped), or anything ``datasets.load_dataset`` takes: a local loading script or data
directory, a packaged builder with local files (``hf:json?data_files=/data/*.jsonl``), or a Hub name (that one
downloads; everything else works offline). Query keys: ``split`` (default ``train``), ``column`` (default
``text``), ``name`` (the builder config), ``data_files`` (comma-separated globs), ``streaming`` and ``rows``.

Every row is one document (a Wikipedia article, a book, a web page; a row of WikiText is a line, which still works:
SOP pairs then come from within the line). Rows become the pretraining pipeline's units:

- a map-style dataset (``load_from_disk``, or ``load_dataset`` without streaming: an Arrow file, memory-mapped)
  is cut into row ranges of ``rows`` rows, so it spreads over any number of streams;
- a streaming dataset (``streaming=true``: nothing is downloaded or cached up front, for corpora larger than the
  disk) gives one unit per shard (usually one per data file) and is read in chunks of ``rows`` rows, so memory
  stays bounded. Such a corpus needs at least as many shards as data streams.

Both are deterministic given the seed (the units are dealt, ordered and shuffled like file units), so a resumed run
continues exactly as with files.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from urllib.parse import parse_qs, urlsplit

PREFIX = "hf:"
_KEYS = ("split", "column", "name", "data_files", "streaming", "rows")


@dataclass(frozen=True)
class HFSpec:
    path: str
    split: str = "train"
    column: str = "text"
    name: str | None = None
    data_files: tuple[str, ...] = ()
    streaming: bool = False
    rows: int = 1000


def is_hf(entry: str) -> bool:
    return entry.startswith(PREFIX)


@functools.lru_cache(maxsize=None)
def parse_spec(entry: str) -> HFSpec:
    """``hf:PATH?key=value&...`` -> HFSpec; an unknown key or a bad value is an error naming the entry."""
    parts = urlsplit(entry[len(PREFIX):])
    path = parts.path if not parts.netloc else parts.netloc + parts.path  # "hf://x" and "hf:x" both mean x
    if not path:
        raise ValueError(f"corpus entry {entry!r}: no dataset path or name after 'hf:'")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - set(_KEYS))
    if unknown:
        raise ValueError(f"corpus entry {entry!r}: unknown key(s) {unknown}; known: {list(_KEYS)}")
    try:
        rows = int(query.get("rows", 1000))
    except ValueError:
        raise ValueError(f"corpus entry {entry!r}: rows must be an integer, got {query['rows']!r}") from None
    streaming = query.get("streaming", "false").lower()
    if streaming not in ("true", "false", "1", "0"):
        raise ValueError(f"corpus entry {entry!r}: streaming must be true or false, got {streaming!r}")
    if rows < 1:
        raise ValueError(f"corpus entry {entry!r}: rows must be >= 1, got {rows}")
    files = tuple(f for f in query.get("data_files", "").split(",") if f)
    return HFSpec(path=os.path.expanduser(path), split=query.get("split", "train"),
                  column=query.get("column", "text"), name=query.get("name") or None, data_files=files,
                  streaming=streaming in ("true", "1"), rows=rows)


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError("an 'hf:' corpus entry needs the datasets package: pip install 'squeezebert[hf]'") from None
    return datasets


@functools.lru_cache(maxsize=16)
def open_dataset(entry: str):
    """The dataset split an entry names (opened once per process; Arrow data is memory-mapped, not loaded)."""
    spec, datasets = parse_spec(entry), _datasets()
    saved = os.path.isdir(spec.path) and any(
        os.path.exists(os.path.join(spec.path, f)) for f in ("state.json", "dataset_dict.json"))
    try:
        if saved:
            if spec.streaming:
                raise ValueError("streaming applies to load_dataset sources, not a save_to_disk directory")
            ds = datasets.load_from_disk(spec.path)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[spec.split]
        else:
            ds = datasets.load_dataset(spec.path, spec.name, split=spec.split, streaming=spec.streaming,
                                       data_files=list(spec.data_files) or None)
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        raise ValueError(f"corpus entry {entry!r}: cannot open the dataset ({type(e).__name__}: {e})") from None
    columns = ds.column_names
    if columns is not None and spec.column not in columns:
        raise ValueError(f"corpus entry {entry!r}: no column {spec.column!r}; the dataset has {columns}")
    return ds


def plan_hf_units(entry: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_shard) units: row ranges of a map-style dataset, or one shard each of a streaming one."""
    spec, ds = parse_spec(entry), open_dataset(entry)
    if spec.streaming:
        return [(i, i + 1, True) for i in range(ds.num_shards)]
    n = len(ds)
    if n == 0:
        raise ValueError(f"corpus entry {entry!r}: the {spec.split!r} split has no rows")
    return [(start, min(start + spec.rows, n), False) for start in range(0, n, spec.rows)]


def read_hf_rows(entry: str, start: int, end: int, is_shard: bool) -> Iterator[list[str]]:
    """A unit's rows (texts), in chunks of at most ``rows`` rows; empty texts are skipped."""
    spec, ds = parse_spec(entry), open_dataset(entry)
    if is_shard:
        rows = iter(ds.shard(num_shards=ds.num_shards, index=start))
        while chunk := list(islice(rows, spec.rows)):
            yield [t for r in chunk if (t := r[spec.column])]
    else:
        for s in range(start, end, spec.rows):
            texts = ds[s:min(s + spec.rows, end)][spec.column]
            yield [t for t in texts if t]
