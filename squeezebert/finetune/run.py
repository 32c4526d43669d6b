"""The fine-tuning recipe: a checkpoint (or preset) + a task + the one training loop -> a fine-tuned model and a
results file. Also evaluation of a saved model and prediction files for a split.

Everything here is wiring: the task layer (``tasks.py``) reads, featurises and scores; ``train/loop.py`` trains,
evaluates, keeps the best model and checkpoints; ``checkpoint.py`` loads and saves. A run writes to ``output_dir``:

    best/              the best model by the task's metric (HF layout + tokenizer) -- what to use afterwards
    checkpoints/       resumable step checkpoints (model + tokenizer + training_state.pt)
    log.csv, tensorboard/, curve.png, trainer_args.json   (from the training loop)
    results.json       metrics at the best evaluation, last metrics, steps, wall time, sizes, the command
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from ..assets import shared_data_dir
from ..checkpoint import load_model, save_model
from ..config import PRESETS, preset
from ..fileio import write_json
from ..model import HEADS, SqueezeBertPreTrainedModel
from ..model_card import write_model_card
from ..tokenizer import Tokenizer
from ..train.loop import ShuffledBatches, Trainer, TrainingArgs, TrainResult, seed_everything
from .tasks import TaskData, canonical_task, load_task

log = logging.getLogger(__name__)

BERT_VOCAB = "bert-base-uncased-vocab.txt"  # in the shared data folder: the default vocabulary for presets
RESULTS_NAME = "results.json"


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


def build_model(model: str | os.PathLike, data: TaskData, tokenizer: Tokenizer) -> SqueezeBertPreTrainedModel:
    """A checkpoint directory loaded with the task's head (a fresh head where the checkpoint has none, reported by
    ``load_model``), or a preset name built from scratch with the tokenizer's vocabulary size."""
    fields = task_config(data)
    if Path(model).is_dir():
        built = load_model(model, head=data.head, **fields)
    elif str(model) in PRESETS:
        built = HEADS[data.head](preset(str(model), vocab_size=tokenizer.vocab_size, **fields))
    else:
        raise FileNotFoundError(f"{model!r} is neither a checkpoint directory nor a preset "
                                f"({', '.join(PRESETS)})")
    if tokenizer.vocab_size > built.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{built.config.vocab_size}: they do not belong together")
    return built


def _model_labels(model_dir: Path, task: str) -> dict[str, Any]:
    """For tasks whose label set comes from data (NER, your own table), the saved model's labels fix it, so
    evaluation maps tags to the ids the model was trained with."""
    name = canonical_task(task)
    if name not in ("table", "conll"):
        return {}
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if name == "table" and config.get("problem_type") == "regression":
        return {"regression": True}
    id2label = config.get("id2label") or {}
    return {"labels": [id2label[k] for k in sorted(id2label, key=int)]} if id2label else {}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def evaluations(result: TrainResult, data: TaskData) -> tuple[list[dict], dict | None]:
    """Every evaluation a run logged (metrics + step), and the one that gave its best metric (None without dev)."""
    evals = [{k[len("eval_"):]: v for k, v in row.items() if k.startswith("eval_")} | {"step": row["step"]}
             for row in result.history if row.get("eval")]
    best = next((row for row in evals if data.evals and row.get(data.metric) == result.best_metric), None)
    return evals, best


def run_settings(**settings: Any) -> dict[str, Any]:
    """A recipe's settings for the Trainer's resume check (paths normalised: ``./x`` is ``x``)."""
    return {k: os.path.normpath(v) if isinstance(v, (str, os.PathLike)) and Path(v).exists() else v
            for k, v in settings.items()}


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


# ---------------------------------------------------------------------------------------------- the flows


