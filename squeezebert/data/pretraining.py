"""Pretraining data: plain text -> documents -> sentences -> sentence-order pairs -> dynamically masked batches.

The pipeline (ALBERT/SqueezeBERT's objective, BERT's recipe for building instances):

1. **Units.** Every corpus file is cut into byte ranges of ``part_bytes`` (a line belongs to the unit it starts in),
   so one big file still spreads over many readers and memory stays bounded by one unit. ``.tsv`` files with a
   ``text`` column contribute that column, one document per row. A file entry may carry options after ``?``:
   ``column=NAME`` (the .tsv column to read, e.g. ``train.tsv?column=sentence`` reads a labelled GLUE file's text
   and never its labels), ``documents=MODE`` (this entry's document mode, overriding the config's) and ``repeat=N``
   (its units are dealt N times: upsampling a small in-domain file beside a large general corpus). ``hf:``
   entries name Hugging Face ``datasets`` corpora (saved to disk, memory-mapped, or streaming); their rows are
   documents and their units are row ranges or shards (:mod:`squeezebert.data.hf_corpus`).
2. **Streams.** Units are dealt (seeded, balanced by bytes) to ``streams`` independent readers. Each stream loops
   over its units forever, reshuffling them every pass, and emits examples through a seeded shuffle buffer.
   Rank ``r`` of ``W`` runs the streams ``s`` with ``s % W == r`` only (real sharding: each rank reads and tokenises
   1/W of the corpus), and every global micro-batch takes the same number of examples from every stream. So the
   examples of a global batch do not depend on the number of ranks: N ranks see exactly what one process sees.
3. **Documents -> pairs.** ``documents="block"``: a unit is one document (consecutive text, sentences in order);
   ``"paragraph"``: blank-line-separated paragraphs; ``"line"``: one line each. Sentences (a rule-based splitter)
   are accumulated up to the target length, cut at a random sentence boundary into A and B, and swapped with
   probability 0.5 (``sop_labels`` 1 = swapped). Like BERT, ``short_seq_prob`` of the pairs aim at a shorter length.
4. **Masking** (dynamic: decided when a batch is built, seeded per example): ``mask_prob`` of the non-special tokens
   (at least one, at most ``max_predictions``), optionally whole words (a token plus its ``##`` continuations);
   of those 80% become ``[MASK]``, 10% a random token, 10% stay. Unchosen positions get label -100.

Resume: the data position is the number of micro-batches yielded; every random choice is seeded from
(seed, stream, pass, unit) or (seed, stream, example index), so a resumed run regenerates (without masking or
collating) the examples it had consumed and continues with exactly the batches the uninterrupted run would see.
That costs re-tokenising what this rank has read so far; the model's compute is not repeated.
"""

from __future__ import annotations

import glob
import hashlib
import heapq
import os
import random
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count

import numpy as np
import torch
from torch import Tensor

from ..tokenizer import Tokenizer
from .hf_corpus import is_hf, open_dataset, plan_hf_units, read_hf_rows
from .tabular import open_text

DOCUMENT_MODES = ("block", "paragraph", "line")
IGNORE_INDEX = -100

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by space and an upper-case letter, digit or
# opening quote. Simple and predictable; abbreviations ("Mr. Smith") split wrongly, which SOP tolerates.
_BOUNDARY = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_BOUNDARY_UNCASED = re.compile(r"([.!?]+[\"'\u201d\u2019)\]]*)\s+(?=\S)")


def split_sentences(text: str) -> list[str]:
    """Rule-based sentence split; all-lower-case text (e.g. movie reviews) splits after any . ! ? and a space."""
    pattern = _BOUNDARY if any(c.isupper() for c in text) else _BOUNDARY_UNCASED
    out, start = [], 0
    for m in pattern.finditer(text):
        out.append(text[start:m.end(1)])
        start = m.end()
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


FILE_OPTIONS = ("column", "documents", "repeat")
TEXT_COLUMN = "text"  # the .tsv column a corpus reads unless an entry names another (?column=NAME)


