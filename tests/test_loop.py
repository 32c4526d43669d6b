"""The one training loop: data order, schedules, decay groups, best/early stopping, NaN, exact resume (SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from squeezebert.config import preset
from squeezebert.model import SqueezeBertForSequenceClassification
from squeezebert.train.loop import (ShuffledBatches, Trainer, TrainingArgs, TrainingError, parameter_groups,
                                    schedule_factor)
from helpers import kill_after_checkpoint
from train_job import collate, run, tiny_model, toy_features

HERE = Path(__file__).parent


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_shuffled_batches_cover_each_example_once_and_resume_mid_epoch():
    rows = [{"input_ids": [i], "labels": 0} for i in range(21)]
    seen = lambda batches: [i for b in batches for i in b["input_ids"][:, 0].tolist()]
    src = ShuffledBatches(rows, 4, collate, seed=1)
    epoch0 = seen(iter(src))
    assert sorted(epoch0) == list(range(21)) and len(src) == 6
    src.set_epoch(1)
    assert sorted(seen(iter(src))) == list(range(21)) and seen(iter(ShuffledBatches(rows, 4, collate, seed=1))) == epoch0
    fresh = ShuffledBatches(rows, 4, collate, seed=1)
    it = iter(fresh)
    first = [next(it) for _ in range(2)]
    state = fresh.state_dict()
    resumed = ShuffledBatches(rows, 4, collate, seed=1)
    resumed.load_state_dict(state)
    assert seen(first) + seen(iter(resumed)) == epoch0
    with pytest.raises(TrainingError, match="21 examples"):
        ShuffledBatches(rows[:20], 4, collate).load_state_dict(state)


def test_length_grouped_batches_pad_less_and_still_shuffle():
    lengths = torch.randint(1, 60, (640,), generator=torch.Generator().manual_seed(0)).tolist()
    rows = [{"input_ids": [i] * n, "labels": 0} for i, n in enumerate(lengths)]
    padded = lambda src: sum(b["input_ids"].numel() for b in src)
    plain, grouped = ShuffledBatches(rows, 8, collate, seed=1), ShuffledBatches(rows, 8, collate, seed=1,
                                                                                 group_by_length=True)
    assert padded(grouped) < 0.7 * padded(plain)
    epochs = []
    for epoch in range(2):
        grouped.set_epoch(epoch)
        epochs.append([b["input_ids"][:, 0].tolist() for b in grouped])
        assert sorted(i for b in epochs[-1] for i in b) == list(range(640))
    assert epochs[0] != epochs[1]
    # batches are not in length order: the windows' batches are reshuffled
    widths = [max(lengths[i] for i in b) for b in epochs[0]]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_rank_slices_make_up_the_global_batch():
    rows = [{"input_ids": [i], "labels": 0} for i in range(22)]
    single = [b["input_ids"][:, 0].tolist() for b in ShuffledBatches(rows, 6, collate, seed=5)]
    ranks = [[b["input_ids"][:, 0].tolist() for b in ShuffledBatches(rows, 3, collate, seed=5, rank=r, world_size=2)]
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 4
    for g, (a, b) in zip(single, zip(*ranks)):
        assert a + b == g


def test_schedules_and_decay_groups():
    assert schedule_factor("linear", 0, 10, 100) == pytest.approx(0.1)
    assert schedule_factor("linear", 9, 10, 100) == pytest.approx(1.0)
    assert schedule_factor("linear", 55, 10, 100) == pytest.approx(0.5)
    assert schedule_factor("cosine", 55, 10, 100) == pytest.approx(0.5)
    assert schedule_factor("constant", 99, 10, 100) == 1.0
    model = tiny_model()
    decay, no_decay = parameter_groups([model], 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() >= 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert any(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="schedule"):
        TrainingArgs(output_dir="x", schedule="exp")
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        TrainingArgs(output_dir="x", precision="fp16")
    with pytest.raises(ValueError, match="grad_accum"):
        TrainingArgs(output_dir="x", grad_accum=0)


def test_training_learns_and_writes_logs_curve_and_best(tmp_path):
    torch.set_num_threads(1)
    model = tiny_model()
    features = toy_features()
    dev = toy_features(48, seed=9)

    def evaluate(m):
        batch = collate(dev)
        labels = batch.pop("labels")
        return {"accuracy": float((m(**batch).logits.argmax(-1) == labels).float().mean())}

    before = evaluate(model.eval())["accuracy"]
    args = TrainingArgs(output_dir=str(tmp_path), epochs=12, lr=3e-3, warmup=0.1, metric="accuracy",
                        log_every=5, progress=False)
    result = Trainer(model, args, ShuffledBatches(features, 8, collate), evaluate=evaluate).train()
    assert result.steps == 12 * 12 and result.epochs_done == pytest.approx(12)
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses[-1] < losses[0]
    assert result.best_metric > max(before, 0.8)
    for name in ("log.csv", "curve.png", "trainer_args.json", "best/config.json", "best/model.safetensors"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000144"
    assert list((tmp_path / "tensorboard").iterdir())


def test_early_stopping_on_a_metric_that_stops_improving(tmp_path):
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.9])
    args = TrainingArgs(output_dir=str(tmp_path), epochs=6, metric="score", patience=3, progress=False)
    result = Trainer(tiny_model(), args, ShuffledBatches(toy_features(16), 8, collate),
                     evaluate=lambda m: {"score": next(scores)}).train()
    assert result.stopped_early and result.best_metric == 0.6 and result.steps == 5 * 2


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        loss = m(**batch).loss
        return (loss * float("nan") if calls["n"] == 5 else loss), {}

    args = TrainingArgs(output_dir=str(tmp_path), max_steps=10, save_every=2, progress=False)
    with pytest.raises(TrainingError, match=r"non-finite loss .* step 5.*step-000004"):
        Trainer(tiny_model(), args, ShuffledBatches(toy_features(), 8, collate), loss_fn=loss_fn).train()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000004"


def test_resume_in_process_equals_uninterrupted_with_accumulation(tmp_path):
    full = run(str(tmp_path / "full"), 14, grad_accum=2, precision="bf16")

    class Stop(Exception):
        pass

    torch.set_num_threads(1)
    calls = {"n": 0}

    def crash_after(m, batch):
        calls["n"] += 1
        if calls["n"] > 2 * 9:  # mid-step 10; the last checkpoint is step 8
            raise Stop
        return m(**batch).loss, {}

    args = TrainingArgs(output_dir=str(tmp_path / "cut"), max_steps=14, lr=1e-3, warmup=0.2, save_every=2,
                        keep_checkpoints=2, log_every=1, progress=False, grad_accum=2, precision="bf16")
    with pytest.raises(Stop):
        Trainer(tiny_model(), args, ShuffledBatches(toy_features(), 8, collate, seed=3), loss_fn=crash_after).train()
    resumed = run(str(tmp_path / "cut"), 14, grad_accum=2, precision="bf16")
    assert_same_params(params(full.model), params(resumed.model))
    steps = [r["step"] for r in resumed.history if "loss" in r]
    assert steps == list(range(1, 15))  # the log holds each step once, across the interruption


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_parameters(tmp_path):
    steps = 24
    reference = run(str(tmp_path / "reference"), steps)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(HERE / "train_job.py"), str(out), str(steps), "0.05"], env=env)
    killed_at = kill_after_checkpoint(proc, out / "checkpoints" / "latest", 6)
    assert killed_at < f"step-{steps:06d}"
    resumed = run(str(out), steps)
    assert_same_params(params(reference.model), params(resumed.model))
    saved = load_file(str(out / "checkpoints" / f"step-{steps:06d}" / "model.safetensors"))
    assert saved  # the final checkpoint is complete and readable


def test_resume_rejects_a_corrupt_state(tmp_path):
    run(str(tmp_path), 4)
    state = tmp_path / "checkpoints" / "step-000004" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(TrainingError, match="unreadable training state"):
        run(str(tmp_path), 6)


def test_a_lower_is_better_metric_keeps_the_lowest_model(tmp_path):
    """As general distillation's held-out loss: greater_is_better=False saves best/ at the lowest score."""
    torch.set_num_threads(1)
    scores = iter([3.0, 1.0, 2.0])
    saved_at: list[int] = []
    model = tiny_model()

    def evaluate(m):
        return {"loss": next(scores)}

    args = TrainingArgs(output_dir=str(tmp_path), max_steps=6, eval_every=2, lr=1e-3, metric="loss",
                        greater_is_better=False, progress=False)

    def save(m, directory):  # best/ is written through a temporary sibling, .best<mark><pid>
        if Path(directory).name.startswith(".best"):
            saved_at.append(trainer.step)
        Path(directory, "w").write_text("x")

    trainer = Trainer(model, args, ShuffledBatches(toy_features(), 8, collate), evaluate=evaluate, save_model=save)
    result = trainer.train()
    assert result.best_metric == 1.0 and saved_at == [2, 4]  # not at 6 (2.0), nor at the end


def test_compiled_training_step_matches_eager_and_names_a_failed_build(tmp_path, monkeypatch):
    """--compile: the same losses and weights as eager (dropout off: compiled dropout draws other masks) over
    batches of varying length (a recompile, then a dynamic length); a compiler that cannot build is a clear error."""
    torch.set_num_threads(1)
    features = toy_features(32)

    def train(name: str, **overrides) -> tuple[list[float], dict]:
        torch.manual_seed(0)
        model = SqueezeBertForSequenceClassification(preset("tiny").replace(
            vocab_size=64, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
        args = TrainingArgs(output_dir=str(tmp_path / name), max_steps=3, lr=1e-3, log_every=1, progress=False,
                            **overrides)
        result = Trainer(model, args, ShuffledBatches(features, 8, collate, seed=3)).train()
        return [r["loss"] for r in result.history if "loss" in r], params(model)

    eager_losses, eager = train("eager")
    compiled_losses, compiled = train("compiled", compile=True)
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)
    import torch._inductor.config as inductor

    torch._dynamo.reset()
    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-compiler",))
    with pytest.raises(TrainingError, match="--compile: torch.compile could not build the training step"):
        train("broken", compile=True)
