"""Distillation losses and the combined ``loss_fn`` the one training loop calls.

- :func:`logit_kd`: soft-label knowledge distillation (Hinton et al.): ``T^2 * KL(softmax(t/T) || softmax(s/T))``;
  for a regression head (one output) the MSE between the two predictions.
- :func:`hidden_mse`: MSE between hidden states of mapped layers over real tokens, through a learned linear
  projection when the widths differ (TinyBERT).
- :func:`attention_kl`: KL between the teachers' and the student's attention distributions, per head and query
  (MiniLM); where head counts differ, between the head-averaged distributions.
- embedding MSE: :func:`hidden_mse` on ``hidden_states[0]``.

:class:`DistillLoss` runs the frozen teacher and the student on a batch and mixes these with the ground-truth loss;
its projections are trainable modules to hand to ``Trainer(extra_modules=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..finetune.features import LABEL_FIELDS
from ..model import ModelOutput, SqueezeBertModel


def logit_kd(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """Soft-label KD on logits (B, C): the KL scaled by T^2 so its gradient does not shrink with T."""
    if student.shape != teacher.shape:
        raise ValueError(f"student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ")
    if student.shape[-1] == 1:  # regression: the teacher's prediction is the soft target
        return F.mse_loss(student, teacher)
    t = temperature
    log_p_s = F.log_softmax(student / t, dim=-1)
    log_p_t = F.log_softmax(teacher / t, dim=-1)
    return F.kl_div(log_p_s.reshape(-1, student.shape[-1]), log_p_t.reshape(-1, student.shape[-1]),
                    reduction="batchmean", log_target=True) * t * t


def head_kd(student: ModelOutput, teacher: ModelOutput, temperature: float = 1.0) -> Tensor:
    """:func:`logit_kd` on a task head's outputs. A QA head scores positions: its soft labels are the distributions
    of the answer's start and of its end over the tokens, each matched on its own (as in DistilBERT's SQuAD
    distillation), not a softmax over the (start, end) pair of one token."""
    if student.start_logits is not None:
        return (logit_kd(student.start_logits, teacher.start_logits, temperature)
                + logit_kd(student.end_logits, teacher.end_logits, temperature)) / 2
    return logit_kd(student.logits, teacher.logits, temperature)


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None, projection: nn.Module | None = None
               ) -> Tensor:
    """MSE between (B, S, Cs) and (B, S, Ct) hidden states over the tokens where ``mask`` (B, S) is 1."""
    if projection is not None:
        student = projection(student)
    if student.shape != teacher.shape:
        raise ValueError(f"hidden states {tuple(student.shape)} vs {tuple(teacher.shape)}: widths differ and no "
                         "projection was given")
    if mask is None:
        return F.mse_loss(student, teacher)
    keep = mask.bool()
    return F.mse_loss(student[keep], teacher[keep])


def attention_kl(student: Tensor, teacher: Tensor, mask: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """KL(teacher || student) of attention probabilities (B, H, S, S), averaged over heads and real query tokens."""
    if student.shape[1] != teacher.shape[1]:  # different head counts: compare what the heads attend to on average
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    if student.shape != teacher.shape:
        raise ValueError(f"attention maps {tuple(student.shape)} vs {tuple(teacher.shape)} differ")
    # masked keys have probability exactly 0 in both; 0 * log(0 / x) counts as 0
    kl = (teacher * (torch.log(teacher + eps) - torch.log(student + eps))).sum(-1)  # (B, H, S)
    if mask is None:
        return kl.mean()
    rows = mask.bool()[:, None, :].expand_as(kl)
    return kl[rows].mean()


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer for each student layer, spread uniformly, last to last (TinyBERT's mapping)."""
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


