"""Reliability (issue 16): seeded runs repeat bit for bit, resumes keep their settings, unusable checkpoints and
configs are one-line errors, NaN never becomes output, undecodable data names its file and byte, a full disk leaves
nothing half-written, and temporaries are fsynced, cleaned up and never left behind. Tiny models, a few steps."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from squeezebert.checkpoint import CheckpointError, load_model, save_model
from squeezebert.cli import main
from squeezebert.config import ConfigError, SqueezeBertConfig, preset
from squeezebert.data import DataError, read_conll, read_squad, read_table
from squeezebert.fileio import WriteError, remove_stale_temporaries
from squeezebert.model import SqueezeBertForSequenceClassification, SqueezeBertModel
from squeezebert.tokenizer import Tokenizer
from squeezebert.train.loop import ShuffledBatches, Trainer, TrainingArgs, TrainingError
from test_finetune import write_conll, write_squad, write_sst2, write_vocab
from train_job import collate, run, tiny_model, toy_features

TRAIN = ["--max-length", "32", "--batch-size", "8", "--lr", "1e-2", "--warmup", "0", "--no-progress"]


@pytest.fixture
def vocab(tmp_path) -> Path:
    return write_vocab(tmp_path)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_line_error(capsys, command: str) -> str:
    """The stderr of a failed command: exactly one line, ``squeezebert COMMAND: error: ...`` (no traceback)."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"squeezebert {command}: error: "), err
    return err


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------------- 2. seeds


def finetune_cli(data: Path, vocab: Path, model: str, out: Path, seed: int, *extra: str) -> dict:
    argv = ["finetune", "--task", "sst2", "--data-dir", str(data), "--model", model, "--tokenizer", str(vocab),
            "--out", str(out), "--max-steps", "4", "--seed", str(seed), *TRAIN, *extra]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_finetune_seed_gives_bit_identical_weights_and_metrics(tmp_path, vocab):
    data = write_sst2(tmp_path / "SST-2", n_train=32, n_dev=8)
    a, b, c = (finetune_cli(data, vocab, "tiny", tmp_path / name, seed) for name, seed in
               (("a", 7), ("b", 7), ("c", 8)))
    assert a["dev"] == b["dev"] and a["best_metric"] == b["best_metric"]
    final = Path("checkpoints") / "step-000004"
    assert same(weights(tmp_path / "a" / final), weights(tmp_path / "b" / final))
    assert not same(weights(tmp_path / "a" / final), weights(tmp_path / "c" / final))  # the seed matters


def test_finetune_seed_covers_the_fresh_head_of_a_checkpoint(tmp_path, vocab):
    tok = Tokenizer.from_vocab(vocab)
    base = tmp_path / "base"
    torch.manual_seed(0)
    save_model(SqueezeBertModel(preset("tiny", vocab_size=tok.vocab_size)), base, tokenizer=tok)
    data = write_sst2(tmp_path / "SST-2", n_train=32, n_dev=8)
    a, b = (finetune_cli(data, vocab, str(base), tmp_path / name, 7) for name in ("a", "b"))
    assert a["dev"] == b["dev"]
    final = Path("checkpoints") / "step-000004"
    assert same(weights(tmp_path / "a" / final), weights(tmp_path / "b" / final))


def test_distill_seed_gives_bit_identical_students(tmp_path, vocab):
    from squeezebert.distill.distill import distill

    tok = Tokenizer.from_vocab(vocab)
    teacher = tmp_path / "teacher"
    torch.manual_seed(0)
    save_model(SqueezeBertForSequenceClassification(preset("tiny-dense", vocab_size=tok.vocab_size)), teacher,
               tokenizer=tok)
    data = write_sst2(tmp_path / "SST-2", n_train=16, n_dev=8)
    runs = [distill(teacher, "sst2", data, tmp_path / name, student="tiny", max_steps=2, max_length=32, batch_size=8,
                    seed=7, progress=False) for name in ("a", "b")]
    assert runs[0]["student_dev"] == runs[1]["student_dev"]
    final = Path("checkpoints") / "step-000002"
    assert same(weights(tmp_path / "a" / final), weights(tmp_path / "b" / final))


def test_pretrain_seed_covers_the_fresh_heads_of_init_from(tmp_path):
    from test_pretrain import tiny_config, write_corpus
    from test_pretrain import write_vocab as pretraining_vocab

    from squeezebert.pretrain import load_config, pretrain

    corpus = {"files": write_corpus(tmp_path / "text", files=1, paragraphs=20),
              "vocab": str(pretraining_vocab(tmp_path / "vocab.txt"))}
    base = tmp_path / "base"
    torch.manual_seed(0)
    save_model(SqueezeBertModel(preset("tiny", vocab_size=64)), base)
    for name in ("a", "b"):
        config = tiny_config(corpus, tmp_path / name, init_from=str(base), seed=7,
                             phases=[{"seq_len": 32, "steps": 2, "global_batch": 4, "micro_batch": 4, "lr": 1e-3}])
        (tmp_path / f"{name}.json").write_text(json.dumps(config))
        pretrain(load_config(tmp_path / f"{name}.json"))
    assert same(weights(tmp_path / "a" / "final"), weights(tmp_path / "b" / "final"))


