"""The distillation flows: wiring of a teacher, a student, data, :class:`DistillLoss` and the one training loop.

- :func:`distill` -- task-specific: a teacher fine-tuned on the task teaches a student (by default the teacher
  itself, squeezed) through soft labels, hidden states and attention maps, mixed with the gold labels.
- :func:`distill_general` -- task-agnostic: on unlabeled text, hidden states, attention maps and embeddings only.

The paper's two-stage recipe (docs/distillation.md) is two calls of :func:`distill`: MNLI first, then each other
task with the MNLI student as ``student`` (its classifier, of the wrong size, is replaced by a fresh one).

A run writes to ``output_dir`` what fine-tuning writes (``best/``, ``checkpoints/``, ``log.csv``, ``curve.png``)
plus ``results.json`` with the teacher's and the student's dev metrics and the wall-clock time.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checkpoint import CheckpointError, load_model, save_model
from ..config import PRESETS, preset
from ..data.pretraining import lines_to_documents
from ..finetune.features import collate
from ..finetune.run import evaluations, load_tokenizer, run_record, run_settings, task_config, write_json
from ..finetune.tasks import TaskData, load_task
from ..model import HEADS, SqueezeBertModel, SqueezeBertPreTrainedModel
from ..model_card import write_model_card
from ..tokenizer import Tokenizer
from ..train.loop import ShuffledBatches, Trainer, TrainingArgs, seed_everything
from .losses import DistillLoss, DistillWeights
from .squeeze import squeeze

log = logging.getLogger(__name__)

SQUEEZE = "squeeze"  # the student name that means "the teacher, squeezed"
RESULTS_NAME = "results.json"


def calibration_batches(features: Sequence[dict], pad_token_id: int, count: int = 256, batch_size: int = 32
                        ) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` training features as model-input batches, for squeeze's least-squares fit."""
    chosen = list(features[:count])
    return [{k: v for k, v in collate(chosen[i:i + batch_size], pad_token_id).items()
             if k in ("input_ids", "attention_mask", "token_type_ids")}
            for i in range(0, len(chosen), batch_size)]


def load_student(student: str | os.PathLike, teacher: SqueezeBertPreTrainedModel, head: str,
                 fields: dict[str, Any], groups: dict[str, int] | str | None = None,
                 calibration: list[dict[str, torch.Tensor]] | None = None) -> SqueezeBertPreTrainedModel:
    """``"squeeze"``: the teacher squeezed; a checkpoint directory: loaded with ``head`` (a classifier of another
    size, e.g. from the MNLI stage, is replaced by a fresh one); a preset name: fresh, the teacher's vocabulary."""
    if str(student) == SQUEEZE:
        return squeeze(teacher, groups, calibration=calibration)
    if Path(student).is_dir():
        try:
            return load_model(student, head=head, **fields)
        except CheckpointError as error:  # e.g. a 3-way MNLI classifier for a 2-way task: keep the encoder only
            log.warning("%s; loading its encoder with a fresh %s head", error, head)
            encoder = load_model(student, head="base")
            model = HEADS[head](encoder.config.replace(**fields))
            model.transformer.load_state_dict(encoder.state_dict())
            return model
    if str(student) in PRESETS:
        config = preset(str(student), vocab_size=teacher.config.vocab_size, **fields)
        return HEADS[head](config)
    raise FileNotFoundError(f"student {student!r} is neither {SQUEEZE!r}, a checkpoint directory nor a preset "
                            f"({', '.join(PRESETS)})")


def _train(student: SqueezeBertPreTrainedModel, teacher: SqueezeBertPreTrainedModel, weights: DistillWeights,
           features: Sequence[dict], collate_fn, tokenizer: Tokenizer, output_dir: Path, batch_size: int,
           evaluate=None, metric: str | None = None, resume: bool | str = True, group_by_length: bool = True,
           save_options: dict[str, Any] | None = None, settings: dict[str, Any] | None = None, **training: Any):
    loss = DistillLoss(teacher, weights, student.config, teacher.config)
    args = TrainingArgs(output_dir=str(output_dir), metric=metric, **training)
    batches = ShuffledBatches(features, batch_size, collate_fn, seed=args.seed, group_by_length=group_by_length)
    trainer = Trainer(student, args, batches, evaluate=evaluate, loss_fn=loss,
                      extra_modules={"projections": loss.projections} if len(loss.projections) else None,
                      save_model=lambda m, directory: save_model(m, directory, tokenizer=tokenizer,
                                                                 **(save_options or {})),
                      settings=settings)
    return trainer.train(resume=resume)


