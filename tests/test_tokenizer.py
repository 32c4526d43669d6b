"""Our tokenizer gives transformers' BertTokenizerFast ids on the same vocabulary, on real and awkward text."""

from __future__ import annotations

import json

import pytest

from squeezebert.cli import main
from squeezebert.tokenizer import Tokenizer, train_tokenizer

transformers = pytest.importorskip("transformers")

AWKWARD = ["Crème brûlée à São Paulo, naïve café", "Emoji 🤖🚀 and ❤️ here", "中文分词测试 and 日本語のテキスト",
           "control\x00chars\x07and\ttabs\r\n", "", "   ", "UPPER lower MiXeD", "a" * 150, "don't re-use e-mail@x.com"]


@pytest.fixture(scope="module")
def vocab(data_dir):
    return data_dir / "bert-base-uncased-vocab.txt"


@pytest.fixture(scope="module")
def ours(vocab):
    return Tokenizer.from_vocab(vocab)


@pytest.fixture(scope="module")
def ref(vocab):
    return transformers.BertTokenizerFast(vocab=str(vocab))


def real_lines(path, column, limit, skip_header=True):
    lines = path.read_text(encoding="utf-8-sig").splitlines()[1 if skip_header else 0:]
    return [line.split("\t")[column] for line in lines[:limit]]


def assert_same(a, b, keys=("input_ids", "attention_mask", "token_type_ids")):
    for key in keys:
        assert a[key] == b[key], key


def test_single_texts_match(ours, ref, data_dir):
    texts = real_lines(data_dir / "glue" / "SST-2" / "dev.tsv", 0, 300) + AWKWARD
    a = ours(texts, return_tensors=None, return_offsets=True)
    b = ref(texts, padding="longest", truncation=True, max_length=512, return_offsets_mapping=True)
    assert_same(a, b)
    assert a["offset_mapping"] == [[tuple(o) for o in row] for row in b["offset_mapping"]]


def test_pairs_match(ours, ref, data_dir):
    mrpc = data_dir / "glue" / "MRPC" / "dev.tsv"
    first, second = real_lines(mrpc, 3, 200), real_lines(mrpc, 4, 200)
    assert_same(ours(first, second, return_tensors=None), ref(first, second, padding="longest", truncation=True))


@pytest.mark.parametrize("strategy", ["longest_first", "only_second"])
def test_long_texts_truncate_like_transformers(ours, ref, data_dir, strategy):
    paragraphs = [p for p in (data_dir / "corpus" / "wikitext2-test.raw.txt").read_text().split("\n") if len(p) > 1000]
    long = [" ".join(paragraphs[i:i + 3]) for i in range(0, 12, 3)]  # each well over 512 tokens
    questions = ["what happened?"] * len(long)
    if strategy == "only_second":
        a = ours(questions, long, truncation=strategy, max_length=128, return_tensors=None)
        b = ref(questions, long, truncation=strategy, max_length=128, padding="longest")
    else:
        a = ours(long, long, truncation=strategy, return_tensors=None)
        b = ref(long, long, truncation=strategy, max_length=512, padding="longest")
        assert len(b["input_ids"][0]) == 512
    assert_same(a, b)
    assert all(a.truncated)
    single = ours(long[:1], return_tensors="pt")
    assert single["input_ids"].shape == (1, 512)


def test_overflow_windows_with_stride_match(ours, ref, data_dir):
    context = [p for p in (data_dir / "corpus" / "wikitext2-test.raw.txt").read_text().split("\n") if len(p) > 2000][0]
    a = ours(["who?", "when?"], [context, context[:500]], truncation="only_second", max_length=96, stride=32,
             return_overflowing=True, return_offsets=True, return_tensors=None)
    b = ref(["who?", "when?"], [context, context[:500]], truncation="only_second", max_length=96, stride=32,
            return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest")
    assert_same(a, b)
    assert a["overflow_to_sample_mapping"] == b["overflow_to_sample_mapping"]
    assert a["offset_mapping"] == [[tuple(o) for o in row] for row in b["offset_mapping"]]
    assert a.word_ids(3) == b.word_ids(3)


def test_tensors_padding_and_decode(ours, ref):
    batch = ours(["hello world", "a much longer sentence than the first"], padding="max_length", max_length=16)
    assert batch["input_ids"].shape == (2, 16) and batch.attention_mask[0].sum() == 4
    assert ours.decode(batch["input_ids"][0].tolist()) == "hello world"
    assert ours.decode([7592, 30525]) == "hello"  # ids past the vocab (padded embedding rows) are dropped
    assert ours.tokenize("unaffable [MASK] café") == ref.tokenize("unaffable [MASK] café")
    assert ours.convert_ids_to_tokens([101, 102]) == ["[CLS]", "[SEP]"]


def test_bad_input_errors(ours, tmp_path):
    with pytest.raises(ValueError, match="2 texts but 1 pairs"):
        ours(["a", "b"], ["c"])
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        ours(["a", 3])
    with pytest.raises(FileNotFoundError, match="nope"):
        Tokenizer.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor vocab.txt"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty vocabulary"):
        Tokenizer.from_vocab(empty)


def test_save_load_and_transformers_reads_it(ours, ref, tmp_path):
    ours.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = AWKWARD + ["The quick brown fox."]
    assert again(texts, return_tensors=None)["input_ids"] == ours(texts, return_tensors=None)["input_ids"]
    assert hf(texts, padding="longest")["input_ids"] == ours(texts, return_tensors=None)["input_ids"]
    (tmp_path / "tokenizer.json").unlink()  # vocab.txt alone is enough
    assert Tokenizer.from_pretrained(tmp_path).encode("hello") == ours.encode("hello")


def test_minilm_tokenizer_json_loads(minilm):
    tok = Tokenizer.from_pretrained(minilm)
    ref = transformers.AutoTokenizer.from_pretrained(minilm)
    texts = ["A man is playing a guitar.", "Über naïve résumé"]
    assert tok(texts, return_tensors=None)["input_ids"] == ref(texts, padding="longest")["input_ids"]


def test_train_tokenizer_and_cli(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the cat sat on mat number {i} while dogs ran around" for i in range(300)))
    tok = train_tokenizer([corpus], vocab_size=120, min_frequency=1, out_dir=tmp_path / "tok")
    assert tok.pad_token_id == 0 and tok.vocab["[MASK]"] == 4 and tok.vocab_size <= 120
    assert Tokenizer.from_pretrained(tmp_path / "tok").encode("the cat") == tok.encode("the cat")
    assert main(["train-tokenizer", str(corpus), "--out", str(tmp_path / "cli"), "--vocab-size", "100",
                 "--min-frequency", "1"]) == 0
    config = json.loads((tmp_path / "cli" / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is True
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_tokenizer([tmp_path / "missing.txt"])
