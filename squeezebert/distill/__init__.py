"""Dense BERT -> SqueezeBERT: squeezing (``squeeze.py``), distillation losses (``losses.py``), the task-specific
and general distillation flows over the one training loop (``distill.py``), the unlabeled text they read
(``corpus.py``) and teacher-labelled transfer sets (``augment.py``)."""

from .losses import DistillLoss, DistillWeights, attention_kl, hidden_mse, layer_map, logit_kd
from .squeeze import PAPER_GROUPS, parse_groups, squeeze

__all__ = ["DistillLoss", "DistillWeights", "PAPER_GROUPS", "attention_kl", "hidden_mse", "layer_map", "logit_kd",
           "parse_groups", "squeeze"]