@dataclass
class DistillWeights:
    """Weights of the terms (0 turns a term off, and its teacher outputs are then not requested)."""

    ground_truth: float = 0.5  # the task loss on gold labels
    logits: float = 0.5  # soft-label KD
    temperature: float = 2.0
    hidden: float = 0.0  # hidden-state MSE, every student layer vs its mapped teacher layer
    attention: float = 0.0  # attention KL, every student layer vs its mapped teacher layer
    embedding: float = 0.0  # embedding-output MSE

    @classmethod
    def task(cls) -> "DistillWeights":
        """Task-specific distillation: gold labels, soft labels, and layer-wise transfer."""
        return cls(ground_truth=0.5, logits=0.5, hidden=1.0, attention=1.0, embedding=0.0)

    @classmethod
    def general(cls) -> "DistillWeights":
        """General (task-agnostic) distillation on unlabeled text: layer-wise transfer only."""
        return cls(ground_truth=0.0, logits=0.0, hidden=1.0, attention=1.0, embedding=1.0)


class DistillLoss:
    """``loss_fn(student, batch) -> (loss, logs)`` for :class:`squeezebert.train.loop.Trainer`.

    The teacher is frozen and run in eval mode under ``no_grad``. Hidden-state width differences get a learned
    linear projection per mapped layer (``self.projections``, pass as ``extra_modules``).
    """

    def __init__(self, teacher: nn.Module, weights: DistillWeights, student_config, teacher_config):
        self.teacher = teacher.eval().requires_grad_(False)
        self.weights = weights
        self.map = layer_map(student_config.num_hidden_layers, teacher_config.num_hidden_layers)
        self.projections = nn.ModuleDict()
        if student_config.hidden_size != teacher_config.hidden_size:
            for name in ["embedding"] + [str(i) for i in range(student_config.num_hidden_layers)]:
                self.projections[name] = nn.Linear(student_config.hidden_size, teacher_config.hidden_size)

    def _proj(self, name: str) -> nn.Module | None:
        return self.projections[name] if name in self.projections else None

    def __call__(self, student: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        w = self.weights
        layerwise = w.hidden > 0 or w.attention > 0 or w.embedding > 0
        want_hidden, want_attn = w.hidden > 0 or w.embedding > 0, w.attention > 0
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        # the gold labels in whatever fields the task's batches carry (QA: start_positions and end_positions)
        gold = {k: batch[k] for k in LABEL_FIELDS if k in batch} if w.ground_truth > 0 else {}
        if _takes_labels(student):
            inputs_s = dict(inputs, **gold)
        elif gold:
            raise ValueError("ground_truth weight > 0 needs a model with a task head")
        else:
            inputs_s = inputs
        out = student(**inputs_s, output_hidden_states=want_hidden, output_attentions=want_attn)
        need_teacher = w.logits > 0 or layerwise
        with torch.no_grad():
            t = self.teacher(**inputs, output_hidden_states=want_hidden, output_attentions=want_attn) \
                if need_teacher else None
        mask = inputs.get("attention_mask")
        terms: dict[str, Tensor] = {}
        if w.ground_truth > 0:
            if out.loss is None:
                raise ValueError("ground_truth weight > 0 but the batch has no labels (or the head gives no loss)")
            terms["gt"] = out.loss * w.ground_truth
        if w.logits > 0:
            terms["kd"] = head_kd(out, t, w.temperature) * w.logits
        if w.embedding > 0:
            terms["emb"] = hidden_mse(out.hidden_states[0], t.hidden_states[0], mask, self._proj("embedding")) \
                * w.embedding
        if w.hidden > 0:
            per = [hidden_mse(out.hidden_states[i + 1], t.hidden_states[j + 1], mask, self._proj(str(i)))
                   for i, j in enumerate(self.map)]
            terms["hid"] = torch.stack(per).mean() * w.hidden
        if w.attention > 0:
            per = [attention_kl(out.attentions[i], t.attentions[j], mask) for i, j in enumerate(self.map)]
            terms["att"] = torch.stack(per).mean() * w.attention
        if not terms:
            raise ValueError("every distillation weight is 0: nothing to train")
        loss = torch.stack(list(terms.values())).sum()
        return loss, {k: float(v.detach()) for k, v in terms.items()}


def _takes_labels(model: nn.Module) -> bool:
    return not isinstance(getattr(model, "module", model), SqueezeBertModel)  # DDP wraps the model in .module
