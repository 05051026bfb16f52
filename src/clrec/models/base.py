"""The Recommender contract every model implements: fit / score / recommend / save / load."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp
import torch

from clrec.data.schema import Dataset


class Recommender(ABC):
    """A model that scores every catalogue item for a batch of users."""

    name: str = "recommender"

    @abstractmethod
    def fit(self, train: Dataset) -> Self:
        """Learn from ``train`` (a Dataset holding only training interactions)."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` float32; higher means recommend first."""

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids and scores per user, ``(B, k)`` each, skipping ``exclude[u]``."""
        scores = torch.from_numpy(np.ascontiguousarray(self.score(users), dtype=np.float32))
        if exclude is not None:
            rows = exclude[users].tocoo()
            scores[torch.from_numpy(rows.row), torch.from_numpy(rows.col)] = -torch.inf
        top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1)
        return top.indices.numpy(), top.values.numpy()

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write everything needed to score again to ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Self:
        """Restore a model written by :meth:`save`."""
