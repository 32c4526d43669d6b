"""The one recipe skeleton: load the data -> build the model -> train with the one loop -> evaluate -> write results.

:class:`Recipe` runs those steps for a typed config (``squeezebert/recipe_config.py``); fine-tuning
(``run.py``) and distillation (``distill/distill.py``) are subclasses that fill in only what differs: where the
tokenizer comes from, the model to train, the loss, and their own results fields. A run writes to the config's
``output_dir``:

    best/              the best model by the recipe's metric (the task's; general distillation: the lowest
                       held-out loss), else the last (HF layout + tokenizer + model card): what to use after
    checkpoints/       resumable step checkpoints (model + tokenizer + training_state.pt)
    log.csv, tensorboard/, curve.png, trainer_args.json   (from the training loop)
    results.json       the recipe's fields, then costs, data sizes, settings and provenance (:func:`run_record`)

It lives beside the task layer it loads from (``tasks.py``); pretraining streams a corpus phase by phase and keeps
its own flow (``pretrain/run.py``) over the same loop.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..assets import shared_data_dir
from ..checkpoint import save_model
from ..config import PRESETS
from ..fileio import write_json
from ..model_card import write_model_card
from ..recipe_config import RecipeConfig, loop_settings
from ..tokenizer import Tokenizer
from ..train.loop import LossFn, ShuffledBatches, Trainer, TrainingArgs, TrainResult, seed_everything
from .tasks import TaskData, load_task

log = logging.getLogger(__name__)

BERT_VOCAB = "bert-base-uncased-vocab.txt"  # in the shared data folder: the default vocabulary for presets
RESULTS_NAME = "results.json"


class Recipe:
    """A training run of ``config``. Subclasses implement the hooks that raise NotImplementedError (the tokenizer,
    the model, the saved models' card, the settings a resume keeps, the results fields) and override the others
    where they differ; ``command`` (the command line that ran) goes into the results and model cards."""

    def __init__(self, config: RecipeConfig, command: str | None = None):
        self.config, self.command = config, command
        self.out = Path(config.output_dir)
        self.data: TaskData | None = None  # None: no labelled task (general distillation)

    # ---- the hooks --------------------------------------------------------------------------------------------
    def load_tokenizer(self) -> Tokenizer:
        raise NotImplementedError

    def load_data(self) -> None:
        """Set ``data``; refuse a task without training examples."""
        c = self.config
        self.data = load_task(c.task, c.data_dir, self.tokenizer, max_length=c.max_length,
                              limit_train=c.limit_train, limit_eval=c.limit_eval, **c.load_options())
        if not self.data.train:
            raise FileNotFoundError(f"{self.data.name}: no training examples (looked for "
                                    f"{self.data.split_files('train')}); pass data_dir with a train file, or "
                                    "train_file")

    def prepare(self) -> None:
        """What the model is built from, besides the data (distillation: the teacher); before seeding."""

    def build(self) -> nn.Module:
        """The model to train (called after seeding, so a fresh model or head is part of the seeded run)."""
        raise NotImplementedError

    def loss(self) -> tuple[LossFn | None, dict[str, nn.Module] | None]:
        """The loss function and extra trainable modules; default: the model's own loss."""
        return None, None

    def card(self) -> dict[str, Any]:
        """``save_model`` options for every model the run saves (the model card's fields under ``card``)."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The recipe's settings a resumed run must keep (besides the loop's and the data's)."""
        raise NotImplementedError

    def fields(self, result: TrainResult, evals: list[dict], best: dict | None, dev: dict | None) -> dict[str, Any]:
        """The recipe's own results fields, first in results.json."""
        raise NotImplementedError

    # ---- the skeleton -----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train, evaluate and write ``results.json``; return the results."""
        started = time.perf_counter()
        self.tokenizer = self.load_tokenizer()
        self.load_data()
        self.prepare()
        seed_everything(self.config.seed)
        self.model = self.build()
        result = self.train()
        evals, best = evaluations(result, self.metric)
        dev = {k: v for k, v in best.items() if k != "step"} if best else None
        c = self.config
        results = self.fields(result, evals, best, dev) | run_record(
            result, self.data, self.out, started, self.command, max_length=c.max_length, batch_size=c.batch_size,
            group_by_length=c.group_by_length)
        if results["model_dir"] and dev:  # the card of the model to use gets its scores
            write_model_card(results["model_dir"], self.model.config.replace(architectures=[self.model.architecture]),
                             metrics={f"{self.score_label} {k}": v for k, v in dev.items()}, **self.card()["card"])
        write_json(self.out / RESULTS_NAME, results)
        return results

    @property
    def has_dev(self) -> bool:
        return self.data is not None and bool(self.data.evals)

    @property
    def metric(self) -> str | None:
        """The dev score that picks the best model (None: no dev scores, the last model is kept)."""
        return self.data.metric if self.has_dev else None

    greater_is_better = True  # of ``metric``
    score_label = "dev"  # what the model card calls the scores of ``metric``'s evaluation

    def dev_scores(self, model: nn.Module) -> dict[str, float] | None:
        return self.data.evaluate(model, "dev", self.config.eval_batch_size) if self.has_dev else None

    def train(self) -> TrainResult:
        loop = loop_settings(self.config)
        if self.data is not None and not self.has_dev:
            log.warning("%s: no dev split found: training without evaluation, the last model is kept", self.data.name)
            loop["patience"] = None
        args = TrainingArgs(output_dir=str(self.out), metric=self.metric, greater_is_better=self.greater_is_better,
                            **loop)
        features, collate = self.training_set()
        batches = ShuffledBatches(features, self.config.batch_size, collate, seed=args.seed,
                                  group_by_length=self.config.group_by_length)
        loss_fn, extra_modules = self.loss()
        save = self.card()
        trainer = Trainer(self.model, args, batches, evaluate=self.dev_scores if self.has_dev else None,
                          loss_fn=loss_fn, extra_modules=extra_modules,
                          save_model=lambda m, directory: save_model(m, directory, tokenizer=self.tokenizer, **save),
                          settings=run_settings(**self.settings()))
        return trainer.train(resume=self.config.resume)

    def training_set(self) -> tuple[list[dict], Callable[[list[dict]], dict[str, torch.Tensor]]]:
        """The training features and their collate function."""
        return self.data.train, self.data.collate


# ---------------------------------------------------------------------------------------------- pieces


def load_tokenizer(model: str | os.PathLike, tokenizer: str | os.PathLike | None = None) -> Tokenizer:
    """``tokenizer`` (a directory or a ``vocab.txt``) if given; else the checkpoint directory's own; for a preset
    name, the BERT uncased vocabulary from the shared data folder."""
    if tokenizer is not None:
        path = Path(tokenizer)
        return Tokenizer.from_vocab(path) if path.is_file() else Tokenizer.from_pretrained(path)
    if Path(model).is_dir():
        return Tokenizer.from_pretrained(model)
    shared = shared_data_dir()
    if str(model) in PRESETS and shared is not None and (shared / BERT_VOCAB).is_file():
        return Tokenizer.from_vocab(shared / BERT_VOCAB)
    raise FileNotFoundError(f"no tokenizer for {model!r}: pass tokenizer= (a directory or a vocab.txt)")


def task_config(data: TaskData) -> dict[str, Any]:
    """The config fields the task's head needs: label count and names, problem type."""
    fields: dict[str, Any] = {"num_labels": data.num_labels, "id2label": data.id2label}
    if data.problem_type is not None:
        fields["problem_type"] = data.problem_type
    return fields


def evaluations(result: TrainResult, metric: str | None) -> tuple[list[dict], dict | None]:
    """Every evaluation a run logged (metrics + step), and the one that gave its best ``metric`` (None without)."""
    evals = [{k[len("eval_"):]: v for k, v in row.items() if k.startswith("eval_")} | {"step": row["step"]}
             for row in result.history if row.get("eval")]
    best = next((row for row in evals if metric and row.get(metric) == result.best_metric), None)
    return evals, best


def run_settings(**settings: Any) -> dict[str, Any]:
    """A recipe's settings for the Trainer's resume check (paths normalised: ``./x`` is ``x``)."""
    return {k: os.path.normpath(v) if isinstance(v, (str, os.PathLike)) and Path(v).exists() else v
            for k, v in settings.items()}


def machine() -> dict[str, Any]:
    from ..infer.fast import cpu_class  # figures differ by CPU class (AVX2, AVX-512, AMX): every record names it

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_class": cpu_class(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def run_record(result: TrainResult, data: TaskData | None, out: Path, started: float, command: str | None,
               **settings: Any) -> dict[str, Any]:
    """The fields every training recipe's results.json ends with: costs, data sizes, settings, provenance."""
    record: dict[str, Any] = {"steps": result.steps, "epochs": round(result.epochs_done, 4),
                              "stopped_early": result.stopped_early,
                              "train_wall_seconds": round(result.wall_seconds, 2),
                              "wall_seconds": round(time.perf_counter() - started, 2)}
    if data is not None:
        record |= {"train_examples": len(data.train),  # features (QA: windows)
                   "eval_examples": {split: len(examples) for split, examples in data.examples.items()},
                   "files": data.files}
    return record | settings | {
        "training_args": json.loads((out / "trainer_args.json").read_text()),
        "command": command,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
    }


__all__ = ["RESULTS_NAME", "Recipe", "evaluations", "load_tokenizer", "run_record", "run_settings", "task_config"]
