"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Recommender, Validator


class Popularity(Recommender):
    """Scores an item by its number of training interactions (ties: lower item id first)."""

    name = "popularity"

    def __init__(self) -> None:
        self.item_counts: np.ndarray | None = None  # (n_items,)

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        counts = np.bincount(train.interactions["item"].to_numpy(), minlength=train.n_items)
        # A tiny decreasing offset breaks ties by item id, so rankings are deterministic.
        self.item_counts = counts.astype(np.float32) - np.arange(train.n_items) * 1e-7
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.item_counts is None:
            raise ClrecError("Popularity.score called before fit")
        return np.broadcast_to(self.item_counts, (len(users), len(self.item_counts)))

    def save(self, directory: str | Path) -> Path:
        if self.item_counts is None:
            raise ClrecError("Popularity.save called before fit")
        out = self._start_save(directory)
        np.save(out / "item_counts.npy", self.item_counts)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        model = cls()
        model.item_counts = np.load(Path(directory) / "item_counts.npy")
        return model
