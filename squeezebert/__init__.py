"""squeezebert: SqueezeBERT (Iandola et al., 2020) as a fast, Hugging Face-compatible PyTorch library."""

from .config import PRESETS, SqueezeBertConfig, count_flops, preset
from .model import (
    HEADS,
    ModelOutput,
    SqueezeBertForMaskedLM,
    SqueezeBertForMultipleChoice,
    SqueezeBertForPreTraining,
    SqueezeBertForQuestionAnswering,
    SqueezeBertForSequenceClassification,
    SqueezeBertForTokenClassification,
    SqueezeBertModel,
)

__version__ = "0.1.0"
