"""Pretraining: pairs and SOP labels, masking statistics, sharded/resumable data, config errors, DDP == one process,
rank-0-only writes, and SIGKILL + restart == uninterrupted. Tiny corpus and vocabulary written inline."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import kill_after_checkpoint

from squeezebert.data.pretraining import (MaskingConfig, PretrainingBatches, expand_corpus, make_pairs,
                                          mask_tokens, plan_units, split_sentences, unit_documents)
from squeezebert.cli import main
from squeezebert.pretrain import PretrainConfigError, load_config, pretrain, save_initial
from squeezebert.tokenizer import Tokenizer
from squeezebert.train.loop import TrainingError

WORDS = ("the cat dog bird sat ran flew on over under a mat tree house river small big red old new quick slow "
         "and then when it was day night morning evening happy sad walked looked saw found").split()


def write_vocab(path: Path) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", *WORDS, "##s", "##ed", "##ing"]
    path.write_text("".join(t + "\n" for t in tokens))
    return path


def write_corpus(directory: Path, files: int = 3, paragraphs: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for f in range(files):
        paras = []
        for _ in range(paragraphs):
            sents = [" ".join(rng.choice(WORDS) + rng.choice(["", "", "s", "ing"]) for _ in range(rng.randint(3, 12)))
                     for _ in range(rng.randint(1, 6))]
            paras.append(" ".join(s[0].upper() + s[1:] + "." for s in sents))
        path = directory / f"book{f}.txt"
        path.write_text("\n\n".join(paras) + "\n")
        out.append(str(path))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pretrain-corpus")
    return {"files": write_corpus(root / "text"), "vocab": str(write_vocab(root / "vocab.txt")), "root": root}


def tiny_config(corpus: dict, out: Path, **overrides) -> dict:
    config = {"corpus": corpus["files"], "vocab": corpus["vocab"], "output_dir": str(out), "model_preset": "tiny",
              "model": {"vocab_size": 64, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
              "phases": [{"seq_len": 32, "steps": 6, "global_batch": 8, "micro_batch": 8, "lr": 3e-3,
                          "warmup": 0.2}],
              "optimizer": "lamb", "streams": 2, "part_bytes": 2048, "shuffle_buffer": 8, "save_every": 2,
              "log_every": 1, "keep_checkpoints": 10, "progress": False, "threads": 1, "device": "cpu"}
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


# ---- data ---------------------------------------------------------------------------------------------------------

def test_sentence_split():
    assert split_sentences("He ran. She sat! Why? 3 dogs.") == ["He ran.", "She sat!", "Why?", "3 dogs."]
    assert split_sentences("it was fine. then it rained.") == ["it was fine.", "then it rained."]
    assert split_sentences("Mr. Smith came. Then") == ["Mr.", "Smith came.", "Then"]  # the known weakness


def test_pairs_keep_sentence_order_and_label_swaps():
    rng = random.Random(0)
    swapped = total = 0
    for doc in range(200):
        # sentence i holds increasing token ids, so document order is visible in the ids
        sentences = [[doc * 1000 + i * 10 + j for j in range(rng.randint(2, 9))] for i in range(rng.randint(1, 12))]
        for ex in make_pairs(sentences, 29, rng, short_seq_prob=0.1):
            assert ex.a and ex.b and len(ex.a) + len(ex.b) <= 29
            if ex.swapped:
                assert min(ex.a) > max(ex.b)
            else:
                assert max(ex.a) < min(ex.b)
            swapped += ex.swapped
            total += 1
    assert total > 300 and 0.42 < swapped / total < 0.58


def test_masking_statistics_80_10_10():
    rng = np.random.default_rng(0)
    cfg = MaskingConfig(mask_prob=0.15, max_predictions=1000, mask_token_id=4, vocab_size=5000)
    chosen = as_mask = as_random = kept = maskable_total = 0
    for _ in range(400):
        ids = rng.integers(5, 5000, 128)
        ids[0], ids[60], ids[127] = 2, 3, 3
        maskable = np.ones(128, dtype=bool)
        maskable[[0, 60, 127]] = False
        out, labels = mask_tokens(ids, maskable, np.ones(128, dtype=bool), cfg, rng)
        picked = labels != -100
        assert not picked[~maskable].any()                       # special tokens never predicted
        assert (labels[picked] == ids[picked]).all()            # labels are the original tokens
        assert (out[~picked] == ids[~picked]).all()             # unchosen positions untouched
        assert picked.sum() == round(125 * 0.15)                # BERT: a fixed count per sequence, not Bernoulli
        maskable_total += maskable.sum()
        chosen += picked.sum()
        as_mask += (out[picked] == 4).sum()
        kept += (out[picked] == ids[picked]).sum()
        as_random += ((out[picked] != 4) & (out[picked] != ids[picked])).sum()
    assert chosen / maskable_total == pytest.approx(0.15, abs=0.005)
    assert as_mask / chosen == pytest.approx(0.8, abs=0.02)
    assert as_random / chosen == pytest.approx(0.1, abs=0.015)
    assert kept / chosen == pytest.approx(0.1, abs=0.015)


def test_whole_word_masking_takes_whole_words():
    rng = np.random.default_rng(1)
    cfg = MaskingConfig(mask_prob=0.15, max_predictions=100, whole_word=True, mask_token_id=4, vocab_size=50)
    word_start = np.zeros(120, dtype=bool)
    word_start[::3] = True                                      # every word is three pieces
    for _ in range(50):
        ids = rng.integers(5, 50, 120)
        _, labels = mask_tokens(ids, np.ones(120, dtype=bool), word_start, cfg, rng)
        picked = (labels != -100).reshape(40, 3)
        assert (picked.all(1) | ~picked.any(1)).all()           # a word is masked entirely or not at all
        assert 0 < picked.sum() <= 18


def test_ranks_split_the_global_batch_and_resume_continues_exactly(corpus):
    tok = Tokenizer.from_vocab(corpus["vocab"])
    common = dict(seed=3, streams=2, part_bytes=2048, shuffle_buffer=8)
    single = PretrainingBatches(corpus["files"], tok, 32, 8, **common)
    ranks = [PretrainingBatches(corpus["files"], tok, 32, 4, rank=r, world_size=2, **common) for r in range(2)]
    it, its = iter(single), [iter(r) for r in ranks]
    for _ in range(4):
        whole = next(it)
        parts = [next(i) for i in its]
        for key in whole:
            assert torch.equal(whole[key], torch.cat([p[key] for p in parts])), key
    batch = whole
    assert batch["input_ids"].shape == (8, 32)
    assert ((batch["labels"] != -100).sum(1) >= 1).all() and set(batch["sop_labels"].tolist()) <= {0, 1}
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all()
    # resume from the state after 4 batches == the uninterrupted 5th and 6th
    state = single.state_dict()
    expected = [next(it) for _ in range(2)]
    resumed = PretrainingBatches(corpus["files"], tok, 32, 8, **common)
    resumed.load_state_dict(state)
    got = iter(resumed)
    for e in expected:
        assert all(torch.equal(v, w) for v, w in zip(e.values(), next(got).values()))
    with pytest.raises(TrainingError, match="another corpus"):
        PretrainingBatches(corpus["files"], tok, 64, 8, **common).load_state_dict(state)
    with pytest.raises(TypeError):
        len(single)


def test_bad_data_settings_are_named(corpus):
    tok = Tokenizer.from_vocab(corpus["vocab"])
    with pytest.raises(ValueError, match=r"micro-batch \(3\) must be a multiple"):
        PretrainingBatches(corpus["files"], tok, 32, 3, streams=2, part_bytes=2048)
    with pytest.raises(ValueError, match="multiple of the world size"):
        PretrainingBatches(corpus["files"], tok, 32, 4, streams=3, world_size=2, part_bytes=2048)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        pretrain(load_config(None, [f"corpus={corpus['root']}/nothing-*.txt", f"vocab={corpus['vocab']}"]))


def test_corpus_entry_options_read_one_column_pack_and_upsample(tmp_path, corpus):
    """A labelled .tsv (a GLUE training split) read for its text only, packed into blocks, dealt twice."""
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\nthe cat sat\t1\nthe dog ran\t0\na red bird flew\t1\n")
    entry = f"{tsv}?column=sentence&documents=block&repeat=2"
    files = expand_corpus([entry, corpus["files"][0]])
    units = plan_units(files, 1 << 20)
    tsv_units = [u for u in units if u.path == str(tsv)]
    assert [u.copy for u in tsv_units] == [0, 1] and all(u.documents == "block" for u in tsv_units)
    docs = unit_documents(tsv_units[0], "line")
    assert docs == [["the cat sat", "the dog ran", "a red bird flew"]]  # one packed document, no label in the text
    rows = [["the cat sat"], ["the dog ran"], ["a red bird flew"]]
    assert unit_documents(dataclasses.replace(tsv_units[0], documents=None), "block") == rows  # default: a row each
    tok = Tokenizer.from_vocab(corpus["vocab"])
    batches = PretrainingBatches(files, tok, 32, 4, streams=2, part_bytes=1 << 20)
    first = next(iter(batches))
    assert first["input_ids"].shape == (4, 32)
    # the options are part of what a resumed run must match
    other = PretrainingBatches([f"{tsv}?column=sentence", corpus["files"][0]], tok, 32, 4, streams=2,
                               part_bytes=1 << 20)
    assert other.fingerprint != batches.fingerprint


@pytest.mark.parametrize("entry, message", [
    ("{tsv}?colum=sentence", "unknown option.*colum"),
    ("{tsv}?column=label2", "needs a 'label2' column"),
    ("{txt}?column=text", "applies to .tsv files only"),
    ("{tsv}?repeat=0", "repeat must be a whole number"),
    ("{tsv}?documents=pages", "documents must be one of"),
    ("{tsv}?column", "key=value"),
])
def test_bad_corpus_entry_options_are_named(tmp_path, corpus, entry, message):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\nthe cat sat\t1\n")
    with pytest.raises(ValueError, match=message):
        plan_units(expand_corpus([entry.format(tsv=tsv, txt=corpus["files"][0])]), 1 << 20)


# ---- config -------------------------------------------------------------------------------------------------------

def test_config_file_overrides_and_named_errors(tmp_path, corpus):
    path = tmp_path / "c.toml"
    path.write_text(f'corpus = ["{corpus["files"][0]}"]\nvocab = "{corpus["vocab"]}"\n'
                    "[[phases]]\nseq_len = 128\nsteps = 10\n[[phases]]\nseq_len = 512\nsteps = 2\n")
    config = load_config(path, ["phases.1.steps=5", "phases.*.micro_batch=8", "model.hidden_size=64",
                                "whole_word_mask=true", "eval_every=none"])
    assert [p.steps for p in config.phases] == [10, 5] and config.phases[1].micro_batch == 8
    assert config.model == {"hidden_size": 64} and config.whole_word_mask is True and config.eval_every is None
    path.write_text('corpus = ["x"]\nvocab = "v"\n[[phases]]\nstepz = 3\n')
    with pytest.raises(PretrainConfigError, match=r"c\.toml: phases\[0\]: unknown key\(s\) stepz"):
        load_config(path)
    path.write_text('corpus = ["x"]\nvocab = "v"\nseed = "one"\n')
    with pytest.raises(PretrainConfigError, match="seed must be an integer"):
        load_config(path)
    path.write_text('corpus = ["x"\n')
    with pytest.raises(PretrainConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(PretrainConfigError, match="override lrate: unknown key"):
        load_config(None, ["lrate=1"])
    with pytest.raises(PretrainConfigError, match="no phase '3'"):
        load_config(None, ["phases.3.steps=1"])
    with pytest.raises(PretrainConfigError, match=r"phases\[0\].global_batch \(10\) must be a multiple"):
        load_config(None, ["corpus=a.txt", "vocab=v.txt", "phases.0.global_batch=10", "phases.0.micro_batch=4"])
    with pytest.raises(PretrainConfigError, match="corpus is empty"):
        load_config(None, ["vocab=v.txt"])


def test_shipped_configs_load():
    root = Path(__file__).parent.parent / "configs"
    paper = load_config(root / "pretrain-paper.toml")
    assert [(p.seq_len, p.steps, p.global_batch, p.lr) for p in paper.phases] == [(128, 56000, 8192, 2.5e-3),
                                                                                 (512, 6000, 8192, 2.5e-3)]
    assert paper.optimizer == "lamb" and paper.phases[0].warmup == 0.28
    for name in ("pretrain-tiny.toml", "pretrain-small-cpu.toml", "pretrain-minilm-squeezed.toml"):
        assert load_config(root / name).phases


# ---- training -----------------------------------------------------------------------------------------------------

def test_two_phases_run_learn_and_resume_skips_finished_work(tmp_path, corpus):
    config = tiny_config(corpus, tmp_path / "run", eval_corpus=[corpus["files"][0]], eval_examples=16,
                         phases=[{"seq_len": 32, "steps": 12, "global_batch": 8, "micro_batch": 4, "lr": 5e-3,
                                  "warmup": 0.2},
                                 {"seq_len": 64, "steps": 2, "global_batch": 4, "micro_batch": 4, "lr": 1e-3}])
    result = pretrain(load_config(write_config(tmp_path / "c.json", config)))
    first, second = result["phases"]
    assert first["steps"] == 12 and second["steps"] == 2 and first["session_tokens"] > 12 * 8 * 10
    log = (tmp_path / "run" / "phase1" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    losses = [float(row.split(",")[header.index("mlm_loss")]) for row in log[1:] if row.split(",")[
        header.index("mlm_loss")]]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])            # it learns something
    for name in ("final/model.safetensors", "final/vocab.txt", "curves.png", "summary.json",
                 "phase1/done.json", "phase2/final/config.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert set(second["final_eval"]) == {"mlm_loss", "mlm_acc", "perplexity", "sop_acc"}
    again = pretrain(load_config(write_config(tmp_path / "c.json", config)))
    assert again["phases"][0] == first                         # finished phases are skipped, not redone


def test_save_initial_is_the_runs_starting_point(tmp_path, corpus):
    """The from-scratch baseline of a fine-tuning comparison must be exactly what the run started from: a run
    initialised from the saved weights ends where the run from a fresh model ends; another seed gives other weights.
    The saved checkpoint has dropout on, so the equality also shows that the config's [model] overrides (dropout off)
    apply on top of an init_from checkpoint."""
    config_path = write_config(tmp_path / "c.json", tiny_config(corpus, tmp_path / "fresh"))
    assert main(["pretrain", "--config", str(config_path), "model.hidden_dropout_prob=0.1",
                 "model.attention_probs_dropout_prob=0.1", "--save-initial", str(tmp_path / "init")]) == 0
    assert json.loads((tmp_path / "init" / "config.json").read_text())["hidden_dropout_prob"] == 0.1
    assert not (tmp_path / "fresh").exists()                   # only the weights were written, no run
    save_initial(load_config(config_path, ["seed=7"]), tmp_path / "init-seed7")
    start, other = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("init", "init-seed7"))
    assert not torch.equal(start["transformer.embeddings.word_embeddings.weight"],
                           other["transformer.embeddings.word_embeddings.weight"])
    pretrain(load_config(config_path))
    pretrain(load_config(config_path, [f"output_dir={tmp_path / 'from-init'}", f"init_from={tmp_path / 'init'}"]))
    fresh, from_init = final_weights(tmp_path / "fresh"), final_weights(tmp_path / "from-init")
    assert fresh.keys() == from_init.keys()
    assert all(torch.equal(fresh[k], from_init[k]) for k in fresh)


def test_sinusoidal_position_init_depends_only_on_distance_and_is_named_when_wrong(tmp_path, corpus):
    """position_init=sinusoidal: the saved starting point's position table has the normal init's scale and dot
    products that depend only on the distance between positions (what makes "attend to my neighbour" one linear map
    away); the default keeps BERT's random table; an unknown value is a named config error."""
    config_path = write_config(tmp_path / "c.json", tiny_config(corpus, tmp_path / "run"))
    key = "transformer.embeddings.position_embeddings.weight"
    tables = {}
    for init in ("normal", "sinusoidal"):
        save_initial(load_config(config_path, [f"position_init={init}", "model.initializer_range=0.05"]),
                     tmp_path / init)
        tables[init] = load_file(str(tmp_path / init / "model.safetensors"))[key].double()
    sines, noise = tables["sinusoidal"], tables["normal"]
    assert abs(sines.std().item() - 0.05) < 0.01 and abs(noise.std().item() - 0.05) < 0.01
    for table, relative in ((sines, True), (noise, False)):
        near, far = table[3] @ table[4], table[40] @ table[41]
        assert torch.isclose(near, far, rtol=1e-6) == relative
    assert sines[10] @ sines[11] > sines[10] @ sines[30]          # neighbours are closer than distant positions
    with pytest.raises(PretrainConfigError, match="position_init must be one of"):
        load_config(config_path, ["position_init=rotary"])


