"""BERT WordPiece tokenization: a thin layer over the ``tokenizers`` library (no hand-written WordPiece).

The pipeline is the one transformers' ``BertTokenizerFast`` builds, so ids are identical on the same vocabulary:
BERT normaliser (clean text, CJK spacing, accent stripping and lower-casing for uncased), BERT pre-tokeniser,
WordPiece (``[UNK]``, ``##`` continuations, words over 100 characters become ``[UNK]``), ``[CLS] A [SEP] (B [SEP])``
with token types 0/1, and the WordPiece decoder.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from .fileio import atomic_path, read_text, write_json, write_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TRUNCATION = {"longest_first": "longest_first", "only_first": "only_first", "only_second": "only_second",
              True: "longest_first"}


class Encoding(dict):
    """``input_ids``, ``attention_mask``, ``token_type_ids`` (+ ``offset_mapping``, ``overflow_to_sample_mapping``),
    as tensors or lists; ``word_ids(i)`` maps row i's tokens to word indices (None for special tokens)."""

    def __init__(self, data: dict[str, Any], word_ids: list[list[int | None]], truncated: list[bool]):
        super().__init__(data)
        self._word_ids = word_ids
        self.truncated = truncated  # per row: did truncation drop tokens?

    def word_ids(self, i: int = 0) -> list[int | None]:
        return self._word_ids[i]

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Tokenizer:
    def __init__(self, backend: BackendTokenizer, lowercase: bool = True, model_max_length: int = 512):
        self.backend = backend
        # truncation is set on the shared backend per call; the lock keeps concurrent callers (a server's
        # threads) from seeing each other's settings
        self._lock = threading.Lock()
        self.lowercase = lowercase
        self.model_max_length = model_max_length
        vocab = backend.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks special token(s) {', '.join(missing)}")
        self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id = (
            vocab[t] for t in SPECIAL_TOKENS)

    # ---- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_vocab(cls, path: str | os.PathLike, lowercase: bool = True, model_max_length: int = 512) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such vocabulary file")
        tokens = read_text(path).splitlines()  # not UTF-8: an error naming the line and byte offset
        vocab: dict[str, int] = {}
        for token in tokens:
            vocab.setdefault(token.rstrip("\n"), len(vocab))
        if not vocab or vocab == {"": 0}:
            raise ValueError(f"{path}: empty vocabulary")
        return cls(build_backend(vocab, lowercase), lowercase, model_max_length)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "Tokenizer":
        """From ``tokenizer.json`` if present, else ``vocab.txt``; ``tokenizer_config.json`` sets case and length."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such tokenizer directory")
        options = {"lowercase": True, "model_max_length": 512}
        config_path = directory / "tokenizer_config.json"
        if config_path.exists():
            try:
                config = json.loads(read_text(config_path))
            except json.JSONDecodeError as e:
                raise ValueError(f"{config_path}: not valid JSON ({e})") from None
            except RecursionError:
                raise ValueError(f"{config_path}: JSON nested too deeply to read") from None
            if not isinstance(config, dict):
                raise ValueError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
            options["lowercase"] = bool(config.get("do_lower_case", True))
            max_len = config.get("model_max_length", 512)
            options["model_max_length"] = int(max_len) if isinstance(max_len, (int, float)) and 0 < max_len < 1e6 \
                else 512
        if (directory / "tokenizer.json").exists():
            path = directory / "tokenizer.json"
            try:
                backend = BackendTokenizer.from_file(str(path))
            except Exception as e:  # the library raises a bare Exception for a malformed file
                raise ValueError(f"{path}: not a valid tokenizer.json ({e})") from None
            backend.no_truncation()
            backend.no_padding()
            return cls(backend, **options)
        if (directory / "vocab.txt").exists():
            return cls.from_vocab(directory / "vocab.txt", **options)
        raise FileNotFoundError(f"{directory}: neither tokenizer.json nor vocab.txt")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """tokenizer.json, vocab.txt and the HF configs, so transformers' AutoTokenizer loads the directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "tokenizer.json") as tmp:
            self.backend.save(str(tmp))
        vocab = sorted(self.vocab.items(), key=lambda kv: kv[1])
        write_text(directory / "vocab.txt", "".join(f"{token}\n" for token, _ in vocab))
        specials = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS))
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase, "strip_accents": None,
                  "tokenize_chinese_chars": True, "model_max_length": self.model_max_length, **specials}
        write_json(directory / "tokenizer_config.json", config)
        write_json(directory / "special_tokens_map.json", specials)

    # ---- vocabulary -------------------------------------------------------------------------------------------
    @property
    def vocab(self) -> dict[str, int]:
        return self.backend.get_vocab()

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    # ---- encoding ---------------------------------------------------------------------------------------------
    def __call__(
        self,
        texts: str | Sequence[str],
        pairs: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        truncation: str | bool | None = "longest_first",
        padding: str | bool = "longest",
        return_offsets: bool = False,
        stride: int = 0,
        return_overflowing: bool = False,
        return_tensors: str | None = "pt",
        add_special_tokens: bool = True,
    ) -> Encoding:
        texts, pairs = _check_inputs(texts, pairs, truncation, padding, max_length, stride)
        max_length = max_length or self.model_max_length
        encodings = self._encode(list(zip(texts, pairs)) if pairs is not None else texts, max_length, truncation,
                                 stride, add_special_tokens)
        rows, sample_of, truncated = [], [], []
        for i, enc in enumerate(encodings):  # each text's windows: the first, then the overflow (if asked for)
            for window in [enc] + (list(enc.overflowing) if return_overflowing else []):
                rows.append(window)
                sample_of.append(i)
            truncated.append(bool(enc.overflowing))
        pad = padding not in (False, None)
        width = max_length if padding == "max_length" else max(len(r.ids) for r in rows)
        data = self._padded(rows, width if pad else 0, return_offsets)
        if return_overflowing:
            data["overflow_to_sample_mapping"] = sample_of
        word_ids = [list(r.word_ids) + [None] * (width - len(r.ids) if pad else 0) for r in rows]
        return Encoding(_as_tensors(data, return_tensors, pad), word_ids, truncated)

    def _encode(self, inputs: list, max_length: int, truncation: str | bool | None, stride: int,
                add_special_tokens: bool) -> list:
        """The library's encodings; truncation is set on the shared backend for this call only."""
        backend = self.backend
        with self._lock:
            try:
                if truncation:  # (the library refuses a stride too large for max_length: a ValueError below)
                    backend.enable_truncation(max_length, stride=stride, strategy=TRUNCATION[truncation])
                else:
                    backend.no_truncation()
                return backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
            except Exception as e:  # e.g. a pair too long for only_second truncation
                raise ValueError(f"cannot tokenize: {e}") from None
            finally:
                backend.no_truncation()

    def _padded(self, rows: list, width: int, return_offsets: bool) -> dict[str, list]:
        """Each row as lists, padded to ``width`` (0: not padded)."""
        data: dict[str, list] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        if return_offsets:
            data["offset_mapping"] = []
        for r in rows:
            n = len(r.ids)
            fill = max(width - n, 0)
            data["input_ids"].append(list(r.ids) + [self.pad_token_id] * fill)
            data["attention_mask"].append([1] * n + [0] * fill)
            data["token_type_ids"].append(list(r.type_ids) + [0] * fill)
            if return_offsets:
                data["offset_mapping"].append([tuple(o) for o in r.offsets] + [(0, 0)] * fill)
        return data

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        _check_strings([text] + ([pair] if pair is not None else []), "text")
        return self.backend.encode(text, pair, add_special_tokens=add_special_tokens).ids

    def tokenize(self, text: str) -> list[str]:
        _check_strings([text], "text")
        return self.backend.encode(text, add_special_tokens=False).tokens

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.backend.id_to_token(int(i)) or "[UNK]" for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        # Ids past the vocabulary (a model's padded embedding rows) are not tokens.
        ids = [int(i) for i in ids if 0 <= int(i) < self.vocab_size]
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)


