"""The pretraining flow: config -> tokenizer, model, streaming data -> the one training loop, phase by phase.

Runs as one process or under ``torchrun`` (``WORLD_SIZE`` set: the process group is initialised from the
environment, gloo on CPU and NCCL on GPU; the loop wraps the model in DDP and only rank 0 writes). Each phase
trains in ``output_dir/phaseN/`` with its own LAMB/AdamW and warm-up; phase N+1 starts from phase N's final weights.
Re-running the same command (or torchrun restarting its workers after a failure) continues from the last
checkpoint: finished phases are skipped (``phaseN/done.json``) and the current one resumes exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_model, save_model
from ..config import preset
from ..data.pretraining import IGNORE_INDEX, PretrainingBatches, expand_corpus, fixed_batches
from ..fileio import atomic_dir, atomic_path, remove_stale_temporaries, write_json
from ..model import ModelOutput, SqueezeBertForPreTraining
from ..tokenizer import Tokenizer
from ..train.loop import Trainer, TrainingArgs, seed_everything
from .config import PretrainConfig, PretrainConfigError

log = logging.getLogger(__name__)


class PretrainingObjective(nn.Module):
    """MLM + SOP on a ``SqueezeBertForPreTraining``, decoding only the masked positions.

    The vocabulary projection is the largest matrix product of a small model (hidden x 30k per token); computing it
    for the ~15% masked positions instead of every position is what BERT's own pretraining code does. Returns the
    MLM loss as a *sum* (normalised by the global masked-token count in :func:`pretraining_loss`, so N processes
    optimise exactly the single-process objective) and the SOP loss as a mean over sequences.
    """

    def __init__(self, model: SqueezeBertForPreTraining):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor, labels: Tensor,
                sop_labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        encoded = self.model.transformer(input_ids, attention_mask, token_type_ids)
        selected = labels != IGNORE_INDEX                                       # (B, S)
        targets = labels[selected]                                              # (M,)
        hidden = encoded.last_hidden_state[selected]                            # (B, S, H) -> (M, H)
        # the model's own head, on the masked positions' states only; the losses are reduced here (see above)
        out = self.model.head(ModelOutput(last_hidden_state=hidden, pooler_output=encoded.pooler_output), None)
        logits = out.logits                                                     # (M, V)
        mlm_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        sop_logits = out.sop_logits.float()                                     # (B, 2)
        sop_loss = F.cross_entropy(sop_logits, sop_labels)
        mlm_correct = (logits.argmax(-1) == targets).sum()
        sop_correct = (sop_logits.argmax(-1) == sop_labels).sum()
        return mlm_sum, selected.sum(), mlm_correct, sop_loss, sop_correct


class TokenMeter:
    """Counts real (non-padding) tokens this process trained on, for tokens/s."""

    def __init__(self) -> None:
        self.tokens = 0


def pretraining_loss(meter: TokenMeter) -> Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict]]:
    def loss_fn(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        mlm_sum, masked, mlm_correct, sop_loss, sop_correct = model(**batch)
        total = masked.detach().float()
        world = 1
        if dist.is_available() and dist.is_initialized():
            # DDP averages gradients over processes; scaling the local sum by world / (global count) makes that
            # average the mean over every masked token of the global micro-batch, as one process computes it.
            world = dist.get_world_size()
            dist.all_reduce(total)
        loss = mlm_sum * (world / total.clamp(min=1.0)) + sop_loss
        meter.tokens += int(batch["attention_mask"].sum())
        n, b = max(1, int(masked)), len(batch["sop_labels"])
        return loss, {"mlm_loss": float(mlm_sum.detach()) / n, "mlm_acc": float(mlm_correct) / n,
                      "sop_loss": float(sop_loss.detach()), "sop_acc": float(sop_correct) / b}

    return loss_fn


def evaluate_on(batches: Callable[[], list[dict[str, Tensor]]], device: torch.device):
    """MLM loss/accuracy over all masked tokens and SOP accuracy of a fixed held-out set (built on first use)."""
    cache: list[list[dict[str, Tensor]]] = []

    def evaluate(objective: nn.Module) -> dict[str, float]:
        if not cache:
            cache.append(batches())
        mlm, masked, correct, sop_right, sequences = 0.0, 0, 0, 0, 0
        for batch in cache[0]:
            batch = {k: v.to(device) for k, v in batch.items()}
            mlm_sum, n, c, _, sop_c = objective(**batch)
            mlm, masked, correct = mlm + float(mlm_sum), masked + int(n), correct + int(c)
            sop_right, sequences = sop_right + int(sop_c), sequences + len(batch["sop_labels"])
        return {"mlm_loss": mlm / masked, "mlm_acc": correct / masked, "perplexity": math.exp(min(50.0, mlm / masked)),
                "sop_acc": sop_right / sequences}

    return evaluate


def setup_distributed(device: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether we started the process group). torchrun's env sets WORLD_SIZE etc."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    started = False
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        started = True
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dev, started
    return 0, 1, dev, started


def load_tokenizer(path: str) -> Tokenizer:
    return Tokenizer.from_pretrained(path) if Path(path).is_dir() else Tokenizer.from_vocab(path)


def build_model(config: PretrainConfig, tokenizer: Tokenizer) -> SqueezeBertForPreTraining:
    # Seeded first: the same initial weights on every rank and every run, fresh heads of init_from included (DDP
    # also broadcasts rank 0's).
    seed_everything(config.seed)
    if config.init_from:  # [model] overrides apply on top of the checkpoint's config (e.g. dropout)
        return load_model(config.init_from, model_class=SqueezeBertForPreTraining, **config.model).train()
    model_config = preset(config.model_preset, **config.model)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise PretrainConfigError(f"the vocabulary has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                                  f"{model_config.vocab_size}")
    longest = max(p.seq_len for p in config.phases)
    if longest > model_config.max_position_embeddings:
        raise PretrainConfigError(f"phase seq_len {longest} exceeds max_position_embeddings "
                                  f"{model_config.max_position_embeddings}")
    model = SqueezeBertForPreTraining(model_config)
    if config.position_init == "sinusoidal":
        table = model.transformer.embeddings.position_embeddings.weight
        with torch.no_grad():
            table.copy_(sinusoidal_positions(*table.shape) * model_config.initializer_range)
    return model


def sinusoidal_positions(positions: int, dim: int) -> Tensor:
    """The Transformer's position table, scaled to unit variance per element (the normal init's scale after
    multiplying by initializer_range): row p is sin/cos of p / 10000^(2i/dim), interleaved."""
    angles = torch.arange(positions, dtype=torch.float64)[:, None] / 10000 ** (torch.arange(0, dim, 2) / dim)
    table = torch.zeros(positions, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(angles), torch.cos(angles[:, : dim // 2])
    return (table * math.sqrt(2)).float()


def save_initial(config: PretrainConfig, directory: str | Path) -> Path:
    """Write the weights a run of ``config`` would start from (same seed, no step taken): the "same model from scratch"
    that a fine-tuning comparison needs, so the two differ only by pretraining."""
    config.check()
    tokenizer = load_tokenizer(config.vocab)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(directory) as tmp:
        save_model(build_model(config, tokenizer), tmp, tokenizer=tokenizer)
    return directory


def pretrain(config: PretrainConfig) -> dict[str, Any]:
    """Run every phase (resuming where a previous run stopped); returns the summary also written to summary.json."""
    config.check()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    rank, world, device, started = setup_distributed(config.device)
    try:
        return _pretrain(config, rank, world, device)
    finally:
        if started:
            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(config.vocab)
    files = expand_corpus(config.corpus)
    eval_files = expand_corpus(config.eval_corpus) if config.eval_corpus else []
    model = build_model(config, tokenizer)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # a kill while writing final/ or summary.json (phases clean their own)
        write_json(out / "pretrain_config.json", config.to_dict())
    phases: list[dict[str, Any]] = []
    load_from: Path | None = None
    for i in range(len(config.phases)):
        phase_dir = out / f"phase{i + 1}"
        done = phase_dir / "done.json"
        if config.resume and done.exists():
            phases.append(json.loads(done.read_text()))
            load_from = phase_dir / "final"
            log.info("phase %d already done (%s); skipping", i + 1, done)
            continue
        if load_from is not None:
            model = load_model(load_from, model_class=SqueezeBertForPreTraining).train()
            load_from = None
        summary = _run_phase(config, i, model, tokenizer, files, eval_files, phase_dir, rank, world, device)
        phases.append(summary)
    final = out / "final"
    last = out / f"phase{len(config.phases)}" / "final"
    result = {"phases": phases, "final_model": str(final), "config": asdict(config)}
    if rank == 0:
        with atomic_dir(final) as tmp:
            shutil.copytree(last, tmp, dirs_exist_ok=True)
        plot_pretraining(out, len(config.phases))
        write_json(out / "summary.json", result)
    return result


def _run_phase(config: PretrainConfig, i: int, model: SqueezeBertForPreTraining, tokenizer: Any, files: list,
               eval_files: list, phase_dir: Path, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    """Phase ``i`` (0-based) with the one training loop; writes ``phase_dir/final`` and ``done.json`` on rank 0 and
    returns the phase's summary."""
    phase, done = config.phases[i], phase_dir / "done.json"
    if phase.global_batch % (phase.micro_batch * world):
        raise PretrainConfigError(f"phases[{i}]: global_batch {phase.global_batch} is not a multiple of "
                                  f"micro_batch x processes ({phase.micro_batch} x {world})")
    accum = phase.global_batch // (phase.micro_batch * world)
    data_options = dict(mask_prob=config.mask_prob, max_predictions=phase.max_predictions,
                        whole_word_mask=config.whole_word_mask, short_seq_prob=config.short_seq_prob,
                        documents=config.documents, part_bytes=config.part_bytes)
    batches = PretrainingBatches(files, tokenizer, phase.seq_len, phase.micro_batch, seed=config.seed + i,
                                 streams=config.streams, rank=rank, world_size=world,
                                 shuffle_buffer=config.shuffle_buffer, **data_options)
    evaluate = None
    if eval_files:  # every rank passes one (the loop runs it on rank 0 and broadcasts the result)
        evaluate = evaluate_on(lambda seq_len=phase.seq_len, seed=config.seed + 1000 + i: fixed_batches(
            eval_files, tokenizer, seq_len, config.eval_examples, seed=seed, shuffle_buffer=1, **data_options),
            device)
    args = TrainingArgs(
        output_dir=str(phase_dir), max_steps=phase.steps, lr=phase.lr, warmup=phase.warmup,
        schedule=config.schedule, optimizer=config.optimizer, weight_decay=config.weight_decay, grad_accum=accum,
        max_grad_norm=config.max_grad_norm, precision=config.precision, eval_every=config.eval_every,
        save_every=config.save_every, keep_checkpoints=config.keep_checkpoints, log_every=config.log_every,
        seed=config.seed + i, progress=config.progress and rank == 0, device=str(device))
    meter = TokenMeter()
    trainer = Trainer(PretrainingObjective(model), args, batches, evaluate=evaluate,
                      loss_fn=pretraining_loss(meter),
                      save_model=lambda objective, d: save_model(objective.model, d, tokenizer=tokenizer),
                      settings={"model_preset": config.model_preset, "model": config.model,
                                "init_from": config.init_from, "vocab": config.vocab, **data_options})
    if rank == 0:
        log.info("phase %d: seq_len %d, %d steps of %d sequences (%d per process x %d processes x %d "
                 "accumulation) -> %s", i + 1, phase.seq_len, phase.steps, phase.global_batch, phase.micro_batch,
                 world, accum, phase_dir)
    t0 = time.perf_counter()
    result = trainer.train(resume=config.resume)
    seconds = time.perf_counter() - t0
    tokens = torch.tensor([float(meter.tokens)], device=device)
    if world > 1:
        dist.all_reduce(tokens)
    final_eval = {k[5:]: v for k, v in result.history[-1].items() if k.startswith("eval_")} \
        if result.history and "eval" in result.history[-1] else {}
    summary = {"phase": i + 1, "seq_len": phase.seq_len, "steps": result.steps, "global_batch": phase.global_batch,
               "world_size": world, "device": str(device), "precision": config.precision,
               "session_seconds": round(seconds, 2), "session_tokens": int(tokens.item()),
               "tokens_per_s": round(tokens.item() / seconds, 1) if seconds > 0 else None,
               "wall_seconds_total": round(result.wall_seconds, 2), "final_eval": final_eval,
               "last_checkpoint": result.last_dir}
    if rank == 0:
        with atomic_dir(phase_dir / "final") as tmp:
            save_model(model, tmp, tokenizer=tokenizer)
        write_json(done, summary)
        log.info("phase %d done: %s", i + 1, json.dumps(summary))
    if world > 1:
        dist.barrier()  # the next phase (or a restarted worker) may read phaseN/final
    return summary