def _worker(rank: int, world: int, port: int, config_path: str, report: str) -> None:
    config = json.loads(Path(config_path).read_text())
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    writes: list[str] = []
    if rank != 0:  # record any attempt by a non-zero rank to write inside the output directory
        out = os.path.abspath(config["output_dir"])
        inside = lambda p: os.path.abspath(os.fspath(p)).startswith(out)
        real_open, real_replace, real_mkdir, real_save = builtins.open, os.replace, os.mkdir, torch.save

        def guarded_open(file, mode="r", *a, **k):
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and inside(file):
                writes.append(f"open {file}")
            return real_open(file, mode, *a, **k)

        def guarded_replace(src, dst, *a, **k):
            if inside(dst):
                writes.append(f"replace {dst}")
            return real_replace(src, dst, *a, **k)

        def guarded_mkdir(path, *a, **k):
            if inside(path):
                writes.append(f"mkdir {path}")
            return real_mkdir(path, *a, **k)

        def guarded_save(obj, f, *a, **k):
            if isinstance(f, (str, os.PathLike)) and inside(f):
                writes.append(f"torch.save {f}")
            return real_save(obj, f, *a, **k)

        import squeezebert.checkpoint as ckpt
        real_save_file = ckpt.save_file

        def guarded_save_file(tensors, path, *a, **k):
            if inside(path):
                writes.append(f"save_file {path}")
            return real_save_file(tensors, path, *a, **k)

        builtins.open, os.replace, os.mkdir, torch.save, ckpt.save_file = (
            guarded_open, guarded_replace, guarded_mkdir, guarded_save, guarded_save_file)
    pretrain(load_config(config_path))
    Path(f"{report}.{rank}").write_text(json.dumps(writes))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process_and_only_rank_0_writes(tmp_path, corpus):
    single = tiny_config(corpus, tmp_path / "single")
    pretrain(load_config(write_config(tmp_path / "single.json", single)))
    ddp = tiny_config(corpus, tmp_path / "ddp")
    ddp["phases"][0]["micro_batch"] = 4                          # 2 processes x 4 = the same global batch of 8
    path = str(write_config(tmp_path / "ddp.json", ddp))
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), path, str(tmp_path / "writes")), nprocs=2)
    assert json.loads((tmp_path / "writes.1").read_text()) == []  # rank 1 wrote nothing in the output dir
    a, b = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    fresh = load_file(str(tmp_path / "single" / "phase1" / "checkpoints" / "step-000002" / "model.safetensors"))
    assert a.keys() == b.keys()
    moved = max(float((a[k] - fresh[k]).abs().max()) for k in a)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-3 and diff < 1e-5, (moved, diff)
    steps = json.loads((tmp_path / "ddp" / "summary.json").read_text())["phases"][0]
    assert steps["world_size"] == 2 and steps["steps"] == 6


