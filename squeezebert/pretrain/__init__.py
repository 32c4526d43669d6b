"""Pretraining from scratch: MLM + sentence-order prediction over plain text, phase by phase, on the one loop."""

from .config import PhaseConfig, PretrainConfig, PretrainConfigError, load_config
from .run import PretrainingObjective, pretrain, save_initial

__all__ = ["PhaseConfig", "PretrainConfig", "PretrainConfigError", "PretrainingObjective", "load_config", "pretrain",
           "save_initial"]