# ---------------------------------------------------------------------------------------------- 3. resume settings


def test_resume_with_other_settings_is_refused_with_the_differences(tmp_path, vocab, capsys):
    data = write_sst2(tmp_path / "SST-2", n_train=32, n_dev=8)
    out = tmp_path / "run"
    first = finetune_cli(data, vocab, "tiny", out, 1)
    capsys.readouterr()
    argv = ["finetune", "--task", "sst2", "--data-dir", str(data), "--model", "tiny", "--tokenizer", str(vocab),
            "--out", str(out), "--seed", "1", *TRAIN, "--max-steps", "8", "--batch-size", "16", "--lr", "5e-2"]
    assert main(argv) == 2
    err = one_line_error(capsys, "finetune")
    for difference in ("batch_size: 8 -> 16", "lr: 0.01 -> 0.05", "max_steps: 4 -> 8", "--no-resume"):
        assert difference in err, err
    assert json.loads((out / "results.json").read_text()) == first  # nothing ran, nothing was recorded
    assert main(argv + ["--no-resume"]) == 0  # starting over with the new settings is allowed
    again = json.loads((out / "results.json").read_text())
    assert again["steps"] == 8 and again["batch_size"] == 16 and again["training_args"]["lr"] == 0.05


def test_train_wall_seconds_add_up_over_the_runs_of_a_job(tmp_path):
    pause, calls = 0.15, {"n": 0}

    class Killed(Exception):
        pass

    def slow_loss(crash_at: int | None):
        def loss_fn(model, batch):
            calls["n"] += 1
            if crash_at is not None and calls["n"] >= crash_at:
                raise Killed
            time.sleep(pause)
            return model(**batch).loss, {}
        return loss_fn

    args = TrainingArgs(output_dir=str(tmp_path), max_steps=6, lr=1e-3, save_every=2, log_every=1, progress=False)
    with pytest.raises(Killed):  # killed during step 5: the step-4 checkpoint holds 4 steps' time
        Trainer(tiny_model(), args, ShuffledBatches(toy_features(), 8, collate, seed=3),
                loss_fn=slow_loss(crash_at=5)).train()
    state = torch.load(tmp_path / "checkpoints" / "step-000004" / "training_state.pt", weights_only=True)
    assert state["wall_seconds"] >= 4 * pause
    result = Trainer(tiny_model(), args, ShuffledBatches(toy_features(), 8, collate, seed=3),
                     loss_fn=slow_loss(crash_at=None)).train()
    assert result.steps == 6 and result.wall_seconds >= 6 * pause  # both runs of the job, not the last only


# ---------------------------------------------------------------------------------------------- 4. checkpoints