def distill(teacher: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, output_dir: str | os.PathLike,
            *, student: str | os.PathLike = SQUEEZE, groups: dict[str, int] | str | None = None,
            weights: DistillWeights | None = None, calibrate: int = 256, max_length: int = 128,
            batch_size: int = 32, eval_batch_size: int = 64, limit_train: int | None = None,
            limit_eval: int | None = None, task_options: dict[str, Any] | None = None, resume: bool | str = True,
            command: str | None = None, **training: Any) -> dict[str, Any]:
    """Task-specific distillation; returns (and writes to ``output_dir/results.json``) the results.

    ``teacher`` must be fine-tuned on ``task`` (``squeezebert finetune``). ``student``: ``"squeeze"`` (the teacher
    squeezed to ``groups``, the paper's by default, least-squares-fitted on ``calibrate`` training examples), a
    checkpoint directory (e.g. the MNLI-stage student) or a preset. ``training`` goes to ``TrainingArgs``.
    """
    started = time.perf_counter()
    out = Path(output_dir)
    tok = load_tokenizer(teacher)
    data: TaskData = load_task(task, data_dir, tok, max_length=max_length, limit_train=limit_train,
                               limit_eval=limit_eval, **(task_options or {}))
    if not data.train:
        raise FileNotFoundError(f"{data.name}: no training examples (looked for {data.split_files('train')})")
    teacher_model = load_model(teacher)
    if type(teacher_model) is not HEADS[data.head] or teacher_model.config.num_labels != data.num_labels:
        raise ValueError(f"{teacher}: a {type(teacher_model).__name__} with {teacher_model.config.num_labels} "
                         f"label(s) cannot teach {data.name} ({HEADS[data.head].__name__}, {data.num_labels} "
                         "label(s)): fine-tune it on the task first (squeezebert finetune)")
    calibration = calibration_batches(data.train, tok.pad_token_id, calibrate) if calibrate else None
    seed_everything(training.get("seed", TrainingArgs.seed))  # a fresh student, head or projection is seeded too
    t0 = time.perf_counter()
    net = load_student(student, teacher_model, data.head, task_config(data), groups, calibration)
    squeeze_seconds = time.perf_counter() - t0
    has_dev = bool(data.evals)
    evaluate = (lambda m: data.evaluate(m, "dev", eval_batch_size)) if has_dev else None
    teacher_dev = data.evaluate(teacher_model, "dev", eval_batch_size) if has_dev else None
    initial_dev = data.evaluate(net, "dev", eval_batch_size) if has_dev else None
    if teacher_dev is not None:
        log.info("teacher dev: %s; student before training: %s", teacher_dev, initial_dev)
    save = _save_options(teacher, command, f"distilled on {data.name} from {teacher}", data.name)
    settings = run_settings(teacher=teacher, student=student, task=data.name, groups=groups, calibrate=calibrate,
                            weights=vars(weights or DistillWeights.task()), max_length=max_length,
                            limit_train=limit_train, task_options=task_options)
    result = _train(net, teacher_model, weights or DistillWeights.task(), data.train, data.collate, tok, out,
                    batch_size, evaluate, data.metric if has_dev else None, resume, save_options=save,
                    settings=settings, **training)
    evals, best = evaluations(result, data)
    results = {
        "task": data.name,
        "teacher": str(teacher),
        "student": str(student),
        "student_config": {k: getattr(net.config, k) for k in ("num_hidden_layers", "hidden_size", "q_groups",
                                                                  "k_groups", "v_groups", "post_attention_groups",
                                                                  "intermediate_groups", "output_groups")},
        "model_dir": result.best_dir or result.last_dir,
        "metric": data.metric if has_dev else None,
        "teacher_dev": teacher_dev,
        "student_dev_before": initial_dev,
        "student_dev": {k: v for k, v in best.items() if k != "step"} if best else None,
        "best_metric": result.best_metric,
        "best_step": best["step"] if best else None,
        "weights": vars(weights or DistillWeights.task()),
        "squeeze_seconds": round(squeeze_seconds, 2),
        **run_record(result, data, out, started, command, max_length=max_length, batch_size=batch_size),
    }
    if results["model_dir"] and results["student_dev"]:  # the card of the model to use gets its scores
        write_model_card(results["model_dir"], net.config.replace(architectures=[net.architecture]),
                         metrics={f"dev {k}": v for k, v in results["student_dev"].items()}, **save["card"])
    write_json(out / RESULTS_NAME, results)
    return results


