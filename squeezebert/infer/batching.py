"""Dynamic padding and length bucketing, so short texts cost little.

A model's cost grows with the padded length of its batch, so inputs are sorted by length, cut into batches under a
token budget (padded length x rows), and each batch is padded only to its own longest row, rounded up to a
multiple of ``multiple`` tokens. The rounding bounds the number of distinct shapes a compiled model sees (one
compile per shape) at the price of at most ``multiple - 1`` pad tokens per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: pad_batch serves torch-free runtimes (onnxruntime)
    import torch


def bucket_length(length: int, multiple: int = 16, max_length: int = 512) -> int:
    """``length`` rounded up to a multiple of ``multiple``, capped at ``max_length``."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    return min(max_length, -(-length // multiple) * multiple)


def plan_batches(lengths: Sequence[int], max_tokens: int = 8192, max_batch: int = 64, multiple: int = 16,
                 max_length: int = 512) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches: sorted by length (longest first, so the first batch shows the
    worst case early), each batch's padded size ``rows x bucket_length(longest)`` within ``max_tokens``."""
    if max_tokens < max_length:
        raise ValueError(f"max_tokens ({max_tokens}) must hold at least one row of max_length ({max_length})")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    current_len = 0
    for i in order:
        padded = bucket_length(min(lengths[i], max_length), multiple, max_length)
        longest = max(current_len, padded)
        if current and (len(current) >= max_batch or longest * (len(current) + 1) > max_tokens):
            batches.append(current)
            current, longest = [], padded
        current.append(i)
        current_len = longest
    if current:
        batches.append(current)
    return batches


def pad_batch(rows: Sequence[dict[str, Sequence[int]]], pad_token_id: int = 0, multiple: int = 16,
              max_length: int = 512) -> dict[str, np.ndarray]:
    """Pad token-id rows (``input_ids`` and optionally ``token_type_ids``) to the batch's bucketed length: int64
    ``input_ids``, ``attention_mask`` and ``token_type_ids`` arrays of shape (rows, padded length)."""
    if not rows:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(r["input_ids"]) for r in rows)
    if longest > max_length:
        raise ValueError(f"a row has {longest} tokens, more than max_length={max_length}; truncate it first")
    width = bucket_length(longest, multiple, max_length)
    ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = row["input_ids"]
        mask[i, :n] = 1
        if row.get("token_type_ids") is not None:
            types[i, :n] = row["token_type_ids"]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def collate(rows: Sequence[dict[str, Sequence[int]]], pad_token_id: int = 0, multiple: int = 16,
            max_length: int = 512) -> dict[str, "torch.Tensor"]:
    """:func:`pad_batch` as torch tensors."""
    import torch

    arrays = pad_batch(rows, pad_token_id, multiple, max_length)
    return {name: torch.from_numpy(array) for name, array in arrays.items()}
