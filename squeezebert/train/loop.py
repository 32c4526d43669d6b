"""The one training loop, shared by fine-tuning, distillation and pretraining.

Everything task-specific comes in from outside: a resumable source of micro-batches (:class:`Batches`), an optional
``loss_fn`` (default: the model's own ``.loss``), an optional ``evaluate`` returning metrics, and optional extra
trainable modules (e.g. distillation projections). The loop owns the rest: AdamW/LAMB with no decay on biases and
LayerNorms, warm-up + decay, accumulation, clipping, bf16 autocast, evaluation, best-model keeping, early stopping,
progress, CSV/TensorBoard logs, a learning-curve PNG, DDP when ``torch.distributed`` is initialised, and checkpoints
that make a resumed run (even after SIGKILL) end with the same parameters as an uninterrupted one.

Checkpoint layout (``output_dir/checkpoints/``): ``step-000120/`` holds the model (HF layout, via ``save_model``,
for users) and ``training_state.pt`` (the exact model state, optimizer, scheduler, extra modules, data position, RNG states, counters); it is written
to a temporary sibling, every file fsynced, and renamed, and only then does the text file ``latest`` (replaced
atomically) point at it. A crash at any moment leaves ``latest`` naming a complete checkpoint; temporaries a kill
left behind are removed at the next start. A resume whose settings (:data:`RUN_FIELDS`, the data's batch size,
seed and size, the recipe's own settings) differ from the checkpoint's is refused with the list of differences.
See docs/design/training-loop.md.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..fileio import atomic_dir, atomic_path, remove_stale_temporaries, write_json, write_text
from .memory import keep_freed_memory
from .optim import build_optimizer
from .settings import LoopSettings

STATE_NAME = "training_state.pt"
# TrainingArgs fields that decide what a run computes: a resume must keep them. The others (progress, logging and
# checkpoint cadence, the device, the output directory) may change between the runs of one job.
RUN_FIELDS = ("epochs", "max_steps", "lr", "weight_decay", "warmup", "schedule", "optimizer", "grad_accum",
              "max_grad_norm", "precision", "eval_every", "metric", "greater_is_better", "patience", "seed")


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss, an unusable checkpoint, inconsistent arguments)."""


@dataclass(kw_only=True)
class TrainingArgs(LoopSettings):
    """The loop's settings (defaults and checks in :class:`LoopSettings`) plus what the recipe decides for a run."""

    output_dir: str
    metric: str | None = None  # the evaluation metric that picks the best model; None: keep the last
    greater_is_better: bool = True


class Batches(Protocol):
    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...
    def __len__(self) -> int: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def set_epoch(self, epoch: int) -> None: ...


