"""Run an exported model without PyTorch: onnxruntime + numpy + tokenizers, nothing else.

``squeezebert export --model DIR --format onnx --out FOLDER`` writes a folder: ``model.onnx``, ``config.json``
(labels, head), the tokenizer files and a model card. On a machine with only ``onnxruntime``, ``numpy`` and
``tokenizers`` (and this package installed without its torch dependency):

    from squeezebert.onnx_backend import OnnxModel
    model = OnnxModel("FOLDER")                      # the session, config and tokenizer of the folder
    enc = model.tokenizer(["a text"], return_tensors=None)
    model(enc["input_ids"], enc["attention_mask"])   # -> {"logits": float32 array} (per the folder's head)

    from squeezebert.pipelines import pipeline
    classify = pipeline("text-classification", model="FOLDER")  # backend="onnxruntime" is chosen for a folder
    classify("a lovely film")

Neither import pulls in torch (``tests/test_onnx_backend.py`` runs them with torch blocked); the outputs match the
PyTorch model within the export's fp32 tolerance (``squeezebert.export.FP32_TOLERANCE``, checked at export).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import ARCHITECTURE_TO_HEAD, SqueezeBertConfig
from .tokenizer import Tokenizer

MODEL_FILE = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def create_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with all graph optimisations; ``threads`` intra-op threads (None: all cores)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("running an ONNX model needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An exported folder, ready to run: ``model(input_ids, attention_mask=None, token_type_ids=None)`` on integer
    arrays of shape (batch, sequence) -> ``{output name: float32 array}``: ``logits`` (classifiers: (B, labels);
    token classifiers: (B, S, labels)), ``start_logits`` / ``end_logits`` (QA: (B, S)) or ``last_hidden_state``
    (B, S, C) and ``pooler_output`` (B, C) (the encoder). ``config``, ``tokenizer`` and ``head`` describe it."""

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        self.path = Path(folder)
        if not (self.path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{self.path}: no {MODEL_FILE} (write the folder with: squeezebert export "
                                    "--model DIR --format onnx --out FOLDER)")
        self.config = SqueezeBertConfig.from_json_file(self.path / "config.json")
        self.head = next((ARCHITECTURE_TO_HEAD[a] for a in self.config.architectures or []
                          if a in ARCHITECTURE_TO_HEAD), "base")
        self.session = create_session(self.path / MODEL_FILE, threads)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._tokenizer: Tokenizer | None = None

    @property
    def tokenizer(self) -> Tokenizer:
        """The folder's tokenizer (loaded on first use; a folder exported from a preset has none)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_pretrained(self.path)
        return self._tokenizer

    def __call__(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                 outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        ids = self._check(input_ids, "input_ids")
        feed = {"input_ids": ids,
                "attention_mask": np.ones_like(ids) if attention_mask is None else self._check(attention_mask,
                                                                                              "attention_mask", ids),
                "token_type_ids": np.zeros_like(ids) if token_type_ids is None else self._check(token_type_ids,
                                                                                               "token_type_ids", ids)}
        names = list(outputs) if outputs is not None else self.output_names
        return dict(zip(names, self.session.run(names, feed)))

    def _check(self, value: Any, name: str, like: np.ndarray | None = None) -> np.ndarray:
        """int64 (batch, sequence) ids within the model's tables: a clear error instead of onnxruntime's."""
        array = np.asarray(value)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be integers of shape (batch, sequence), got {array.dtype} {array.shape}")
        if like is not None and array.shape != like.shape:
            raise ValueError(f"{name} shape {array.shape} does not match input_ids {like.shape}")
        if array.shape[1] > self.config.max_position_embeddings or 0 in array.shape:
            raise ValueError(f"{name}: sequence length must be 1..{self.config.max_position_embeddings}, "
                             f"got shape {array.shape}")
        if name == "input_ids" and (array.min() < 0 or array.max() >= self.config.vocab_size):
            raise ValueError(f"input_ids must be in [0, {self.config.vocab_size}), got values in "
                             f"[{array.min()}, {array.max()}]")
        return array.astype(np.int64, copy=False)

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, head={self.head!r}, outputs={self.output_names})"
