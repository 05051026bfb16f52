"""Fusing any number of content modalities into one item vector, tolerant of missing ones.

Each modality ``m`` has its own projection ``h_m = MLP_m(x_m)`` into the model's space. An
attention gate scores every present modality of an item (``a_m ∝ exp(q · tanh(W h_m))``,
masked to the modalities the item has) and the fused vector is ``Σ a_m h_m``; ``mean``
fusion weights present modalities equally. During training each present modality is dropped
with probability ``modality_dropout`` (an item always keeps at least one), so the model learns
to cope when a new item arrives with text but no image, or the reverse.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from clrec.errors import ClrecError

FusionKind = Literal["attention", "mean"]


class ModalityFusion(nn.Module):
    """Projects each modality to ``out_dim`` and fuses the present ones per item."""

    def __init__(
        self,
        dims: dict[str, int],
        out_dim: int,
        *,
        kind: FusionKind = "attention",
        hidden: int = 0,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not dims:
            raise ClrecError("ModalityFusion needs at least one modality")
        if kind not in ("attention", "mean"):
            raise ClrecError(f"fusion must be 'attention' or 'mean', got {kind!r}")
        if not 0 <= modality_dropout < 1:
            raise ClrecError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.names = sorted(dims)
        self.in_dims = dict(dims)
        self.kind = kind
        self.modality_dropout = modality_dropout
        self.projections = nn.ModuleDict(
            {name: _projection(dims[name], out_dim, hidden) for name in self.names}
        )
        self.gate = nn.Linear(out_dim, out_dim) if kind == "attention" else None
        self.query = nn.Parameter(torch.zeros(out_dim)) if kind == "attention" else None

    def forward(
        self,
        features: dict[str, Tensor],
        present: dict[str, Tensor],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Fused ``(N, out_dim)`` from ``features[m]`` ``(N, d_m)`` (NaN-free) and ``present[m]``
        ``(N,)`` bool; an item with no modality gets a zero vector."""
        return self.parts(features, present, generator).sum(dim=1)

    def parts(
        self,
        features: dict[str, Tensor],
        present: dict[str, Tensor],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Each modality's weighted term ``a_m h_m`` ``(N, M, out_dim)`` (modalities in
        :attr:`names` order; the fused vector is their sum, so a score that is linear in it
        splits exactly by modality)."""
        projected = torch.stack([self.projections[m](features[m]) for m in self.names], 1)
        # (N, M, D)
        mask = torch.stack([present[m] for m in self.names], dim=1)  # (N, M)
        if self.training and self.modality_dropout > 0:
            mask = _drop_modalities(mask, self.modality_dropout, generator)
        if self.gate is not None and self.query is not None:
            logits = torch.tanh(self.gate(projected)) @ self.query  # (N, M)
        else:
            logits = torch.zeros(mask.shape, device=projected.device)
        logits = logits.masked_fill(~mask, -torch.inf)
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0)  # (N, M); all-missing rows → 0
        return weights.unsqueeze(2) * projected  # (N, M, D)


def _projection(in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


def _drop_modalities(mask: Tensor, rate: float, generator: torch.Generator | None) -> Tensor:
    """Drop each present modality with probability ``rate``; keep one where all would go."""
    draws = torch.rand(mask.shape, generator=generator).to(mask.device)  # (N, M)
    kept = mask & (draws >= rate)
    lost_all = mask.any(dim=1) & ~kept.any(dim=1)  # (N,)
    if bool(lost_all.any()):
        # restore the present modality with the highest draw in those rows
        choice = torch.where(mask, draws, -1.0).argmax(dim=1)  # (N,)
        restore = torch.zeros_like(mask)
        restore[torch.arange(len(mask), device=mask.device), choice] = True
        kept = kept | (restore & lost_all.unsqueeze(1))
    return kept