def split_entry(entry: str) -> tuple[str, dict[str, str]]:
    """``path?column=sentence&repeat=2`` -> (path, options), every option checked (the message names the entry)."""
    path, _, query = entry.partition("?")
    try:
        options = dict(urllib.parse.parse_qsl(query, strict_parsing=True)) if query else {}
    except ValueError:
        raise ValueError(f"corpus: {entry!r}: options after '?' must be key=value joined by '&'") from None
    if unknown := sorted(set(options) - set(FILE_OPTIONS)):
        raise ValueError(f"corpus: {entry!r}: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(FILE_OPTIONS)}")
    if options.get("documents", "block") not in DOCUMENT_MODES:
        raise ValueError(f"corpus: {entry!r}: documents must be one of {DOCUMENT_MODES}")
    if not options.get("repeat", "1").isdigit() or int(options.get("repeat", "1")) < 1:
        raise ValueError(f"corpus: {entry!r}: repeat must be a whole number >= 1")
    if "column" in options and not path.endswith(".tsv"):
        raise ValueError(f"corpus: {entry!r}: column= applies to .tsv files only")
    return path, options


def expand_corpus(patterns: Sequence[str]) -> list[str]:
    """Files and globs -> a sorted, de-duplicated list of files; a pattern matching nothing is an error.

    A file entry's options (``?column=...``) stay on each file it matches. ``hf:`` entries (datasets) are kept as
    they are, after the files, and opened once here so a bad one fails now.
    """
    files: list[str] = []
    datasets = [p for p in patterns if is_hf(p)]
    for entry in datasets:
        open_dataset(entry)
    for pattern in (p for p in patterns if not is_hf(p)):
        path, _ = split_entry(pattern)
        query = pattern[len(path):]
        matches = sorted(glob.glob(os.path.expanduser(path), recursive=True))
        matches = [m + query for m in matches if os.path.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"corpus: {pattern!r} matches no file")
        files += matches
    return sorted(dict.fromkeys(files)) + list(dict.fromkeys(datasets))


@dataclass(frozen=True)
class Unit:
    """A byte range of one corpus file; ``column`` is the text column of a .tsv file (None for plain text);
    ``documents`` the entry's own document mode (None: the config's); ``copy`` tells a ``repeat`` copy apart.

    For an ``hf:`` dataset (``path`` is the entry): ``kind`` "rows" is the row range [start, end), "shard" is shard
    number ``start`` of a streaming dataset.
    """

    path: str
    start: int
    end: int
    column: int | None = None
    kind: str = "file"
    documents: str | None = None
    copy: int = 0


def plan_units(files: Sequence[str], part_bytes: int) -> list[Unit]:
    units = []
    for entry in files:
        if is_hf(entry):
            units += [Unit(entry, start, end, kind="shard" if shard else "rows")
                      for start, end, shard in plan_hf_units(entry)]
            continue
        path, options = split_entry(entry)
        size = os.path.getsize(path)
        column = None
        if path.endswith(".tsv"):
            header = tsv_header(path)
            name = options.get("column", TEXT_COLUMN)
            if name not in header:
                raise ValueError(f"{path}: a .tsv corpus file needs a {name!r} column in its header (choose one "
                                 f"with ?column=NAME), got {header}")
            column = header.index(name)
        for copy in range(int(options.get("repeat", "1"))):
            for start in range(0, max(size, 1), part_bytes):
                units.append(Unit(path, start, min(start + part_bytes, size), column,
                                  documents=options.get("documents"), copy=copy))
    return units


def tsv_header(path: str | os.PathLike) -> list[str]:
    with open_text(path) as f:
        return f.readline().rstrip("\r\n").split("\t")


def read_unit_lines(unit: Unit, skip_comments: bool = False) -> list[str]:
    """The lines that start inside the unit's byte range (the header of a .tsv excluded); ``skip_comments``: without
    a plain-text file's lines that start with ``#`` (file separators, as in the speeches corpus)."""
    lines = []
    with open(unit.path, "rb") as f:
        if unit.start > 0:
            f.seek(unit.start - 1)
            f.readline()  # the rest of the line that started in the previous unit
        elif unit.column is not None:
            f.readline()  # header
        while f.tell() < unit.end:
            raw = f.readline()
            if not raw:
                break
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if unit.column is not None:
                cells = line.split("\t")
                line = cells[unit.column] if len(cells) > unit.column else ""
            elif skip_comments and line.startswith("#"):
                continue
            lines.append(line)
    return lines