def test_weights_whose_names_match_nothing_are_an_error(tmp_path, capsys):
    src = tmp_path / "src"
    save_model(SqueezeBertModel(preset("tiny")), src)
    renamed = {f"foo.{k}": v for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(renamed, str(src / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"only 0 of the model's \d+ encoder tensors match"):
        load_model(src)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    assert "only 0 of" in one_line_error(capsys, "convert")
    assert not (tmp_path / "out").exists()


def test_architectures_as_a_string_is_one_error_not_a_warning_per_character(tmp_path, caplog):
    save_model(SqueezeBertForSequenceClassification(preset("tiny")), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = "SqueezeBertForSequenceClassification"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="architectures must be a list"):
        load_model(tmp_path)
    assert len(caplog.records) <= 1


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_sharded_index_paths_must_stay_inside_the_checkpoint(tmp_path, where):
    ckpt = tmp_path / "ckpt"
    save_model(SqueezeBertModel(preset("tiny")), ckpt)
    outside = tmp_path / "elsewhere.safetensors"
    (ckpt / "model.safetensors").rename(outside)
    name = "../elsewhere.safetensors" if where == "parent" else str(outside)
    weight_map = {key: name for key in load_file(str(outside))}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="outside the checkpoint directory"):
        load_model(ckpt)


# ---------------------------------------------------------------------------------------------- 5. NaN, ranges


def test_predict_refuses_non_finite_outputs_instead_of_printing_nan(tmp_path, vocab, capsys):
    tok = Tokenizer.from_vocab(vocab)
    model = SqueezeBertForSequenceClassification(preset("tiny", vocab_size=tok.vocab_size))
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    save_model(model, tmp_path / "broken", tokenizer=tok)
    assert main(["predict", "--model", str(tmp_path / "broken"), "a good film"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "not finite" in captured.err and captured.err.strip().count("\n") == 0


@pytest.mark.parametrize("field, value, message", [
    ("layer_norm_eps", -1, r"layer_norm_eps must be in \(0, 1\]"),
    ("layer_norm_eps", 0, "layer_norm_eps"),
    ("initializer_range", -0.5, "initializer_range"),
    ("hidden_dropout_prob", "0.1", "hidden_dropout_prob must be a finite number"),
    ("attention_probs_dropout_prob", None, "attention_probs_dropout_prob must be a finite number"),
    ("pad_token_id", "0", "pad_token_id must be an integer"),
    ("id2label", ["neg", "pos"], "id2label must be an object"),
    ("id2label", {"x": "neg"}, "id2label keys"),
    ("label2id", {"neg": "0"}, "label2id"),
    ("vocab_size", 10**12, "vocab_size must be in"),
    ("num_hidden_layers", 2.0, "num_hidden_layers must be an integer"),
    ("hidden_act", ["gelu"], "hidden_act"),
    ("problem_type", ["regression"], "problem_type"),
])
def test_every_config_field_is_type_and_range_checked(tmp_path, capsys, field, value, message):
    config = preset("tiny").to_dict() | {field: value}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message) as error:
        SqueezeBertConfig.from_json_file(tmp_path / "config.json")
    assert "\n" not in str(error.value) and str(tmp_path / "config.json") in str(error.value)
    assert main(["info", str(tmp_path)]) == 2
    assert field in one_line_error(capsys, "info")


def test_sizes_that_describe_an_absurd_model_are_refused():
    with pytest.raises(ConfigError, match="billion parameters"):
        preset("tiny", vocab_size=4_000_000, hidden_size=4096, embedding_size=4096, num_attention_heads=4)


def test_a_100k_deep_config_json_is_one_error(tmp_path):
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        SqueezeBertConfig.from_json_file(tmp_path / "config.json")


# ---------------------------------------------------------------------------------------------- 6. user errors


def test_unknown_task_is_one_line_listing_the_known_ones(tmp_path, capsys):
    assert main(["finetune", "--task", "foo", "--model", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task 'foo'; known: cola, sst2" in one_line_error(capsys, "finetune")


def test_a_deeply_nested_json_line_is_a_data_error_naming_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n' + '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"train.jsonl:2: JSON nested too deeply"):
        read_table(path)


LATIN1 = "sentence\tlabel\n" + "a fine film\t1\n" * 40 + "un caf\xe9 tr\xe8s bon\t1\n"


def undecodable(kind: str) -> bytes:
    """A training file as people really hand them over: latin-1 text, UTF-16, gzip, or not text at all."""
    return {"latin-1": LATIN1.encode("latin-1"), "utf-16": LATIN1.encode("utf-16"),
            "gzip": gzip.compress(LATIN1.encode("utf-8")), "binary": bytes(range(256)) * 8}[kind]


# (line, byte offset) of the first byte that is not UTF-8, and a word of the hint
WHERE = {"latin-1": (42, len("sentence\tlabel\n" + "a fine film\t1\n" * 40) + 6, "latin-1"),
         "utf-16": (1, 0, "UTF-16"), "gzip": (1, 1, "gzip"), "binary": (2, 128, "binary")}  # byte 10 is a newline


@pytest.mark.parametrize("kind", list(WHERE))
def test_undecodable_data_names_the_file_line_and_byte_offset(tmp_path, vocab, capsys, kind):
    data = write_sst2(tmp_path / "SST-2", n_train=8, n_dev=4)
    (data / "train.tsv").write_bytes(undecodable(kind))
    assert main(["finetune", "--task", "sst2", "--data-dir", str(data), "--model", "tiny", "--tokenizer",
                 str(vocab), "--out", str(tmp_path / "out"), *TRAIN]) == 2
    line, offset, hint = WHERE[kind]
    err = one_line_error(capsys, "finetune")
    assert f"{data / 'train.tsv'}:{line}: byte 0x" in err and f"at offset {offset} is not UTF-8" in err, err
    assert hint in err


@pytest.mark.parametrize("reader, name", [(read_table, "train.csv"), (read_table, "train.jsonl"),
                                          (read_conll, "train.txt"), (read_squad, "train.json")])
def test_every_reader_names_the_undecodable_byte(tmp_path, reader, name):
    path = tmp_path / name
    path.write_bytes(undecodable("latin-1"))
    with pytest.raises(DataError, match=rf"{name}:42: byte 0xe9 at offset \d+ is not UTF-8"):
        reader(path)


def test_a_vocab_or_predict_file_that_is_not_utf8_names_the_byte(tmp_path, capsys):
    (tmp_path / "vocab.txt").write_bytes("[PAD]\n[UNK]\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"vocab.txt:3: byte 0xe9 at offset 15"):
        Tokenizer.from_vocab(tmp_path / "vocab.txt")


def test_a_failed_checkpoint_save_leaves_nothing_half_written(tmp_path, capsys):
    """The disk fills during the second checkpoint: the error is one line, no temporary is left, and the previous
    checkpoint is intact and resumable."""
    from squeezebert.checkpoint import save_model as real_save

    saves = {"n": 0}

    def filling_disk(model, directory):
        saves["n"] += 1
        real_save(model, directory)
        if saves["n"] == 2:
            (Path(directory) / "partial.bin").write_bytes(b"half")
            raise OSError(28, "No space left on device")

    args = TrainingArgs(output_dir=str(tmp_path), max_steps=6, lr=1e-3, warmup=0.2, save_every=2, keep_checkpoints=2,
                        log_every=1, progress=False)  # train_job.run's, so that run() below may resume
    with pytest.raises(WriteError, match=r"step-000004: could not be written \(No space left on device"):
        Trainer(tiny_model(), args, ShuffledBatches(toy_features(), 8, collate, seed=3),
                save_model=filling_disk).train()
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-000002"]  # no temporaries
    assert (checkpoints / "latest").read_text().strip() == "step-000002"
    resumed = run(str(tmp_path), 6)  # the previous checkpoint still resumes (same settings as run())
    assert resumed.step == 6


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of ``kb`` kilobytes (root only; skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(kb: int) -> Path:
        path = tmp_path / f"disk-{kb}k"
        path.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a small tmpfs needs root and mount(8)")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_really_full_disk_during_finetuning_is_one_line_and_keeps_the_last_checkpoint(tmp_path, vocab, capsys,
                                                                                        small_disk):
    data = write_sst2(tmp_path / "SST-2", n_train=32, n_dev=8)
    probe = tmp_path / "probe"
    finetune_cli(data, vocab, "tiny", probe, 1, "--eval-every", "2")
    size = sum(f.stat().st_size for f in (probe / "checkpoints" / "step-000004").iterdir())
    disk = small_disk(int(size * 1.6 / 1024))  # room for one checkpoint and the logs, not for a second one
    out = disk / "run"
    argv = ["finetune", "--task", "sst2", "--data-dir", str(data), "--model", "tiny", "--tokenizer", str(vocab),
            "--out", str(out), "--max-steps", "4", "--seed", "1", "--eval-every", "2", *TRAIN]
    capsys.readouterr()
    assert main(argv) == 2
    assert "could not be written" in one_line_error(capsys, "finetune")
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert load_file(str(out / "checkpoints" / latest / "model.safetensors"))  # complete and readable


def test_a_failed_export_leaves_no_temporary(tmp_path, capsys, small_disk):
    disk = small_disk(64)
    assert main(["export", "--model", "tiny", "--format", "onnx", "--no-check", "--out", str(disk / "m.onnx")]) == 2
    assert "could not be written" in one_line_error(capsys, "export")
    assert list(disk.iterdir()) == []


# ---------------------------------------------------------------------------------------------- 7. leftovers, fsync


def test_temporaries_of_a_killed_save_are_cleaned_at_the_next_start(tmp_path):
    run(str(tmp_path), 4)
    pid = dead_pid()
    checkpoints = tmp_path / "checkpoints"
    stale = [checkpoints / f".tmp-step-000004-{pid}", checkpoints / f".step-000004.tmp-{pid}",
             tmp_path / f".best.tmp-{pid}", tmp_path / f".log.csv.tmp-{pid}"]
    for path in stale:
        if "csv" in path.name:
            path.write_text("half")
        else:
            path.mkdir()
            (path / "model.safetensors").write_bytes(b"half")
    (checkpoints / "step-000004").rename(checkpoints / f".step-000004.old-{pid}")  # killed mid-swap: put back
    run(str(tmp_path), 4)
    assert not any(path.exists() for path in stale)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step-000002", "step-000004"]


def test_cleanup_leaves_temporaries_of_live_processes_alone(tmp_path):
    live = tmp_path / f".model.onnx.tmp-{os.getppid()}"  # our parent is alive
    dead = tmp_path / f".model.onnx.tmp-{dead_pid()}"
    live.write_text("x")
    dead.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert live.exists()


def test_checkpoint_files_are_fsynced_before_latest_moves(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("replace", str(dst)))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run(str(tmp_path), 2)
    latest = next(i for i, (kind, path) in enumerate(events) if kind == "replace" and path.endswith("/latest"))
    synced = {Path(path).name for kind, path in events[:latest] if kind == "fsync" and ".step-000002.tmp-" in path}
    assert {"model.safetensors", "config.json", "training_state.pt"} <= synced
