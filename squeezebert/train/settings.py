"""The training loop's settings, as one typed dataclass that both the loop (``TrainingArgs`` adds the output
directory and the metric) and every recipe config (``recipe_config.py``) extend, so a default is written once.
Torch-free: the command line generates its flags from these fields."""

from __future__ import annotations

from dataclasses import dataclass

from ..precision import TRAINING_PRECISIONS
from ..typed_config import option

SCHEDULES = ("linear", "constant", "cosine")


@dataclass(kw_only=True)
class LoopSettings:
    epochs: float = option(3.0, "training epochs; ignored with --max-steps")
    max_steps: int | None = option(None, "optimizer steps")
    lr: float = option(5e-5, "peak learning rate")
    weight_decay: float = option(0.01, "decoupled weight decay of the weight matrices")
    warmup: float = option(0.1, "warm-up: fraction of steps (<1) or steps")
    schedule: str = "linear"  # one of SCHEDULES, after the warm-up
    optimizer: str = "adamw"  # adamw | lamb
    grad_accum: int = option(1, "micro-batches per optimizer step")
    max_grad_norm: float | None = 1.0
    precision: str = option("fp32", "autocast dtype of the training forward pass: bf16 on CPU or GPU, fp16 on GPU "
                            "only (the weights stay fp32)", choices=TRAINING_PRECISIONS)
    eval_every: int | None = option(None, "evaluate (and checkpoint) every N steps (default: every epoch)")
    save_every: int | None = None  # checkpoint every N steps besides evaluations
    patience: int | None = option(None, "stop after N evaluations without improvement")
    keep_checkpoints: int = 1
    log_every: int = 10
    seed: int = option(42, "seed of the fresh weights, the data order and dropout")
    progress: bool = option(True, "no progress bar")
    device: str = option("cpu", "torch device (cpu, cuda, cuda:1, ...)")
    compile: bool = option(False, "torch.compile the training forward and loss (a C++ compiler is needed on CPU; "
                                  "the first step compiles for ~10 s, the first of another length ~45 s)")

    def __post_init__(self) -> None:
        problems = []
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in TRAINING_PRECISIONS:
            problems.append(f"precision must be one of {TRAINING_PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            problems.append("precision fp16 needs a CUDA device (use bf16 on CPU)")
        for name in ("grad_accum", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "eval_every", "save_every", "patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1 or unset, got {value}")
        if self.max_steps is None and not self.epochs > 0:
            problems.append(f"epochs must be > 0 when max_steps is unset, got {self.epochs}")
        if self.lr <= 0 or self.warmup < 0 or self.weight_decay < 0:
            problems.append("lr must be > 0, warmup and weight_decay >= 0")
        if problems:
            raise ValueError("bad training arguments: " + "; ".join(problems))


__all__ = ["SCHEDULES", "LoopSettings"]