def build_backend(vocab: dict[str, int], lowercase: bool = True) -> BackendTokenizer:
    backend = BackendTokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    backend.decoder = decoders.WordPiece(prefix="##")
    # Registered as special (as BertTokenizerFast does) so "[MASK]" in text stays one token and decode can skip them.
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return backend


def train_tokenizer(files: Sequence[str | os.PathLike], vocab_size: int = 30522, min_frequency: int = 2,
                    lowercase: bool = True, out_dir: str | os.PathLike | None = None) -> Tokenizer:
    """A new WordPiece vocabulary from text files (special tokens first, so [PAD] is id 0)."""
    paths = [str(Path(f)) for f in files]
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{p}: no such training file")
    backend = BackendTokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=None, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##")
    backend.train(paths, trainer)
    tokenizer = Tokenizer(build_backend(backend.get_vocab(), lowercase), lowercase)
    if out_dir is not None:
        tokenizer.save_pretrained(out_dir)
    return tokenizer


def _check_inputs(texts: Any, pairs: Any, truncation: Any, padding: Any, max_length: Any, stride: Any
                  ) -> tuple[list[str], list[str] | None]:
    """The texts (and pairs) as lists of strings; a bad argument is a ValueError or TypeError naming it."""
    texts = _as_strings(texts, "texts")
    if pairs is not None:
        pairs = _as_strings(pairs, "pairs")
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs: they must match one to one")
    if not texts:
        raise ValueError("no texts to encode")
    if truncation not in (None, False) and (not isinstance(truncation, (str, bool)) or truncation not in TRUNCATION):
        raise ValueError(f"truncation must be one of {list(TRUNCATION)} or None, got {truncation!r}")
    for name, value in (("max_length", max_length), ("stride", stride)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31):
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if padding not in ("longest", "max_length", True, False, None):
        raise ValueError(f"padding must be 'longest', 'max_length' or False, got {padding!r}")
    return texts, pairs


def _as_tensors(data: dict[str, list], return_tensors: str | None, padded: bool) -> dict[str, Any]:
    if return_tensors is None:
        return data
    if return_tensors != "pt":
        raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
    if not padded and len({len(x) for x in data["input_ids"]}) > 1:
        raise ValueError("rows of different lengths cannot be tensors without padding")
    import torch  # here, not at the top: the onnxruntime path tokenizes without torch installed

    return {k: torch.tensor(v, dtype=torch.long) for k, v in data.items()}


def _as_strings(values: Any, what: str) -> list[str]:
    """A string or a sequence of strings (list, tuple, array, ...) as a list; anything else is a TypeError naming
    ``what`` (a dict or set would silently encode its keys, in no particular order)."""
    if isinstance(values, str):
        values = [values]
    elif isinstance(values, (dict, set, frozenset, bytes, bytearray)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a string or a list of strings, got {type(values).__name__}")
    values = list(values)
    _check_strings(values, what)
    return values


def _check_strings(values: Sequence[Any], what: str) -> None:
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{what}[{i}] is {type(v).__name__}, not str")
        if not v.isascii():  # a lone surrogate (JSON may carry one) is no text the tokenizer library takes
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"{what}[{i}] is not valid Unicode: a lone surrogate {v[e.start]!r} at position "
                                 f"{e.start}") from None