def finetune(model: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, output_dir: str | os.PathLike,
             *, tokenizer: str | os.PathLike | None = None, max_length: int = 128, batch_size: int = 32,
             eval_batch_size: int = 64, limit_train: int | None = None, limit_eval: int | None = None,
             task_options: dict[str, Any] | None = None, resume: bool | str = True, command: str | None = None,
             group_by_length: bool = True, **training: Any) -> dict[str, Any]:
    """Fine-tune ``model`` (a checkpoint directory or a preset name) on ``task`` and return the results dict that
    is also written to ``output_dir/results.json``.

    ``training`` goes to :class:`~squeezebert.train.loop.TrainingArgs` (``epochs``, ``max_steps``, ``lr``,
    ``warmup``, ``eval_every``, ``patience``, ``precision``, ``seed``, ``progress``...); the metric that picks the
    best model is the task's official one (accuracy, F1, MCC, Spearman). ``task_options`` go to
    :func:`~squeezebert.finetune.tasks.load_task` (column names, ``train_file``/``dev_file``, ``doc_stride``...).
    A run whose ``output_dir`` holds a checkpoint resumes from it (``resume=False`` starts over); with other
    settings (steps, batch size, lr, seed, max length, ...) the resume is refused, listing the differences.
    ``group_by_length`` batches examples of similar length together (see ``ShuffledBatches``): 2-3x less padding.
    """
    started = time.perf_counter()
    out = Path(output_dir)
    tok = load_tokenizer(model, tokenizer)
    data = load_task(task, data_dir, tok, max_length=max_length, limit_train=limit_train, limit_eval=limit_eval,
                     **(task_options or {}))
    if not data.train:
        raise FileNotFoundError(f"{data.name}: no training examples (looked for {data.split_files('train')}); "
                                "pass data_dir with a train file, or task_options={'train_file': ...}")
    seed_everything(training.get("seed", TrainingArgs.seed))  # a fresh model or head is part of the seeded run
    net = build_model(model, data, tok)
    card = {"made_by": f"fine-tuned on {data.name}", "base_model": str(model), "task": data.name, "command": command}
    has_dev = bool(data.evals)
    if not has_dev:
        log.warning("%s: no dev split found: training without evaluation, the last model is kept", data.name)
        training = {**training, "patience": None}
    args = TrainingArgs(output_dir=str(out), metric=data.metric if has_dev else None, **training)
    batches = ShuffledBatches(data.train, batch_size, data.collate, seed=args.seed, group_by_length=group_by_length)
    trainer = Trainer(
        net, args, batches,
        evaluate=(lambda m: data.evaluate(m, "dev", eval_batch_size)) if has_dev else None,
        save_model=lambda m, directory: save_model(m, directory, tokenizer=tok, card=card),
        settings=run_settings(model=model, task=data.name, max_length=max_length, limit_train=limit_train,
                              tokenizer=tokenizer, task_options=task_options),
    )
    result = trainer.train(resume=resume)

    evals, best = evaluations(result, data)
    results = {
        "task": data.name,
        "model": str(model),
        "model_dir": result.best_dir or result.last_dir,  # the model to use: best by the metric, else the last
        "metric": data.metric if has_dev else None,
        "best_metric": result.best_metric,
        "best_step": best["step"] if best else None,
        "dev": {k: v for k, v in best.items() if k != "step"} if best else None,
        "last_eval": evals[-1] if evals else None,
        **run_record(result, data, out, started, command, max_length=max_length, batch_size=batch_size,
                     group_by_length=group_by_length),
    }
    if results["model_dir"] and results["dev"]:  # the card of the model to use gets its scores
        write_model_card(results["model_dir"], net.config.replace(architectures=[net.architecture]),
                         metrics={f"dev {k}": v for k, v in results["dev"].items()}, **card)
    write_json(out / RESULTS_NAME, results)
    return results


def _load_for_task(model_path: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, max_length: int,
                   limit_eval: int | None, task_options: dict[str, Any] | None
                   ) -> tuple[SqueezeBertPreTrainedModel, TaskData]:
    directory = Path(model_path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such model directory")
    tok = Tokenizer.from_pretrained(directory)
    options = {**_model_labels(directory, task), **(task_options or {})}
    data = load_task(task, data_dir, tok, max_length=max_length, limit_train=0, limit_eval=limit_eval, **options)
    model = load_model(directory)
    expected = HEADS[data.head]
    if type(model) is not expected:
        raise ValueError(f"{directory}: a {type(model).__name__} cannot be evaluated on {data.name}, which needs "
                         f"{expected.__name__} (fine-tune it on the task first)")
    if data.id2label is not None and model.config.id2label != data.id2label:
        raise ValueError(f"{directory}: the model's labels {model.config.id2label} differ from the task's "
                         f"{data.id2label}")
    return model, data


def evaluate(model_path: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, split: str = "dev", *,
             max_length: int = 128, batch_size: int = 64, limit_eval: int | None = None,
             task_options: dict[str, Any] | None = None, progress: bool = False, precision: str = "fp32"
             ) -> dict[str, Any]:
    """Official metrics of a fine-tuned model directory on ``split`` (``dev``; MNLI's ``dev`` covers matched and
    mismatched; any labelled split the layout names, e.g. CoNLL ``test``). ``precision``: the weight format the
    model runs in (``for_inference``: fp32, bf16, int8), to see what quantisation costs on the task."""
    started = time.perf_counter()
    model, data = _load_for_task(model_path, task, data_dir, max_length, limit_eval, task_options)
    data.progress = progress
    if precision != "fp32":
        from ..infer.fast import for_inference

        model = for_inference(model, precision, compile=False)
    scores = data.evaluate(model, split, batch_size)
    return {"task": data.name, "model": str(model_path), "split": split, "precision": precision, "metrics": scores,
            "examples": {name: len(data.examples[name]) for name in data.examples if name.startswith(split)},
            "files": {name: path for name, path in data.files.items() if name.startswith(split)},
            "wall_seconds": round(time.perf_counter() - started, 2)}


def predict_split(model_path: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, split: str,
                  output: str | os.PathLike, *, max_length: int = 128, batch_size: int = 64,
                  task_options: dict[str, Any] | None = None, progress: bool = False) -> Path:
    """Predictions of a fine-tuned model for every example of ``split``: JSON lines ``{"id", "prediction"}``, or
    for a GLUE ``test`` split the GLUE-server file (``output`` may then be a directory, made if need be: the file
    inside gets GLUE's name, ``SST-2.tsv``...)."""
    model, data = _load_for_task(model_path, task, data_dir, max_length, None, task_options)
    data.progress = progress
    return data.write_predictions(model, split, output, batch_size)


__all__ = ["build_model", "evaluate", "finetune", "load_tokenizer", "predict_split", "task_config"]
