"""Item-based k-nearest-neighbours with cosine similarity and shrinkage (as RecBole's ItemKNN).

sim(i, j) = (x_i · x_j) / (‖x_i‖ ‖x_j‖ + shrink), keeping each item's ``k`` most similar
neighbours; a user's score for j sums sim(i, j) over the items i in the user's history.
Similarities are built in item blocks, so memory stays at block × items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Recommender, Validator


class ItemKNN(Recommender):
    """Neighbourhood model; ``k`` neighbours per item, ``shrink`` damps rare co-occurrences."""

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0, block_size: int = 2048) -> None:
        if k < 1 or shrink < 0 or block_size < 1:
            raise ClrecError(f"ItemKNN needs k >= 1 and shrink >= 0, got k={k}, shrink={shrink}")
        self.k = k
        self.shrink = shrink
        self.block_size = block_size
        self.similarity: sp.csr_matrix | None = None  # (n_items, n_items), k per row
        self.seen: sp.csr_matrix | None = None  # (n_users, n_items)

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        seen = interaction_matrix(train.interactions, train.n_users, train.n_items)
        by_item = seen.T.tocsr()  # (I, U)
        norms = np.sqrt(np.asarray(by_item.multiply(by_item).sum(axis=1)).ravel())  # (I,)
        n_items = train.n_items
        k = min(self.k, max(n_items - 1, 1))
        rows, cols, values = [], [], []
        blocks = range(0, n_items, self.block_size)
        for start in tqdm(blocks, desc="itemknn similarities", unit="block", leave=False):
            stop = min(start + self.block_size, n_items)
            overlap = torch.from_numpy((by_item[start:stop] @ seen).toarray())  # (b, I)
            denominator = np.outer(norms[start:stop], norms) + self.shrink + 1e-12
            similarity = overlap / torch.from_numpy(denominator)
            block_rows = torch.arange(stop - start)
            similarity[block_rows, block_rows + start] = 0.0  # an item is not its own neighbour
            top = torch.topk(similarity, k=k, dim=1)
            rows.append(np.repeat(np.arange(start, stop), k))
            cols.append(top.indices.numpy().ravel())
            values.append(top.values.numpy().ravel())
        matrix = sp.csr_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_items, n_items),
            dtype=np.float32,
        )
        matrix.eliminate_zeros()
        # RecBole keeps each item's top-k *columns*: score_j = sum_i x_ui sim(i, j) over the
        # k items i most similar to j, so the kept neighbourhood belongs to the scored item.
        self.similarity = matrix.T.tocsr()
        self.seen = seen
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.similarity is None or self.seen is None:
            raise ClrecError("ItemKNN.score called before fit")
        return np.asarray((self.seen[users] @ self.similarity).todense(), dtype=np.float32)

    def save(self, directory: str | Path) -> Path:
        if self.similarity is None or self.seen is None:
            raise ClrecError("ItemKNN.save called before fit")
        out = self._start_save(directory, k=self.k, shrink=self.shrink)
        sp.save_npz(out / "similarity.npz", self.similarity)
        sp.save_npz(out / "seen.npz", self.seen)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        root = Path(directory)
        meta = json.loads((root / "model.json").read_text())
        model = cls(k=int(meta["k"]), shrink=float(meta["shrink"]))
        model.similarity = sp.load_npz(root / "similarity.npz").tocsr()
        model.seen = sp.load_npz(root / "seen.npz").tocsr()
        return model