def _save_options(teacher: str | os.PathLike, command: str | None, made_by: str, task: str | None
                  ) -> dict[str, Any]:
    """What every saved student carries from its teacher: a sentence-transformers teacher's pooling files (so the
    student loads with ``SentenceTransformer(dir)`` too) and a model card naming the teacher and the command."""
    return {"sentence_transformers_from": teacher,
            "card": {"made_by": made_by, "base_model": str(teacher), "task": task, "command": command}}


# ---- general distillation -----------------------------------------------------------------------------------------


def text_features(tokenizer: Tokenizer, paths: Sequence[str | os.PathLike], max_length: int = 128,
                  limit: int | None = None, min_words: int = 8) -> list[dict]:
    """Unlabeled text -> features: each paragraph (a block of lines up to a blank line, so hard-wrapped books read
    as running text) of at least ``min_words`` words, cut into windows of ``max_length`` tokens ([CLS] ... [SEP]).
    Full windows give every position of the student a training signal; a paragraph's last piece is kept when it
    has ``min_words`` tokens or more. ``limit`` caps the number of windows. Lines starting with ``#`` are file
    separators (the speeches corpus) and skipped."""
    body = max_length - 2
    features: list[dict] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f.read().splitlines() if not line.startswith("#")]
        paragraphs = [" ".join(sentences) for sentences in lines_to_documents(lines, "paragraph")]
        paragraphs = [p for p in paragraphs if len(p.split()) >= min_words]
        if not paragraphs:
            continue
        encoded = tokenizer(paragraphs, padding=False, truncation=None, add_special_tokens=False,
                            return_tensors=None)["input_ids"]
        for ids in encoded:
            for start in range(0, len(ids), body):
                piece = ids[start:start + body]
                if len(piece) >= min_words:
                    window = [tokenizer.cls_token_id, *piece, tokenizer.sep_token_id]
                    features.append({"input_ids": window, "token_type_ids": [0] * len(window)})
                if limit is not None and len(features) >= limit:
                    return features
    if not features:
        raise ValueError(f"no paragraphs of >= {min_words} words in {', '.join(map(str, paths))}")
    return features


def corpus_files(data_dir: str | os.PathLike) -> list[Path]:
    """Every ``.txt`` file under ``data_dir`` (or the file itself), sorted."""
    path = Path(data_dir)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{path}: no .txt files for general distillation")
    return files


def distill_general(teacher: str | os.PathLike, corpus: str | os.PathLike, output_dir: str | os.PathLike, *,
                    student: str | os.PathLike = SQUEEZE, groups: dict[str, int] | str | None = None,
                    weights: DistillWeights | None = None, calibrate: int = 256, max_length: int = 128,
                    batch_size: int = 32, limit_texts: int | None = None, resume: bool | str = True,
                    command: str | None = None, **training: Any) -> dict[str, Any]:
    """Task-agnostic distillation of the encoder on unlabeled text (``.txt`` files under ``corpus``)."""
    started = time.perf_counter()
    out = Path(output_dir)
    tok = load_tokenizer(teacher)
    features = text_features(tok, corpus_files(corpus), max_length, limit_texts)
    teacher_model = load_model(teacher, head="base")
    calibration = calibration_batches(features, tok.pad_token_id, calibrate) if calibrate else None
    seed_everything(training.get("seed", TrainingArgs.seed))
    net = load_student(student, teacher_model, "base", {}, groups, calibration)
    if not isinstance(net, SqueezeBertModel):
        raise ValueError("general distillation trains a bare encoder")
    coll = lambda batch: collate(batch, tok.pad_token_id)  # noqa: E731
    save = _save_options(teacher, command, f"distilled from {teacher} on unlabeled text ({corpus})", None)
    settings = run_settings(teacher=teacher, student=student, corpus=corpus, groups=groups, calibrate=calibrate,
                            weights=vars(weights or DistillWeights.general()), max_length=max_length,
                            limit_texts=limit_texts)
    result = _train(net, teacher_model, weights or DistillWeights.general(), features, coll, tok, out,
                    batch_size, None, None, resume, save_options=save, settings=settings, **training)
    last = next((row for row in reversed(result.history) if "loss" in row), {})
    results = {
        "teacher": str(teacher), "student": str(student), "corpus": str(corpus), "texts": len(features),
        "model_dir": result.last_dir, "final_losses": last,
        "weights": vars(weights or DistillWeights.general()),
        **run_record(result, None, out, started, command, max_length=max_length, batch_size=batch_size),
    }
    write_json(out / RESULTS_NAME, results)
    return results
