"""Hugging Face ``datasets`` corpora (``hf:`` entries) in the pretraining pipeline: local data only, no network."""

from __future__ import annotations

import json
import random

import pytest
import torch

from test_pretrain import WORDS, final_weights, tiny_config, write_config, write_vocab

from squeezebert.data.hf_corpus import open_dataset, parse_spec
from squeezebert.data.pretraining import PretrainingBatches, expand_corpus
from squeezebert.pretrain import load_config, pretrain
from squeezebert.tokenizer import Tokenizer

datasets = pytest.importorskip("datasets", reason="hf: corpora need the datasets package (the test extra has it)")


def documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "."
                     for _ in range(rng.randint(2, 6))) for _ in range(n)]


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hf-corpus")
    saved = root / "saved"
    datasets.Dataset.from_dict({"text": documents(60, 0), "id": list(range(60))}).save_to_disk(str(saved))
    shards = []
    for s in range(2):  # two JSON Lines files: a streaming dataset with two shards
        path = root / f"part{s}.jsonl"
        path.write_text("".join(json.dumps({"body": d}) + "\n" for d in documents(30, s + 1)))
        shards.append(str(path))
    return {"saved": f"hf:{saved}?rows=8", "stream": f"hf:json?data_files={','.join(shards)}&column=body"
            "&streaming=true&rows=5", "vocab": str(write_vocab(root / "vocab.txt")), "root": root}


def take(source: PretrainingBatches, n: int) -> list[dict[str, torch.Tensor]]:
    it = iter(source)
    return [next(it) for _ in range(n)]


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


@pytest.mark.parametrize("kind", ["saved", "stream"])
def test_dataset_corpus_is_deterministic_sharded_and_resumable(hf, kind):
    tok = Tokenizer.from_vocab(hf["vocab"])
    common = dict(seed=5, streams=2, shuffle_buffer=4)
    files = expand_corpus([hf[kind]])
    first = take(PretrainingBatches(files, tok, 32, 4, **common), 5)
    assert same(first, take(PretrainingBatches(files, tok, 32, 4, **common), 5))
    assert not same(first, take(PretrainingBatches(files, tok, 32, 4, **{**common, "seed": 6}), 5))
    # two ranks read disjoint streams and together give the single process's global micro-batch
    ranks = [iter(PretrainingBatches(files, tok, 32, 2, rank=r, world_size=2, **common)) for r in range(2)]
    for whole in first:
        parts = [next(r) for r in ranks]
        assert all(torch.equal(whole[k], torch.cat([p[k] for p in parts])) for k in whole)
    # real text went in: every unmasked, non-special token is one of the corpus words
    words = {tok.vocab[w] for w in WORDS} | {tok.vocab["."]}
    batch = first[-1]
    plain = (batch["labels"] == -100) & (batch["attention_mask"] == 1) & (batch["input_ids"] > 4)
    assert plain.sum() > 50 and set(batch["input_ids"][plain].tolist()) <= words
    # resume from the position after 3 batches continues with batches 4 and 5
    source = PretrainingBatches(files, tok, 32, 4, **common)
    take(source, 3)
    resumed = PretrainingBatches(files, tok, 32, 4, **common)
    resumed.load_state_dict(source.state_dict())
    assert same(take(resumed, 2), first[3:])


def test_bad_dataset_entries_are_named(hf):
    tok = Tokenizer.from_vocab(hf["vocab"])
    with pytest.raises(ValueError, match="unknown key"):
        parse_spec(hf["saved"] + "&colum=text")
    with pytest.raises(ValueError, match="rows must be an integer"):
        parse_spec(hf["saved"].replace("rows=8", "rows=eight"))
    with pytest.raises(ValueError, match=r"no column 'body'"):
        expand_corpus([hf["saved"] + "&column=body"])
    with pytest.raises(ValueError, match="cannot open the dataset"):
        open_dataset(f"hf:{hf['root']}/missing?data_files=nothing.jsonl")
    # a streaming dataset with 2 shards cannot feed 4 streams
    with pytest.raises(ValueError, match="one unit per shard"):
        PretrainingBatches(expand_corpus([hf["stream"]]), tok, 32, 4, streams=4)


def test_pretrain_runs_from_a_dataset_and_files_together(tmp_path, hf):
    from test_pretrain import write_corpus

    files = write_corpus(tmp_path / "text", files=1, paragraphs=10)
    config = tiny_config({"files": files + [hf["saved"]], "vocab": hf["vocab"]}, tmp_path / "run")
    result = pretrain(load_config(write_config(tmp_path / "c.json", config)))
    assert result["phases"][0]["steps"] == 6 and result["phases"][0]["session_tokens"] > 6 * 8 * 10
    assert final_weights(tmp_path / "run")  # a model was written


def test_general_distillation_reads_a_dataset_entry(hf):
    from squeezebert.distill.corpus import corpus_files, text_features

    features, counts = text_features(Tokenizer.from_vocab(hf["vocab"]), corpus_files(hf["saved"]), max_length=32)
    assert counts == {hf["saved"]: len(features)} and len(features) >= 60  # every row a paragraph, long ones cut
