"""The fine-tuning recipe: a checkpoint (or preset) + a task + the one training loop -> a fine-tuned model and a
results file (the skeleton and the output layout: ``recipe.py``). Also evaluation of a saved model and prediction
files for a split.

Everything here is wiring: the task layer (``tasks.py``) reads, featurises and scores; ``train/loop.py`` trains,
evaluates, keeps the best model and checkpoints; ``checkpoint.py`` loads and saves.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..checkpoint import load_model
from ..config import PRESETS, preset
from ..model import HEADS, SqueezeBertPreTrainedModel
from ..recipe_config import FinetuneConfig
from ..tasks import TASKS
from ..tokenizer import Tokenizer
from ..train.loop import TrainResult
from ..typed_config import load
from .recipe import Recipe, load_tokenizer, task_config
from .tasks import TaskData, canonical_task, load_task


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
    if not TASKS[name].labels_from_data:
        return {}
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if name == "table" and config.get("problem_type") == "regression":
        return {"regression": True}
    id2label = config.get("id2label") or {}
    return {"labels": [id2label[k] for k in sorted(id2label, key=int)]} if id2label else {}


# ---------------------------------------------------------------------------------------------- the flows


class FinetuneRecipe(Recipe):
    """The skeleton with the task's head on ``config.model``, trained on the model's own loss."""

    config: FinetuneConfig

    def load_tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.config.model, self.config.tokenizer)

    def build(self) -> SqueezeBertPreTrainedModel:
        return build_model(self.config.model, self.data, self.tokenizer)

    def card(self) -> dict[str, Any]:
        return {"card": {"made_by": f"fine-tuned on {self.data.name}", "base_model": self.config.model,
                         "task": self.data.name, "command": self.command}}

    def settings(self) -> dict[str, Any]:
        c = self.config
        return dict(model=c.model, task=self.data.name, max_length=c.max_length, limit_train=c.limit_train,
                    tokenizer=c.tokenizer, task_options=c.load_options() or None)

    def fields(self, result: TrainResult, evals: list[dict], best: dict | None, dev: dict | None) -> dict[str, Any]:
        return {
            "task": self.data.name,
            "model": self.config.model,
            "model_dir": result.best_dir or result.last_dir,  # the model to use: best by the metric, else the last
            "metric": self.metric,
            "best_metric": result.best_metric,
            "best_step": best["step"] if best else None,
            "dev": dev,
            "last_eval": evals[-1] if evals else None,
        }


def finetune(model: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, output_dir: str | os.PathLike,
             *, command: str | None = None, **settings: Any) -> dict[str, Any]:
    """Fine-tune ``model`` (a checkpoint directory or a preset name) on ``task`` and return the results dict that
    is also written to ``output_dir/results.json``.

    ``settings`` are :class:`~squeezebert.recipe_config.FinetuneConfig` fields (``epochs``, ``max_steps``, ``lr``,
    ``batch_size``, ``eval_every``, ``patience``, ``precision``, ``seed``, ``progress``, ``train_file``,
    ``task_options``...; an unknown one is an error); the metric that picks the best model is the task's official
    one (accuracy, F1, MCC, Spearman). A run whose ``output_dir`` holds a checkpoint resumes from it
    (``resume=False`` starts over); with other settings (steps, batch size, lr, seed, max length, ...) the resume is
    refused, listing the differences.
    """
    config = load(FinetuneConfig, given=dict(model=model, task=task, data_dir=data_dir, output_dir=output_dir,
                                             **settings))
    return FinetuneRecipe(config, command).run()


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


__all__ = ["FinetuneRecipe", "build_model", "evaluate", "finetune", "load_tokenizer", "predict_split",
           "task_config"]
