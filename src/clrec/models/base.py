"""The Recommender contract every model implements: fit / score / recommend / save / load."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
import torch

from clrec.data.schema import Dataset
from clrec.errors import ClrecError

Validator = Callable[["Recommender"], dict[str, float]]
"""Scores a model on validation data (e.g. ``{"ndcg@10": 0.31, ...}``); iterative models call
it between epochs for early stopping and the training curve."""


class Recommender(ABC):
    """A model that scores every catalogue item for a batch of users."""

    name: str = "recommender"

    @classmethod
    def from_config(cls, params: dict[str, Any]) -> Self:
        """Build from named hyper-parameters (a config's ``model.params``)."""
        return cls(**params)

    @abstractmethod
    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        """Learn from ``train`` (a Dataset holding only training interactions).

        Iterative models evaluate with ``validator`` between epochs, keep the best state and
        record the curve in :attr:`history`; closed-form models ignore it.
        """

    @property
    def history(self) -> list[dict[str, float]]:
        """Training curve: one dict per evaluated epoch (loss, validation metrics)."""
        return []

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(len(users), n_items)`` float32; higher means recommend first.

        The caller owns the result and may write into it (the evaluator masks seen items in
        place), so never return a writeable view of the model's own state.
        """

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

    def _start_save(self, directory: str | Path, **meta: Any) -> Path:
        """Create ``directory`` and write its ``model.json`` (the name ``load_model`` reads)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"model": self.name, **meta}
        (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return out

    @classmethod
    def _read_manifest(cls, directory: str | Path) -> dict[str, Any]:
        """The ``model.json`` written by :meth:`_start_save`, checked to name this class."""
        root = Path(directory)
        meta: dict[str, Any] = json.loads((root / "model.json").read_text())
        if meta.get("model") != cls.name:
            raise ClrecError(f"{root}: holds a {meta.get('model')!r} model, not {cls.name!r}")
        return meta

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write everything needed to score again to ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Self:
        """Restore a model written by :meth:`save`."""