def unit_documents(unit: Unit, mode: str, skip_comments: bool = False) -> list[list[str]]:
    """A file unit's text as documents, each a list of sentences."""
    lines = read_unit_lines(unit, skip_comments)
    if unit.column is None:
        return lines_to_documents(lines, unit.documents or mode)
    # A .tsv row is whole sentences (not wrapped text): one document a row, or with documents=block/paragraph the
    # rows in file order as one document, each row split into its own sentences (never joined into its neighbour).
    if (unit.documents or "line") == "line":
        return lines_to_documents(lines, "line")
    return [[s for line in lines if line.strip() for s in split_sentences(line)]]


def unit_document_chunks(unit: Unit, mode: str, skip_comments: bool = False) -> Iterator[list[list[str]]]:
    """A unit's documents in chunks (a file unit is one chunk; a dataset unit is read ``rows`` rows at a time)."""
    if unit.kind == "file":
        yield unit_documents(unit, mode, skip_comments)
        return
    for texts in read_hf_rows(unit.path, unit.start, unit.end, unit.kind == "shard"):
        # A row is a document: ``mode`` applies inside it (paragraph: blank-line-separated parts; line: each line).
        yield [doc for text in texts for doc in lines_to_documents(text.splitlines(), mode)]


def lines_to_documents(lines: list[str], mode: str) -> list[list[str]]:
    """Lines of text -> documents (block: all of them; paragraph: split at blank lines; line: one each)."""
    if mode == "line":
        return [split_sentences(line) for line in lines if line.strip()]
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if mode == "paragraph":
        return [split_sentences(p) for p in paragraphs]
    return [[s for p in paragraphs for s in split_sentences(p)]]


@dataclass(frozen=True)
class Example:
    """One sentence-order pair before masking: ``a`` and ``b`` are token ids (no special tokens)."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    swapped: bool


def make_pairs(sentences: Sequence[Sequence[int]], max_tokens: int, rng: random.Random,
               short_seq_prob: float = 0.1) -> Iterator[Example]:
    """Pack a document's tokenised sentences into SOP pairs of at most ``max_tokens`` tokens (A + B)."""
    target = _target(max_tokens, rng, short_seq_prob)
    chunk: list[Sequence[int]] = []
    length = 0
    sentences = [s for s in sentences if s]
    for i, sent in enumerate(sentences):
        chunk.append(sent)
        length += len(sent)
        if length >= target or i == len(sentences) - 1:
            pair = _pair(chunk, max_tokens, rng)
            if pair is not None:
                yield pair
            chunk, length = [], 0
            target = _target(max_tokens, rng, short_seq_prob)


def _target(max_tokens: int, rng: random.Random, short_seq_prob: float) -> int:
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def _pair(chunk: list[Sequence[int]], max_tokens: int, rng: random.Random) -> Example | None:
    if len(chunk) >= 2:
        cut = rng.randint(1, len(chunk) - 1)
        a = [t for s in chunk[:cut] for t in s]
        b = [t for s in chunk[cut:] for t in s]
    else:  # one long sentence: its two halves still have an order
        tokens = list(chunk[0])
        if len(tokens) < 2:
            return None
        cut = rng.randint(1, len(tokens) - 1)
        a, b = tokens[:cut], tokens[cut:]
    la, lb = len(a), len(b)
    excess = la + lb - max_tokens
    if excess > 0:  # trim the longer side first; A loses its start and B its end, so the A|B junction survives
        take_a = min(excess, max(0, la - lb))
        take_b = min(excess - take_a, max(0, lb - la))
        rest = excess - take_a - take_b
        take_a, take_b = take_a + (rest + 1) // 2, take_b + rest // 2
        a, b = a[take_a:], b[:lb - take_b]
    if not a or not b:
        return None
    swapped = rng.random() < 0.5
    return Example(tuple(b), tuple(a), True) if swapped else Example(tuple(a), tuple(b), False)


