"""squeezebert: SqueezeBERT (Iandola et al., 2020) as a fast, Hugging Face-compatible PyTorch library."""

from typing import Any

from .config import PRESETS, SqueezeBertConfig, count_flops, preset

__version__ = "0.1.0"

# The model classes need torch; they are imported on first use, so that the torch-free parts (config, tokenizer,
# the onnxruntime pipelines of ``squeezebert.onnx_backend``) import on a machine without torch.
_MODEL_NAMES = (
    "HEADS",
    "ModelOutput",
    "SqueezeBertForMaskedLM",
    "SqueezeBertForMultipleChoice",
    "SqueezeBertForPreTraining",
    "SqueezeBertForQuestionAnswering",
    "SqueezeBertForSequenceClassification",
    "SqueezeBertForTokenClassification",
    "SqueezeBertModel",
)
__all__ = ["PRESETS", "SqueezeBertConfig", "count_flops", "preset", "__version__", *_MODEL_NAMES]


def __getattr__(name: str) -> Any:
    if name in _MODEL_NAMES:
        # checkpoint too: it gives the model classes their from_pretrained / save_pretrained (model.py cannot
        # import it; see SqueezeBertPreTrainedModel.checkpoint_io)
        from . import checkpoint, model  # noqa: F401

        return getattr(model, name)
    raise AttributeError(f"module 'squeezebert' has no attribute {name!r}")
