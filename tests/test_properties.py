"""Property-based tests (hypothesis): whatever a config.json, a data file or a tokenizer call holds, the result is a
value or one of our one-line errors (ConfigError, DataError, ValueError/TypeError naming the argument), never
another exception. Thousands of generated inputs per test, kept to seconds: each example draws a batch of inputs
(BATCH), which spreads hypothesis's per-example cost over many of them."""

from __future__ import annotations

import csv
import gzip
import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squeezebert.config import IGNORED_HF_KEYS, ConfigError, SqueezeBertConfig, preset
from squeezebert.data import DataError, read_conll, read_glue, read_squad, read_swag, read_table
from squeezebert.tokenizer import Tokenizer
from test_finetune import write_vocab

BATCH = 10  # inputs per hypothesis example: the test's input count is BATCH x max_examples


def fast(examples: int) -> settings:
    """``examples`` examples; derandomized (a CI failure reproduces locally), no example database on disk."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def batches(strategy: st.SearchStrategy) -> st.SearchStrategy[list]:
    return st.lists(strategy, min_size=BATCH, max_size=BATCH)


# JSON values of every kind, small and absurd: the content of a config field or a JSON-lines cell. The hand-picked
# values (types that look right but are not, boundaries, huge and non-finite numbers) are cheaper to draw than
# hypothesis' open-ended ones and hit the edges more often.
# Any code point, lone surrogates included (JSON can carry them); given explicitly, hypothesis skips a slow one-time
# scan of the UTF-8 codec that its default alphabet needs.
CHARS = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
TRICKY = [None, True, False, 0, 1, -1, 2, 4, 32, 64, 1000, 2**31, 2**63, 10**12, 0.0, 0.1, -0.5, 1.0, 1e-12, 1e308,
          float("nan"), float("inf"), float("-inf"), "", "0", "1", "0.1", "gelu", "LABEL_0", "regression", "\x00", "\ud800", [], {}, ["a"], {"0": "a"}, {"x": [1]}]
scalars = st.sampled_from(TRICKY) | st.integers() | st.floats() | st.text(CHARS, max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["0", "1", "2", "a"]) | st.text(CHARS, max_size=4), inner,
                                             max_size=3), max_leaves=5)

# Strategies are built once, here: hypothesis validates every new strategy object, which costs far more than a draw.
TINY = preset("tiny").to_dict()
FIELDS = st.sampled_from(sorted(TINY) + ["num_labels"])
EXTRA_KEYS = st.sampled_from(sorted(IGNORED_HF_KEYS)) | st.text(CHARS, max_size=8)
MODEL_TYPES = st.sampled_from(["bert", "squeezebert", "gpt2"]) | json_values
TRICKY_VALUES = st.sampled_from(TRICKY)
VALUES = st.one_of(TRICKY_VALUES, TRICKY_VALUES, TRICKY_VALUES, json_values)  # 3 in 4 hand-picked: cheap to draw


@st.composite
def config_dicts(draw) -> dict:
    """A tiny config.json with some fields replaced, removed or added (known, HF-ignored or unknown keys)."""
    data = dict(TINY)
    for _ in range(draw(st.integers(0, 4))):
        data[draw(FIELDS)] = draw(VALUES)
    for _ in range(draw(st.integers(0, 2))):
        data.pop(draw(FIELDS), None)
    if draw(st.booleans()):
        data[draw(EXTRA_KEYS)] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        data["model_type"] = draw(MODEL_TYPES)
    return data


CONFIGS = batches(config_dicts())


@fast(200)
@given(CONFIGS)
def test_any_config_json_loads_or_is_one_config_error(batch):
    for data in batch:
        try:
            config = SqueezeBertConfig.from_dict(json.loads(json.dumps(data)), source="config.json")
        except ConfigError as error:
            assert "\n" not in str(error)
            continue
        assert SqueezeBertConfig.from_dict(config.to_dict()) == config  # what loads also round-trips


# ---------------------------------------------------------------------------------------------- data readers

# A string is one draw for hypothesis, a list element several: whole lines and rows are drawn as single strings from
# alphabets full of delimiters and quotes, with hand-picked well-formed ones mixed in so that the success paths run.
text_cells = st.text(alphabet=string.printable + "éü中\x00\x85\u2028\ufeff", max_size=20)
HEADERS = st.sampled_from(["sentence\tlabel", "index\tsentence1\tsentence2\tlabel", "text\tlabel", "\ufeffQuality\t#1 ID"
                           "\t#2 ID\t#1 String\t#2 String", "sentence1\tsentence2\tgold_label", "label", ""]) | text_cells
ROWS = st.sampled_from(["a fine film\t1", "bad\t0", "a\tb\tc\tentailment", "1\tx\ty\t3.5", "x\t", "\t\t", '"q\t1'])


def delimited(delimiter: str) -> st.SearchStrategy[bytes]:
    rows = st.lists(ROWS | text_cells, max_size=6)
    return st.tuples(HEADERS, rows).map(
        lambda hr: "\n".join([hr[0], *hr[1]]).replace("\t", delimiter).encode("utf-8"))


def json_lines() -> st.SearchStrategy[bytes]:
    records = st.sampled_from(['{"text": "fine", "label": "1"}', '{"sentence1": "a", "sentence2": "b", "label": 0}',
                               '{"text": "x", "label": 1, "idx": 3}', '{"label": null}', "[1, 2]", "{}"])
    line = records | json_values.map(json.dumps) | text_cells
    return st.lists(line, max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8"))


def conll() -> st.SearchStrategy[bytes]:
    token_line = st.sampled_from(["John NNP B-NP B-PER", "lives VBZ B-VP O", "Paris NNP B-NP I-LOC", "-DOCSTART- -X- O",
                                  "", "x y", "a b c d e", "Bad NN O X-Y", "tok I-"]) | text_cells
    return st.lists(token_line, max_size=12).map(lambda lines: "\n".join(lines).encode("utf-8"))


def squad() -> st.SearchStrategy[bytes]:
    answer = st.fixed_dictionaries({}, optional={"text": json_values, "answer_start": json_values})
    qa = st.fixed_dictionaries({}, optional={"id": json_values, "question": json_values, "is_impossible": json_values,
                                             "answers": st.lists(answer, max_size=2) | json_values})
    paragraph = st.fixed_dictionaries({}, optional={"context": text_cells | json_values,
                                                    "qas": st.lists(qa, max_size=2) | json_values})
    article = st.fixed_dictionaries({}, optional={"title": json_values,
                                                  "paragraphs": st.lists(paragraph, max_size=2) | json_values})
    document = st.fixed_dictionaries({}, optional={"version": json_values,
                                                   "data": st.lists(article, max_size=2) | json_values})
    return (document | json_values).map(lambda d: json.dumps(d).encode("utf-8"))


def damaged(content: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Well-formed-ish content, or the same re-encoded / compressed / truncated / replaced by random bytes."""
    return content | content.map(lambda b: b.decode("utf-8", "replace").encode("utf-16")) \
        | content.map(gzip.compress) | content.map(lambda b: b[: len(b) // 2]) | st.binary(max_size=200) \
        | content.map(lambda b: b.decode("utf-8", "replace").encode("latin-1", "replace"))


def _read(tmp: Path, name: str, payload: bytes, read) -> None:
    path = tmp / name
    path.write_bytes(payload)
    try:
        read(path)
    except DataError as error:
        assert str(path) in str(error) and "\n" not in str(error)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readers")


READERS = {  # file name -> reader: GLUE TSV (three layouts), HF JSON lines, tables, CoNLL, SQuAD, SWAG
    "train.tsv": lambda p: read_glue("sst2", p),
    "dev.tsv": lambda p: read_glue("mrpc", p),
    "dev_matched.tsv": lambda p: read_glue("mnli", p),
    "train.jsonl": lambda p: read_glue("rte", p),
    "table.csv": lambda p: read_table(p),
    "table.tsv": lambda p: read_table(p, text_column="sentence", text_pair_column="text", label_column="label",
                                      regression=True),
    "table.jsonl": lambda p: read_table(p, skip_bad_rows=True),
    "conll.txt": lambda p: read_conll(p),
    "squad.json": lambda p: read_squad(p),
    "swag.csv": lambda p: read_swag(p),
}


CONTENT = {".tsv": delimited("\t"), ".csv": delimited(","), ".jsonl": json_lines(), ".txt": conll(), ".json": squad()}
FILES = batches(st.one_of([st.tuples(st.just(name), damaged(CONTENT[Path(name).suffix])) for name in sorted(READERS)]))


@fast(200)
@given(FILES)
def test_any_data_file_reads_or_is_one_data_error(scratch, batch):
    for name, payload in batch:
        _read(scratch, name, payload, READERS[name])


def test_readers_cover_well_formed_files_too(scratch):
    """The strategies above reach the success path (not only errors): a plain file of each kind reads."""
    (scratch / "ok.csv").write_text("text,label\na good film,1\na bad one,0\n")
    assert len(read_table(scratch / "ok.csv")) == 2
    (scratch / "ok.txt").write_text("John NNP B-PER\nlives VBZ O\n")
    assert len(read_conll(scratch / "ok.txt")) == 1
    rows = [["sentence", "label"], ["fine", "1"]]
    with open(scratch / "train.tsv", "w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows(rows)
    assert len(read_glue("sst2", scratch / "train.tsv")) == 1


# ---------------------------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    return Tokenizer.from_vocab(write_vocab(tmp_path_factory.mktemp("vocab")))


any_text = st.text(CHARS, max_size=40) | st.sampled_from(["", " ", "[MASK] [SEP]", "a" * 300, "\x00\ufeff\u200b",
                                                         "a\ud800b"])
some_texts = any_text | st.lists(any_text, max_size=4) | st.sampled_from(TRICKY + [[], [1], ("a", "b"), {"a": 1}])
tokenizer_options = st.fixed_dictionaries({}, optional={
    "max_length": st.sampled_from(TRICKY + [3, 5, 16, 512, 600, 2**40]),
    "truncation": st.sampled_from(TRICKY + [True, "longest_first", "only_first", "only_second", "x", [1]]),
    "padding": st.sampled_from(TRICKY + ["longest", "max_length", [1]]),
    "return_offsets": st.booleans(),
    "stride": st.sampled_from(TRICKY + [3, 16, 40, 2**40]),
    "return_overflowing": st.booleans(),
    "return_tensors": st.sampled_from(TRICKY + ["pt", "np"]),
    "add_special_tokens": st.sampled_from(TRICKY),
})


CALLS = batches(st.tuples(some_texts, st.none() | some_texts, tokenizer_options))
TEXTS = batches(st.tuples(some_texts, st.none() | any_text))


@fast(200)
@given(CALLS)
def test_any_tokenizer_call_encodes_or_is_one_argument_error(tokenizer, batch):
    for texts, pairs, options in batch:
        try:
            encoding = tokenizer(texts, pairs, **options)
        except (ValueError, TypeError) as error:  # ours, each naming the argument that is wrong
            assert "\n" not in str(error)
            continue
        rows = encoding["input_ids"]
        assert len(rows) >= (1 if isinstance(texts, str) else len(texts))
        assert all(0 <= int(i) < tokenizer.vocab_size for row in rows for i in row)


@fast(100)
@given(TEXTS)
def test_encode_and_decode_never_fail_on_text(tokenizer, batch):
    for text, pair in batch:
        try:
            ids = tokenizer.encode(text, pair)
        except (TypeError, ValueError) as error:  # not a string, or a lone surrogate: named
            assert "str" in str(error) or "surrogate" in str(error)
            continue
        assert isinstance(tokenizer.decode(ids), str)