@dataclass
class MaskingConfig:
    mask_prob: float = 0.15
    max_predictions: int = 20
    whole_word: bool = False
    mask_token_id: int = 103
    vocab_size: int = 30522            # random replacements are drawn from [0, vocab_size)
    cls_token_id: int = 101
    sep_token_id: int = 102
    pad_token_id: int = 0


def mask_tokens(ids: np.ndarray, maskable: np.ndarray, word_start: np.ndarray, cfg: MaskingConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking on one sequence. ``maskable``: non-special positions; ``word_start``: False on ``##`` pieces.

    Returns (input ids with masks applied, labels with -100 where nothing is predicted).
    """
    positions = np.flatnonzero(maskable)
    labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    if len(positions) == 0:
        return ids.copy(), labels
    budget = min(cfg.max_predictions, max(1, int(round(len(positions) * cfg.mask_prob))))
    if cfg.whole_word:
        starts = [i for i, p in enumerate(positions) if word_start[p] or i == 0]
        groups = [positions[s:e] for s, e in zip(starts, starts[1:] + [len(positions)])]
        chosen: list[int] = []
        for g in rng.permutation(len(groups)):
            if len(chosen) + len(groups[g]) <= budget:  # a word that does not fit is skipped, as BERT does
                chosen += groups[g].tolist()
            if len(chosen) >= budget:
                break
        picked = np.asarray(sorted(chosen), dtype=np.int64)
    else:
        picked = np.sort(rng.permutation(positions)[:budget])
    out = ids.copy()
    labels[picked] = ids[picked]
    roll = rng.random(len(picked))
    out[picked[roll < 0.8]] = cfg.mask_token_id
    random_pos = picked[(roll >= 0.8) & (roll < 0.9)]
    out[random_pos] = rng.integers(0, cfg.vocab_size, len(random_pos))
    return out, labels


def _seed(*parts: object) -> int:
    """A stable 64-bit seed from any parts (Python's hash() of str is salted per process)."""
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


class _Stream:
    """One reader: loops over its units forever (reshuffled each pass) and yields examples via a shuffle buffer."""

    def __init__(self, units: list[Unit], index: int, owner: "PretrainingBatches"):
        self.units, self.index, self.owner = units, index, owner

    def __iter__(self) -> Iterator[Example]:
        o = self.owner
        buffer: list[Example] = []
        pick = random.Random(_seed(o.seed, "buffer", self.index))
        for pass_no in count():
            order = list(range(len(self.units)))
            random.Random(_seed(o.seed, "order", self.index, pass_no)).shuffle(order)
            produced = 0
            for u in order:
                rng = random.Random(_seed(o.seed, "pairs", self.index, pass_no, u))
                for sentences in o.tokenize_documents(self.units[u]):
                    for example in make_pairs(sentences, o.seq_len - 3, rng, o.short_seq_prob):
                        produced += 1
                        if len(buffer) < o.shuffle_buffer:
                            buffer.append(example)
                            continue
                        i = pick.randrange(len(buffer))
                        buffer[i], example = example, buffer[i]
                        yield example
            if produced == 0:
                files = sorted({u.path for u in self.units})
                raise ValueError(f"data stream {self.index} produced no sentence pairs from {', '.join(files)}: "
                                 "is the text empty or without sentences?")


class PretrainingBatches:
    """A streaming, sharded, exactly resumable source of MLM + SOP micro-batches (the loop's ``Batches``).

    ``batch_size`` is this rank's micro-batch; every micro-batch takes ``batch_size / (streams / world_size)``
    examples from each of this rank's streams. Sequences are padded to ``seq_len`` (fixed shapes keep the ranks'
    random-number use in step, so restoring rank 0's RNG state on resume is exact on every rank).
    Batches: ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels`` (-100 = not predicted),
    ``sop_labels`` (1 = swapped).
    """

    def __init__(self, files: Sequence[str], tokenizer: Tokenizer, seq_len: int, batch_size: int, *,
                 seed: int = 42, streams: int = 8, rank: int = 0, world_size: int = 1, mask_prob: float = 0.15,
                 max_predictions: int | None = None, whole_word_mask: bool = False, short_seq_prob: float = 0.1,
                 documents: str = "block", shuffle_buffer: int = 256, part_bytes: int = 1 << 20):
        problems = []
        if documents not in DOCUMENT_MODES:
            problems.append(f"documents must be one of {DOCUMENT_MODES}, got {documents!r}")
        if seq_len < 8:
            problems.append(f"seq_len must be >= 8, got {seq_len}")
        if not 0 < mask_prob < 1:
            problems.append(f"mask_prob must be in (0, 1), got {mask_prob}")
        if not 0 <= short_seq_prob <= 1:
            problems.append(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        if streams < 1 or streams % world_size:
            problems.append(f"streams ({streams}) must be a positive multiple of the world size ({world_size})")
        elif batch_size < 1 or batch_size % (streams // world_size):
            problems.append(f"the per-process micro-batch ({batch_size}) must be a multiple of the streams per "
                            f"process ({streams // world_size} = {streams} streams / {world_size} processes)")
        if shuffle_buffer < 1 or part_bytes < 1:
            problems.append("shuffle_buffer and part_bytes must be >= 1")
        if not 0 <= rank < world_size:
            problems.append(f"rank {rank} outside world size {world_size}")
        if problems:
            raise ValueError("pretraining data: " + "; ".join(problems))
        self.files = list(files)
        self.tokenizer, self.seq_len, self.batch_size = tokenizer, seq_len, batch_size
        self.seed, self.streams, self.rank, self.world_size = seed, streams, rank, world_size
        self.documents, self.shuffle_buffer, self.short_seq_prob = documents, shuffle_buffer, short_seq_prob
        self.masking = MaskingConfig(
            mask_prob=mask_prob, whole_word=whole_word_mask,
            max_predictions=max_predictions or int(np.ceil(seq_len * mask_prob)),
            mask_token_id=tokenizer.mask_token_id, vocab_size=tokenizer.vocab_size,
            cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id)
        vocab = tokenizer.vocab
        self._word_start = np.ones(max(vocab.values()) + 1, dtype=bool)
        for token, i in vocab.items():
            if token.startswith("##"):
                self._word_start[i] = False

        units = plan_units(self.files, part_bytes)
        if len(units) < streams:
            raise ValueError(f"pretraining data: {len(units)} unit(s) of {part_bytes} bytes from {len(self.files)} "
                             f"file(s) cannot feed {streams} streams; lower streams or part_bytes (an hf: "
                             "entry: rows; a streaming one gives one unit per shard)")
        self.stream_units = _deal(units, streams, seed)
        self.mine = [s for s in range(streams) if s % world_size == rank]
        self.per_stream = batch_size // len(self.mine)
        self.fingerprint = _seed(seq_len, batch_size * world_size, streams, seed, documents, shuffle_buffer,
                                 part_bytes, short_seq_prob,
                                 *[(u.path, u.start, u.end, u.column, u.documents, u.copy) for u in units])
        self.position = 0
        self._live: tuple[int, list[Iterator[Example]]] | None = None

    # ---- text -> examples ---------------------------------------------------------------------------------------
    def tokenize_documents(self, unit: Unit) -> Iterator[list[list[int]]]:
        backend = self.tokenizer.backend
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: faster, same ids
        for docs in unit_document_chunks(unit, self.documents):
            flat = [s for d in docs for s in d]
            if not flat:
                continue
            encoded = encode(flat, add_special_tokens=False)
            i = 0
            for d in docs:
                yield [e.ids for e in encoded[i:i + len(d)]]
                i += len(d)

    def _streams(self) -> list[Iterator[Example]]:
        """This rank's stream iterators, fast-forwarded past the examples already consumed."""
        if self._live is not None and self._live[0] == self.position:
            return self._live[1]
        its = [iter(_Stream(self.stream_units[s], s, self)) for s in self.mine]
        skip = self.position * self.per_stream
        for it in its:
            for _ in range(skip):
                next(it)
        return its

    # ---- examples -> tensors -----------------------------------------------------------------------------------
    def encode(self, example: Example, rng: np.random.Generator) -> dict[str, np.ndarray]:
        m = self.masking
        ids = np.asarray([m.cls_token_id, *example.a, m.sep_token_id, *example.b, m.sep_token_id], dtype=np.int64)
        types = np.zeros(len(ids), dtype=np.int64)
        types[len(example.a) + 2:] = 1
        maskable = np.ones(len(ids), dtype=bool)
        maskable[[0, len(example.a) + 1, len(ids) - 1]] = False
        word_start = self._word_start[np.minimum(ids, len(self._word_start) - 1)]
        masked, labels = mask_tokens(ids, maskable, word_start, m, rng)
        return {"input_ids": masked, "token_type_ids": types, "labels": labels, "sop_label": int(example.swapped)}

    def collate(self, rows: list[dict]) -> dict[str, Tensor]:
        n, width = len(rows), self.seq_len
        batch = {"input_ids": torch.full((n, width), self.masking.pad_token_id, dtype=torch.long),
                 "attention_mask": torch.zeros(n, width, dtype=torch.long),
                 "token_type_ids": torch.zeros(n, width, dtype=torch.long),
                 "labels": torch.full((n, width), IGNORE_INDEX, dtype=torch.long)}
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            batch["input_ids"][i, :k] = torch.from_numpy(r["input_ids"])
            batch["attention_mask"][i, :k] = 1
            batch["token_type_ids"][i, :k] = torch.from_numpy(r["token_type_ids"])
            batch["labels"][i, :k] = torch.from_numpy(r["labels"])
        batch["sop_labels"] = torch.tensor([r["sop_label"] for r in rows], dtype=torch.long)
        return batch

    # ---- the Batches protocol ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        its = self._streams()
        while True:
            rows = []
            for s, it in zip(self.mine, its):
                for j in range(self.per_stream):
                    k = self.position * self.per_stream + j  # the example's index within its stream
                    rows.append(self.encode(next(it), np.random.default_rng(_seed(self.seed, "mask", s, k))))
            self.position += 1  # counted before yielding: a checkpoint taken after this batch resumes past it
            self._live = (self.position, its)
            yield self.collate(rows)

    def __len__(self) -> int:
        raise TypeError("pretraining batches are a stream without a length; the run is bounded by max_steps")

    def set_epoch(self, epoch: int) -> None:  # the stream never ends, so the loop never starts a new epoch
        pass

    def state_dict(self) -> dict:
        return {"epoch": 0, "position": self.position, "fingerprint": str(self.fingerprint)}

    def load_state_dict(self, state: dict) -> None:
        from ..train.loop import TrainingError

        if state.get("fingerprint") != str(self.fingerprint):
            raise TrainingError("the checkpoint's data position belongs to another corpus or data setting (files, "
                                "seq_len, global micro-batch, streams, seed): resuming would not continue the run")
        self.position = int(state["position"])
        self._live = None


def _deal(units: list[Unit], streams: int, seed: int) -> list[list[Unit]]:
    """Seeded shuffle, then each unit to the stream with the fewest bytes so far (ties: lowest index)."""
    order = list(range(len(units)))
    random.Random(_seed(seed, "deal")).shuffle(order)
    heap = [(0, s) for s in range(streams)]
    out: list[list[Unit]] = [[] for _ in range(streams)]
    for i in order:
        size, s = heapq.heappop(heap)
        out[s].append(units[i])
        heapq.heappush(heap, (size + units[i].end - units[i].start + 1, s))
    return out


def fixed_batches(files: Sequence[str], tokenizer: Tokenizer, seq_len: int, examples: int, batch_size: int = 32,
                  seed: int = 1234, **options) -> list[dict[str, Tensor]]:
    """A fixed, reproducible evaluation set: the first ``examples`` pairs of one stream, masked once."""
    source = PretrainingBatches(files, tokenizer, seq_len, batch_size, seed=seed, streams=1, **options)
    out, n = [], 0
    for batch in source:
        out.append(batch)
        n += len(batch["sop_labels"])
        if n >= examples:
            break
    return out


__all__ = ["DOCUMENT_MODES", "Example", "MaskingConfig", "PretrainingBatches", "Unit", "expand_corpus",
           "fixed_batches", "make_pairs", "mask_tokens", "plan_units", "read_unit_lines", "split_entry",
           "split_sentences", "lines_to_documents", "unit_document_chunks", "unit_documents"]
