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

import dataclasses
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError, load_model
from ..config import PRESETS, preset
from ..data.conll import IGNORE_INDEX
from ..finetune.features import collate
from ..finetune.recipe import Recipe, load_tokenizer, task_config
from ..model import HEADS, SqueezeBertModel, SqueezeBertPreTrainedModel
from ..recipe_config import GENERAL, SQUEEZE, DistillConfig
from ..tokenizer import Tokenizer
from ..train.loop import LossFn, TrainResult, training_autocast
from ..typed_config import load
from .augment import pairs_sentences, teacher_labelled, transfer_examples, transfer_set
from .corpus import corpus_files, hold_out, text_features
from .losses import DistillLoss, DistillWeights
from .squeeze import squeeze

log = logging.getLogger(__name__)

STUDENT_CONFIG = ("num_hidden_layers", "hidden_size", "q_groups", "k_groups", "v_groups", "post_attention_groups",
                  "intermediate_groups", "output_groups")


def calibration_batches(features: Sequence[dict], pad_token_id: int, count: int = 256, batch_size: int = 32
                        ) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` training features as model-input batches, for squeeze's least-squares fit."""
    chosen = list(features[:count])
    return [{k: v for k, v in collate(chosen[i:i + batch_size], pad_token_id).items()
             if k in ("input_ids", "attention_mask", "token_type_ids")}
            for i in range(0, len(chosen), batch_size)]


def load_student(student: str | os.PathLike, teacher: SqueezeBertPreTrainedModel, head: str,
                 fields: dict[str, Any], groups: dict[str, int] | str | None = None,
                 calibration: list[dict[str, torch.Tensor]] | None = None,
                 head_from_teacher: bool = False) -> SqueezeBertPreTrainedModel:
    """``"squeeze"``: the teacher squeezed; a checkpoint directory: loaded with ``head`` (a classifier of another
    size, e.g. from the MNLI stage, is replaced by a fresh one; with ``head_from_teacher`` a missing or replaced head
    starts as the teacher's instead, see :func:`copy_head`); a preset name: fresh, the teacher's vocabulary."""
    if str(student) == SQUEEZE:
        return squeeze(teacher, groups, calibration=calibration)
    if Path(student).is_dir():
        try:
            model, report = load_model(student, head=head, return_report=True, **fields)
            fresh = bool(report.missing)
        except CheckpointError as error:  # e.g. a 3-way MNLI classifier for a 2-way task: keep the encoder only
            log.warning("%s; loading its encoder with a fresh %s head", error, head)
            encoder = load_model(student, head="base")
            model = HEADS[head](encoder.config.replace(**fields))
            model.transformer.load_state_dict(encoder.state_dict())
            fresh = True
        if fresh and head_from_teacher:
            copied = copy_head(teacher, model)
            log.info("student head from the teacher: %s", ", ".join(copied) or "nothing (no shape matches)")
        return model
    if str(student) in PRESETS:
        config = preset(str(student), vocab_size=teacher.config.vocab_size, **fields)
        return HEADS[head](config)
    raise FileNotFoundError(f"student {student!r} is neither {SQUEEZE!r}, a checkpoint directory nor a preset "
                            f"({', '.join(PRESETS)})")


def copy_head(teacher: SqueezeBertPreTrainedModel, student: SqueezeBertPreTrainedModel) -> list[str]:
    """Copy into ``student`` the teacher's tensors outside the encoder body (pooler and task head) wherever name and
    shape match; the names copied. Meant for a student whose encoder imitates this teacher's hidden states, so it can
    read them with the teacher's head from the first step; a general student distilled from the plain (not
    fine-tuned) model gained nothing from it on STS-B (docs/distillation.md)."""
    body = ("transformer.embeddings.", "transformer.encoder.")  # a task model's encoder body
    theirs = teacher.state_dict()
    copied = []
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            if not name.startswith(body) and name in theirs and theirs[name].shape == tensor.shape:
                tensor.copy_(theirs[name])
                copied.append(name)
    return copied


class DistillRecipe(Recipe):
    """The skeleton with a student taught by ``config.teacher``: task-specific (a teacher fine-tuned on the task;
    soft labels, hidden states and attention maps mixed with the gold labels) or, for ``task = "general"``,
    task-agnostic on unlabeled text (hidden states, attention maps and embeddings of a bare encoder)."""

    config: DistillConfig

    def load_tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.config.teacher)

    def load_data(self) -> None:
        if self.config.general and self.config.augment:
            raise ValueError(f"--augment is for task distillation; --task {GENERAL} has no labels to copy")
        if self.config.general and self.config.transfer_text:
            raise ValueError(f"--transfer-text is for task distillation; --task {GENERAL} reads its text from "
                             "--data-dir")
        if self.config.general:
            if not self.config.data_dir:
                raise ValueError(f"--task {GENERAL} needs --data-dir: a folder of .txt or .tsv files (or one file)")
            windows, self.corpus_windows = text_features(
                self.tokenizer, corpus_files(self.config.data_dir), self.config.max_length, self.config.limit_train)
            self.features, self.held_out = hold_out(windows, self.config.held_out, self.config.seed)
            log.info("general corpus: %d windows of <= %d tokens from %d file(s), %d of them held out",
                     len(windows), self.config.max_length, len(self.corpus_windows), len(self.held_out))
        else:
            super().load_data()
            self.features = self.data.train
            # the transfer set's text, read (and checked) before the teacher is loaded to label it
            self.transfer_examples, self.transfer_files = transfer_examples(
                self.data, self.config.transfer_text, self.config.transfer_count, self.config.seed) \
                if self.config.transfer_text else ([], [])

    def training_set(self) -> tuple[list[dict], Any]:
        if self.config.general:
            return self.features, partial(collate, pad_token_id=self.tokenizer.pad_token_id)
        return super().training_set()

    @property
    def has_dev(self) -> bool:
        return bool(self.held_out) if self.config.general else super().has_dev

    @property
    def metric(self) -> str | None:  # general: the held-out distillation loss, lowest best
        return ("loss" if self.held_out else None) if self.config.general else super().metric

    @property
    def greater_is_better(self) -> bool:  # a held-out loss is lower-better; without one (--held-out 0) a general
        # run stores the loop's default, as the general runs before held-out losses did, so those still resume
        return not (self.config.general and self.held_out)

    @property
    def score_label(self) -> str:
        return "held-out" if self.config.general else "dev"

    def dev_scores(self, model: nn.Module) -> dict[str, float] | None:
        if not self.config.general:
            return super().dev_scores(model)
        if not self.held_out or model is self.teacher:
            return None
        return held_out_loss(self.distill_loss, model, self.held_out, self.tokenizer.pad_token_id,
                             self.config.eval_batch_size, self.config.precision)

    @property
    def head(self) -> str:
        return "base" if self.config.general else self.data.head

    @property
    def weights(self) -> DistillWeights:
        base = DistillWeights.general() if self.config.general else DistillWeights.task()
        return dataclasses.replace(base, **self.config.weight_overrides())

    def prepare(self) -> None:
        """The teacher (checked against the task) and the training batches squeezing fits on."""
        c = self.config
        self.teacher = load_model(c.teacher, head="base") if c.general else self._task_teacher()
        self.calibration = calibration_batches(self.features, self.tokenizer.pad_token_id, c.calibrate) \
            if c.calibrate else None
        self.augmented: dict[str, Any] | None = None
        if c.augment:
            copies, changed = transfer_set(self.teacher, self.data, c.augment, c.augment_rate, c.seed,
                                           c.eval_batch_size)
            # teacher_changed: the share of copies whose class the teacher changed, or (regression) the mean change
            # of their score
            self.augmented = {"copies": len(copies), "rate": c.augment_rate, "teacher_changed": round(changed, 4)}
            log.info("augment: %d teacher-labelled copies of %d training examples (teacher changed: %.4f)",
                     len(copies), len(self.data.train), changed)
            self.data.train = self.data.train + copies
        self.transferred: dict[str, Any] | None = None
        if c.transfer_text:
            texts, _ = teacher_labelled(self.teacher, self.data, self.transfer_examples, "transfer text",
                                        c.eval_batch_size)
            labels = [label for feature in texts for label in np.ravel(feature["labels"]).tolist()
                      if label != IGNORE_INDEX]
            # what the teacher made of them: the share of each class (NER: of each word's tag), or (regression) the
            # mean score
            made = round(sum(labels) / len(labels), 4) if self.data.num_labels == 1 else {
                name: round(labels.count(i) / len(labels), 4) for i, name in enumerate(self.data.task_kind.labels)}
            unit = "pairs" if pairs_sentences(self.data) else "sentences"
            self.transferred = {"corpus": c.transfer_text, "files": len(self.transfer_files), unit: len(texts),
                                "teacher_labels": made}
            log.info("transfer text: %d teacher-labelled %s from %d file(s) join %d training features (teacher: %s)",
                     len(texts), unit, len(self.transfer_files), len(self.data.train), made)
            self.data.train = self.data.train + texts

    def build(self) -> SqueezeBertPreTrainedModel:
        """The student (timed: squeezing fits least squares); it and the teacher are scored on dev before
        training."""
        c = self.config
        t0 = time.perf_counter()
        student = load_student(c.student, self.teacher, self.head, {} if c.general else task_config(self.data),
                               c.groups, self.calibration, head_from_teacher=c.head_init == "teacher")
        self.squeeze_seconds = time.perf_counter() - t0
        if c.general and not isinstance(student, SqueezeBertModel):
            raise ValueError("general distillation trains a bare encoder")
        # the loss the student trains on, and (general) its held-out score: with the same projections
        self.distill_loss = DistillLoss(self.teacher, self.weights, student.config, self.teacher.config)
        self.teacher_dev, self.student_dev_before = self.dev_scores(self.teacher), self.dev_scores(student)
        if c.general and self.student_dev_before is not None:
            log.info("student before training, held-out loss: %s", self.student_dev_before)
        if self.teacher_dev is not None:
            log.info("teacher dev: %s; student before training: %s", self.teacher_dev, self.student_dev_before)
        return student

    def _task_teacher(self) -> SqueezeBertPreTrainedModel:
        teacher, data = load_model(self.config.teacher), self.data
        if type(teacher) is not HEADS[data.head] or teacher.config.num_labels != data.num_labels:
            raise ValueError(f"{self.config.teacher}: a {type(teacher).__name__} with {teacher.config.num_labels} "
                             f"label(s) cannot teach {data.name} ({HEADS[data.head].__name__}, {data.num_labels} "
                             "label(s)): fine-tune it on the task first (squeezebert finetune)")
        return teacher

    def loss(self) -> tuple[LossFn, dict[str, nn.Module] | None]:
        loss = self.distill_loss
        return loss, {"projections": loss.projections} if len(loss.projections) else None

    def card(self) -> dict[str, Any]:
        """A sentence-transformers teacher's pooling files go with every saved student (so it loads with
        ``SentenceTransformer(dir)`` too), and a model card names the teacher and the command."""
        c = self.config
        made_by = f"distilled from {c.teacher} on unlabeled text ({c.data_dir})" if c.general \
            else f"distilled on {self.data.name} from {c.teacher}"
        return {"sentence_transformers_from": c.teacher,
                "card": {"made_by": made_by, "base_model": c.teacher, "task": None if c.general else self.data.name,
                         "command": self.command}}

    def settings(self) -> dict[str, Any]:
        c = self.config
        common = dict(teacher=c.teacher, student=c.student, groups=c.groups, calibrate=c.calibrate,
                      weights=vars(self.weights), max_length=c.max_length)
        if c.general:  # held_out (added later) appears only when used, so older general runs still resume
            return dict(corpus=c.data_dir, limit_texts=c.limit_train, **common,
                        **({"held_out": c.held_out} if c.held_out else {}))
        # settings added later appear only when used, so the checkpoints of older runs still resume
        later = {"augment": c.augment, "augment_rate": c.augment_rate} if c.augment else {}
        later |= {"head_init": c.head_init} if c.head_init != "fresh" else {}
        later |= {"transfer_text": c.transfer_text, "transfer_count": c.transfer_count} if c.transfer_text else {}
        return dict(task=self.data.name, limit_train=c.limit_train, task_options=c.load_options() or None,
                    **later, **common)

    def fields(self, result: TrainResult, evals: list[dict], best: dict | None, dev: dict | None) -> dict[str, Any]:
        c = self.config
        if c.general:
            return {"teacher": c.teacher, "student": c.student, "corpus": c.data_dir, "texts": len(self.features),
                    "corpus_windows": self.corpus_windows,
                    "model_dir": result.best_dir or result.last_dir,
                    # the student's distillation loss on the held-out windows: before training, at every
                    # evaluation, and the lowest (its model is model_dir)
                    "held_out": {"windows": len(self.held_out), "before": self.student_dev_before, "evals": evals,
                                 "best": best} if self.held_out else None,
                    "final_losses": next((row for row in reversed(result.history) if "loss" in row), {}),
                    "weights": vars(self.weights)}
        return {
            "task": self.data.name,
            "teacher": c.teacher,
            "student": c.student,
            "student_config": {k: getattr(self.model.config, k) for k in STUDENT_CONFIG},
            "model_dir": result.best_dir or result.last_dir,
            "metric": self.metric,
            "teacher_dev": self.teacher_dev,
            "student_dev_before": self.student_dev_before,
            "student_dev": dev,
            "best_metric": result.best_metric,
            "best_step": best["step"] if best else None,
            "weights": vars(self.weights),
            "squeeze_seconds": round(self.squeeze_seconds, 2),
            "augmented": self.augmented,
            "transferred": self.transferred,
        }


def distill(teacher: str | os.PathLike, task: str, data_dir: str | os.PathLike | None, output_dir: str | os.PathLike,
            *, command: str | None = None, **settings: Any) -> dict[str, Any]:
    """Task-specific distillation; returns (and writes to ``output_dir/results.json``) the results.

    ``teacher`` must be fine-tuned on ``task`` (``squeezebert finetune``). ``settings`` are
    :class:`~squeezebert.recipe_config.DistillConfig` fields: ``student`` is ``"squeeze"`` (the teacher squeezed to
    ``groups``, the paper's by default, least-squares-fitted on ``calibrate`` training examples), a checkpoint
    directory (e.g. the MNLI-stage student) or a preset; the loss weights, the loop's settings, ...
    """
    config = load(DistillConfig, given=dict(teacher=teacher, task=task, data_dir=data_dir, output_dir=output_dir,
                                            **settings))
    return DistillRecipe(config, command).run()


# ---- general distillation -----------------------------------------------------------------------------------------


@torch.no_grad()
def held_out_loss(loss_fn: DistillLoss, model: nn.Module, windows: list[dict], pad_token_id: int,
                  batch_size: int, precision: str) -> dict[str, float]:
    """The mean distillation loss (and its terms) of ``model`` on ``windows``: in eval mode (no dropout), under the
    training precision's autocast, so it compares with the training loss."""
    device, training = next(model.parameters()).device, model.training
    sums: dict[str, float] = {}
    model.eval()
    try:
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}
            with training_autocast(device, precision):
                loss, terms = loss_fn(model, batch)
            for key, value in {"loss": loss, **terms}.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(chunk)
    finally:
        model.train(training)
    return {key: value / len(windows) for key, value in sums.items()}


def distill_general(teacher: str | os.PathLike, corpus: str | os.PathLike, output_dir: str | os.PathLike, *,
                    limit_texts: int | None = None, command: str | None = None, **settings: Any) -> dict[str, Any]:
    """Task-agnostic distillation of the encoder on unlabeled text (``corpus``: a folder's ``.txt`` files and
    ``.tsv`` text columns, or a corpus entry; :func:`corpus_files`), at most ``limit_texts`` windows, of which
    ``held_out`` are set aside to score the student; ``settings`` as for :func:`distill`."""
    config = load(DistillConfig, given=dict(teacher=teacher, task=GENERAL, data_dir=corpus, output_dir=output_dir,
                                            limit_train=limit_texts, **settings))
    return DistillRecipe(config, command).run()