class ShuffledBatches:
    """In-memory features -> micro-batches, reshuffled every epoch from ``seed + epoch``.

    With ``world_size`` > 1 each global batch of ``batch_size * world_size`` examples is cut into equal per-rank
    slices, so N ranks see exactly what one process with the global batch sees (DDP's gradient average then equals
    the single-process mean). A final partial global batch too small to give every rank an example is dropped.

    ``group_by_length``: within each shuffled window of ``GROUP_WINDOW`` batches, examples are sorted by length before
    being cut into batches, and the batches of the window are shuffled again. Each batch then pads to about its own
    rows' length (SST-2 at 64 tokens: 2.5x fewer padded tokens than random batches) while every epoch still sees
    the data in a new random order (Hugging Face's ``group_by_length`` works the same way).
    """

    GROUP_WINDOW = 50  # batches per sorted window: large enough to group lengths, small enough to stay random

    def __init__(self, features: Sequence[dict], batch_size: int, collate: Callable[[list[dict]], dict[str, Tensor]],
                 seed: int = 42, shuffle: bool = True, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 group_by_length: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if len(features) == 0:
            raise ValueError("no training examples")
        self.features, self.batch_size, self.collate = features, batch_size, collate
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.group_by_length = group_by_length
        self.epoch, self.position = 0, 0

    def _global_batches(self) -> list[list[int]]:
        n = len(self.features)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        size = self.batch_size * self.world_size
        if self.group_by_length:
            order = self._grouped(order, size, generator)
        chunks = [order[i:i + size] for i in range(0, n, size)]
        if chunks and len(chunks[-1]) < (size if self.drop_last else self.world_size):
            chunks.pop()
        return chunks

    def _grouped(self, order: list[int], size: int, generator: torch.Generator) -> list[int]:
        """``order`` with each window of ``GROUP_WINDOW`` batches sorted by length and its batches reshuffled."""
        window = size * self.GROUP_WINDOW
        grouped: list[int] = []
        for start in range(0, len(order), window):
            part = sorted(order[start:start + window], key=lambda i: len(self.features[i]["input_ids"]))
            batches = [part[i:i + size] for i in range(0, len(part), size)]
            full = [b for b in batches if len(b) == size]  # a short last batch stays last: only it may be dropped
            if self.shuffle:
                full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
            grouped += [i for b in full + [b for b in batches if len(b) < size] for i in b]
        return grouped

    def _slice(self, chunk: list[int]) -> list[int]:
        if self.world_size == 1:
            return chunk
        return [int(i) for i in np.array_split(np.asarray(chunk), self.world_size)[self.rank]]

    def __len__(self) -> int:
        n, size = len(self.features), self.batch_size * self.world_size
        full, rest = divmod(n, size)
        return full + (rest >= (size if self.drop_last else self.world_size))

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        chunks = self._global_batches()
        while self.position < len(chunks):
            chunk = chunks[self.position]
            self.position += 1  # counted before yielding: a checkpoint taken after this batch resumes past it
            yield self.collate([self.features[i] for i in self._slice(chunk)])

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def settings(self) -> dict:
        """What decides the batches' order and shapes; a resumed run must have the same (see Trainer)."""
        return {"batch_size": self.batch_size, "data_seed": self.seed, "shuffle": self.shuffle,
                "drop_last": self.drop_last, "group_by_length": self.group_by_length,
                "train_examples": len(self.features)}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "num_features": len(self.features)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("num_features") != len(self.features):
            raise TrainingError(f"the checkpoint was trained on {state.get('num_features')} examples but the data "
                                f"now has {len(self.features)}: resuming would not continue the same run")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


LossFn = Callable[[nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]


def training_autocast(device: torch.device, precision: str) -> Any:
    """The context the training forward runs in: autocast to bf16 or fp16 (the weights stay fp32), none for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def model_loss(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    out = model(**batch)
    if out.loss is None:
        raise TrainingError("the model returned no loss: does the batch carry labels?")
    return out.loss, {}


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    best_metric: float | None
    best_dir: str | None
    last_dir: str
    history: list[dict] = field(default_factory=list)
    wall_seconds: float = 0.0
    stopped_early: bool = False


def schedule_factor(kind: str, step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant, linear or cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(modules: Sequence[nn.Module], weight_decay: float) -> list[dict]:
    """Decay matrices only: biases and LayerNorm/embedding-norm vectors (every parameter with < 2 dims) are exempt."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:  # tied weights appear once
                seen.add(id(p))
                (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:  # random.setstate wants the nested tuples it gave
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy. Recipes call it before building anything random (a fresh model or head,
    distillation projections), so one seed fixes the whole run; the Trainer calls it again for the training itself."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def settings_differences(saved: dict, current: dict) -> list[str]:
    """``name: saved -> current`` for every setting that differs (one missing on either side counts)."""
    return [f"{name}: {saved.get(name, '(unset)')!r} -> {current.get(name, '(unset)')!r}"
            for name in sorted(set(saved) | set(current), key=str) if saved.get(name) != current.get(name)]


def _default_save(model: nn.Module, directory: str) -> None:
    from ..checkpoint import save_model

    save_model(model, directory)


class Trainer:
    """``settings``: the recipe's own settings that define the run (task, max length, teacher, ...); with the
    training arguments in :data:`RUN_FIELDS` and the data's ``settings()`` they are stored in every checkpoint, and
    resuming with different ones is a TrainingError listing the differences."""

    def __init__(self, model: nn.Module, args: TrainingArgs, train: Batches,
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None, loss_fn: LossFn | None = None,
                 extra_modules: dict[str, nn.Module] | None = None,
                 save_model: Callable[[nn.Module, str], None] | None = None, settings: dict[str, Any] | None = None):
        self.args, self.train_batches, self.evaluate_fn = args, train, evaluate
        self.loss_fn = loss_fn or model_loss
        # torch.compile (inductor) fuses dropout's masks, GELU, LayerNorm and the loss terms' elementwise work; the
        # first step compiles, and once lengths change PyTorch marks them dynamic, so variable-length batches compile
        # about twice, not once per length. Measured in benchmarks/distill_step.py (docs/distillation.md).
        self.step_fn = torch.compile(self.loss_fn) if args.compile else self.loss_fn
        self.save_fn = save_model or _default_save
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        self.device = torch.device(args.device)
        self.out = Path(args.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        if args.metric is None and args.patience is not None:
            raise ValueError("patience (early stopping) needs a metric")
        if evaluate is None and args.metric is not None:
            raise ValueError(f"metric {args.metric!r} given but no evaluate function")

        # Seed before anything random here (dropout masks); the caller seeded before building the model.
        seed_everything(args.seed)
        self.settings = self._run_settings(settings or {})
        self.model = model.to(self.device)
        self.extra = nn.ModuleDict(extra_modules or {}).to(self.device)
        self.wrapped: nn.Module = self.model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(self.model)

        try:
            steps_per_epoch = math.ceil(len(train) / args.grad_accum)
        except TypeError:
            steps_per_epoch = None
        if args.max_steps is not None:
            self.total_steps = args.max_steps
        elif steps_per_epoch is None:
            raise ValueError("the training data has no length (streaming): set max_steps")
        else:
            self.total_steps = max(1, math.ceil(args.epochs * steps_per_epoch))
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = int(args.warmup) if args.warmup >= 1 else int(round(args.warmup * self.total_steps))

        groups = parameter_groups([self.model, self.extra], args.weight_decay)
        self.optimizer = build_optimizer(args.optimizer, groups, lr=args.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: schedule_factor(args.schedule, s, self.warmup_steps, self.total_steps))
        self.scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" else None

        self.step = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.history: list[dict] = []
        self.wall_before = 0.0  # training seconds of the earlier runs of this job (from the checkpoint)
        self._session_start = time.perf_counter()
        self._writer: Any = None

    def _run_settings(self, extra: dict[str, Any]) -> dict[str, Any]:
        args = asdict(self.args)
        run = {name: args[name] for name in RUN_FIELDS if not (name == "epochs" and args["max_steps"] is not None)}
        data = getattr(self.train_batches, "settings", dict)()
        # JSON round trip: what a checkpoint gives back (tuples become lists) compares equal to what we hold
        return json.loads(json.dumps(run | data | extra | {"world_size": self.world_size}, default=str))

    # ---- the loop -----------------------------------------------------------------------------------------------
    def train(self, resume: bool | str = True) -> TrainResult:
        args = self.args
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for directory in (self.out, self.ckpt_dir):  # what a kill during a save left behind
                remove_stale_temporaries(directory)
        keep_freed_memory()  # each step reuses the last one's freed memory instead of paging it in again (memory.py)
        start = self._resume_point(resume)
        if start is not None:
            self._load(start)  # refuses other settings: trainer_args.json then stays the checkpoint's
        if self.is_main:
            write_json(self.out / "trainer_args.json", asdict(args))
        self._session_start = time.perf_counter()
        # a run that stopped early and is started again stays stopped (its patience is used up)
        stopped_early, last_dir = self._patience_spent(), None
        bar = self._progress()
        self.model.train()
        self.extra.train()
        while self.step < self.total_steps and not stopped_early:
            micro, sums = 0, {}
            for batch in self.train_batches:
                loss, logs = self._forward(batch)
                self._check_finite(loss)
                scaled = loss / args.grad_accum
                sync = (micro + 1) % args.grad_accum == 0
                with (nullcontext() if sync or not self.distributed else self.wrapped.no_sync()):
                    (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                micro += 1
                sums = _accumulate(sums, {"loss": loss.item(), **logs})
                if sync:
                    stopped_early, last_dir = self._optimizer_step(micro, sums, bar)
                    micro, sums = 0, {}
                    if stopped_early or self.step >= self.total_steps:
                        break
            else:  # the epoch ran out: finish a partial accumulation, then start the next epoch
                if micro:
                    stopped_early, last_dir = self._optimizer_step(micro, sums, bar)
                self.train_batches.set_epoch(self.train_batches.state_dict()["epoch"] + 1)
                if args.eval_every is None and not stopped_early and self.step < self.total_steps:
                    stopped_early = self._evaluate()
                    last_dir = self._save() if args.save_every is None else last_dir
                continue
        if bar is not None:
            bar.close()
        # The end: a final evaluation and checkpoint unless this very step already had them.
        if not self.history or self.history[-1].get("step") != self.step or "eval" not in self.history[-1]:
            if self.evaluate_fn is not None and not stopped_early:
                self._evaluate()
        if last_dir is None or not Path(last_dir).name.endswith(f"{self.step:06d}"):
            last_dir = self._save()
        if self.args.metric is None and self.is_main:
            # Nothing picks a best model without a metric (no dev split; general distillation with --held-out 0): the
            # last one is the model to use, and users look for it where every other run puts it.
            with atomic_dir(self.out / "best") as tmp:
                self.save_fn(self.model, str(tmp))
        wall = self._wall_seconds()
        self._finish_logs()
        best_dir = str(self.out / "best") if (self.out / "best").exists() else None
        return TrainResult(self.step, self._epochs_done(), self.best, best_dir, str(last_dir), self.history, wall,
                           stopped_early)

    def _forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        try:
            with training_autocast(self.device, self.args.precision):
                loss, logs = self.step_fn(self.wrapped, batch)
        except torch._dynamo.exc.TorchDynamoException as e:  # incl. inductor's: no C++ compiler, a failed build
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise TrainingError(f"--compile: torch.compile could not build the training step ({first}); train "
                                "without --compile") from None
        return loss.float(), logs

    def _check_finite(self, loss: Tensor) -> None:
        bad = torch.tensor(0.0 if torch.isfinite(loss) else 1.0, device=self.device)
        if self.distributed:  # every rank must stop together, or the others hang in the next all-reduce
            dist.all_reduce(bad)
        if bad.item():
            latest = self._latest()
            raise TrainingError(f"non-finite loss ({loss.item()}) at step {self.step + 1}; nothing was saved from "
                                f"this step. Last good checkpoint: {latest or 'none yet'}. Lower the learning rate "
                                "or check the data.")

    def _optimizer_step(self, micro: int, sums: dict, bar: Any) -> tuple[bool, str | None]:
        args = self.args
        if self.distributed and len(self.extra):
            for p in self.extra.parameters():  # DDP syncs the model only; extra modules are averaged here
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world_size
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if args.max_grad_norm:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm))
        lr = self.scheduler.get_last_lr()[0]
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / micro:.4f}", lr=f"{lr:.2e}")
        if self.step % args.log_every == 0 or self.step == self.total_steps:
            row = {k: v / micro for k, v in sums.items()}
            row.update(lr=lr, grad_norm=grad_norm)
            self._log(row)
        stop, last_dir = False, None
        if args.eval_every and self.step % args.eval_every == 0:
            stop = self._evaluate()
        if (args.save_every and self.step % args.save_every == 0) or (
                args.save_every is None and args.eval_every and self.step % args.eval_every == 0):
            last_dir = self._save()
        return stop, last_dir

    # ---- evaluation and best model ----------------------------------------------------------------------------
    def _evaluate(self) -> bool:
        """Run evaluate (rank 0; the result is shared), keep the best model, and say whether to stop early."""
        if self.evaluate_fn is None:
            return False
        metrics: list[Any] = [None]
        if self.is_main:
            self.model.eval()
            with torch.no_grad():
                metrics[0] = {k: float(v) for k, v in self.evaluate_fn(self.model).items()}
            self.model.train()
        if self.distributed:
            dist.broadcast_object_list(metrics, src=0)
        result = metrics[0]
        self._log({f"eval_{k}": v for k, v in result.items()} | {"eval": True})
        key = self.args.metric
        if key is None:
            return False
        if key not in result:
            raise TrainingError(f"metric {key!r} not among the evaluation results {sorted(result)}")
        value = result[key]
        better = self.best is None or (value > self.best if self.args.greater_is_better else value < self.best)
        if better:
            self.best, self.bad_evals = value, 0
            if self.is_main:
                with atomic_dir(self.out / "best") as tmp:
                    self.save_fn(self.model, str(tmp))
        else:
            self.bad_evals += 1
        return self._patience_spent()

    def _patience_spent(self) -> bool:
        return self.args.patience is not None and self.bad_evals >= self.args.patience

    def _wall_seconds(self) -> float:
        """Training seconds of every run of this job so far (earlier runs' come from the checkpoint)."""
        return self.wall_before + time.perf_counter() - self._session_start

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        # The model's own state dict (exact, any nn.Module) beside the HF-layout files written for users.
        return {"model": self.model.state_dict(), "step": self.step, "best": self.best, "bad_evals": self.bad_evals,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "extra": self.extra.state_dict(), "data": self.train_batches.state_dict(), "rng": _rng_state(),
                "wall_seconds": self._wall_seconds(), "world_size": self.world_size,
                "settings": json.dumps(self.settings)}

    def _save(self) -> str:
        final = self.ckpt_dir / f"step-{self.step:06d}"
        if self.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            # atomic_dir fsyncs every file of the checkpoint before it is renamed into place, and only then does
            # ``latest`` move: after a crash, ``latest`` names a checkpoint whose files are all on disk.
            with atomic_dir(final) as tmp:
                self.save_fn(self.model, str(tmp))
                torch.save(self._state(), tmp / STATE_NAME)
            write_text(self.ckpt_dir / "latest", final.name + "\n")
            self._prune(keep=final)
        if self.distributed:
            dist.barrier()  # no rank runs ahead of a checkpoint it might need to resume from
        return str(final)

    def _prune(self, keep: Path) -> None:
        steps = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir())
        for old in steps[:-self.args.keep_checkpoints]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def _latest(self) -> Path | None:
        pointer = self.ckpt_dir / "latest"
        if not pointer.exists():
            return None
        path = self.ckpt_dir / pointer.read_text().strip()
        return path if (path / STATE_NAME).exists() else None

    def _resume_point(self, resume: bool | str) -> Path | None:
        if resume is False:
            return None
        if resume is True:
            return self._latest()
        path = Path(resume)
        if not (path / STATE_NAME).exists():
            raise TrainingError(f"{path}: not a training checkpoint (no {STATE_NAME})")
        return path

    def _load(self, path: Path) -> None:
        try:
            state = torch.load(path / STATE_NAME, weights_only=True, map_location=self.device)
        except Exception as e:  # a truncated or foreign file
            raise TrainingError(f"{path / STATE_NAME}: unreadable training state ({e})") from None
        if state.get("world_size", 1) != self.world_size:
            raise TrainingError(f"{path} was written by a run with world size {state.get('world_size')}, this run "
                                f"has {self.world_size}: the data order would differ")
        if "settings" in state:  # checkpoints from before settings were stored resume unchecked
            differences = settings_differences(json.loads(state["settings"]), self.settings)
            if differences:
                raise TrainingError(
                    f"{path}: this run's settings differ from the checkpoint's ({'; '.join(differences)}): resuming "
                    "would not continue that run. Use the checkpoint's settings, or start over with --no-resume "
                    "(resume=False; pretrain: resume=false)")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise TrainingError(f"{path}: its weights do not fit the model being trained ({e})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.extra.load_state_dict(state["extra"])
        self.train_batches.load_state_dict(state["data"])
        _set_rng_state(state["rng"])
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.wall_before = state["wall_seconds"]
        self.history = [row for row in self._read_log() if row.get("step", 0) <= self.step]

    # ---- logs -------------------------------------------------------------------------------------------------
    def _progress(self) -> Any:
        if not (self.args.progress and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)

    def _epochs_done(self) -> float:
        data = self.train_batches.state_dict()
        try:
            return data["epoch"] + data["position"] / len(self.train_batches)
        except TypeError:
            return float(data.get("epoch", 0))

    def _log(self, row: dict) -> None:
        row = {"step": self.step, "epoch": round(self._epochs_done(), 4), **row}
        self.history.append(row)
        if not self.is_main:
            return
        keys: list[str] = []
        for r in self.history:
            keys += [k for k in r if k not in keys]
        with atomic_path(self.out / "log.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        writer = self._tensorboard()
        if writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch"):
                    writer.add_scalar(k, v, self.step)

    def _tensorboard(self) -> Any:
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; the CSV log always exists
                self._writer = False
                return None
            self._writer = SummaryWriter(str(self.out / "tensorboard"))
        return self._writer or None

    def _read_log(self) -> list[dict]:
        path = self.out / "log.csv"
        if not path.exists():
            return []
        with open(path, newline="") as f:
            return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def _finish_logs(self) -> None:
        if not self.is_main:
            return
        if self._writer:
            self._writer.close()
        plot_learning_curve(self.history, self.out / "curve.png", self.args.metric)


def _accumulate(sums: dict, values: dict) -> dict:
    return {k: sums.get(k, 0.0) + float(v) for k, v in values.items()} | {
        k: v for k, v in sums.items() if k not in values}


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return True if text == "True" else text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def plot_learning_curve(history: list[dict], path: Path, metric: str | None = None) -> None:
    """Training loss (and the main evaluation metric, if any) against optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    evals = [(r["step"], r[f"eval_{metric}"]) for r in history if metric and f"eval_{metric}" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if evals:
        right = ax.twinx()
        right.plot(*zip(*evals), "o-", color="tab:orange", label=f"dev {metric}")
        right.set_ylabel(metric)
        right.legend(loc="upper right")
    if train:
        ax.legend(loc="upper left")
    ax.set_title("learning curve")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


__all__ = ["RUN_FIELDS", "Batches", "LossFn", "ShuffledBatches", "TrainResult", "Trainer", "TrainingArgs",
           "TrainingError", "parameter_groups", "plot_learning_curve", "schedule_factor", "seed_everything",
           "settings_differences", "training_autocast"]