JOB = """
import sys, time
from squeezebert.pretrain.run import PretrainingObjective
forward = PretrainingObjective.forward
def slow(self, *a, **k):
    time.sleep(0.05)  # gives the killer time to strike mid-run; numerics are unaffected
    return forward(self, *a, **k)
PretrainingObjective.forward = slow
from squeezebert.cli import main
sys.exit(main(["pretrain", "--config", sys.argv[1]]))
"""


def test_sigkill_mid_run_then_restart_equals_the_uninterrupted_run(tmp_path, corpus):
    steps = 16
    phases = [{"seq_len": 32, "steps": steps, "global_batch": 8, "micro_batch": 4, "lr": 3e-3, "warmup": 0.2}]
    reference = tiny_config(corpus, tmp_path / "reference", phases=phases,
                            model={"vocab_size": 64})  # dropout on: the RNG state must resume too
    pretrain(load_config(write_config(tmp_path / "reference.json", reference)))
    killed = dict(reference, output_dir=str(tmp_path / "killed"))
    config_path = write_config(tmp_path / "killed.json", killed)
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(config_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_at = kill_after_checkpoint(proc, tmp_path / "killed" / "phase1" / "checkpoints" / "latest", 6)
    assert killed_at < f"step-{steps:06d}"
    assert not (tmp_path / "killed" / "phase1" / "done.json").exists()
    pretrain(load_config(config_path))                          # resume=True: picks up the last checkpoint
    a, b = final_weights(tmp_path / "reference"), final_weights(tmp_path / "killed")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    shutil.rmtree(tmp_path / "killed", ignore_errors=True)