def read_history(out: Path, phases: int) -> list[dict[str, Any]]:
    """Every phase's log rows with a global step (phase offsets added) and the phase number."""
    import csv

    rows, offset = [], 0
    for i in range(phases):
        path = out / f"phase{i + 1}" / "log.csv"
        if not path.exists():
            continue
        last = 0
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                values = {k: float(v) for k, v in row.items() if v not in ("", "True", "False")}
                values["global_step"] = offset + values["step"]
                values["phase"] = i + 1
                last = max(last, int(values["step"]))
                rows.append(values)
        offset += last
    return rows


def plot_pretraining(out: Path, phases: int) -> Path:
    """curves.png: MLM loss (train and held-out) and SOP accuracy against optimizer steps, phases marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_history(out, phases)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    series = [(left, "mlm_loss", "MLM loss"), (right, "sop_acc", "SOP accuracy")]
    for ax, key, title in series:
        train = [(r["global_step"], r[key]) for r in rows if key in r]
        held = [(r["global_step"], r[f"eval_{key}"]) for r in rows if f"eval_{key}" in r]
        if train:
            ax.plot(*zip(*train), label="train (logged window, rank 0)")
        if held:
            ax.plot(*zip(*held), "o-", label="held-out")
        for i in range(1, phases):
            starts = [r["global_step"] - r["step"] for r in rows if r["phase"] == i + 1]
            if starts:
                ax.axvline(starts[0], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("optimizer step")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    path = out / "curves.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


__all__ = ["PretrainingObjective", "plot_pretraining", "pretrain", "pretraining_loss", "save_initial",
           "setup_distributed"]
