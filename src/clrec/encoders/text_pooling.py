"""Token batches → text vectors: length-sorted batching, padding and pooling.

Texts are sorted by token length and batched, so each batch pads to a similar length;
:func:`pad_batch` right-pads one batch and the pooling functions turn its token states into
one vector per text. :func:`pool_numpy` (the ONNX path) and :func:`pool_torch` (the torch
path) compute the same function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from clrec.encoders.text_model import Pooling

if TYPE_CHECKING:
    import torch


def length_sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Positions grouped into batches of similar length (longest first).

    Concatenating the batches gives a permutation of ``range(len(lengths))``; writing each
    batch's results to its positions restores input order. The sort is stable, so equal
    lengths keep input order.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pool_numpy(
    hidden: np.ndarray, mask: np.ndarray, pooling: Pooling, normalize: bool
) -> np.ndarray:
    """Token states (B, L, H) and attention mask (B, L) → one vector per text (B, H)."""
    if pooling == "cls":
        pooled = hidden[:, 0, :].astype(np.float32)  # (B, H)
    else:
        weights = mask.astype(np.float32)[:, :, None]  # (B, L, 1)
        total = (hidden * weights).sum(axis=1)  # (B, H)
        pooled = total / np.maximum(weights.sum(axis=1), 1e-9)  # (B, H)
    if normalize:
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


def pool_torch(
    hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling, normalize: bool
) -> torch.Tensor:
    """Torch twin of :func:`pool_numpy`: (B, L, H) states, (B, L) mask → (B, H)."""
    import torch

    if pooling == "cls":
        pooled = hidden[:, 0, :]  # (B, H)
    else:
        weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        total = (hidden * weights).sum(dim=1)  # (B, H)
        pooled = total / weights.sum(dim=1).clamp(min=1e-9)  # (B, H)
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)
    return pooled


def pad_batch(
    encoded: Mapping[str, Sequence[Sequence[int]]], positions: np.ndarray, pad_id: int
) -> dict[str, np.ndarray]:
    """Right-pad the token lists at ``positions`` to the batch's longest: name → (B, L) int64."""
    ids = encoded["input_ids"]
    width = max(len(ids[int(p)]) for p in positions)
    out: dict[str, np.ndarray] = {}
    for name, rows in encoded.items():
        fill = pad_id if name == "input_ids" else 0
        array = np.full((len(positions), width), fill, dtype=np.int64)  # (B, L)
        for row, position in enumerate(positions):
            values = rows[int(position)]
            array[row, : len(values)] = values
        out[name] = array
    return out
