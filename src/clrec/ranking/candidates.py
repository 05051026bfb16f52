"""Candidates for the ranking stage: the union of several retrievers' top lists.

The run's own model sees collaborative signal through its embeddings; cheap complementary
retrievers add what it may miss: item-to-item co-occurrence (:class:`~clrec.models.itemknn.
ItemKNN` over the history), overall popularity and recent popularity (the newest
``recent_share`` of the log's time span). Each retriever proposes its top ``per_retriever``
unseen items; a user's candidates are the union, sorted by item row. Every candidate keeps
every retriever's score (all of them score any item) and its rank in that retriever's list
(``per_retriever + 1`` and a flag of 0 where the retriever did not propose it).

The same functions serve a whole split (:meth:`Retrievers.candidates`, blocks of users) and
one request (:meth:`Retrievers.user_candidates`), so training and serving see the same
candidates and scores: ties are broken by item row in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clrec.data.matrix import binary_matrix
from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Recommender
from clrec.models.embedding import EmbeddingModel
from clrec.models.itemknn import ItemKNN

RetrieverName = Literal["model", "itemknn", "popular", "recent"]
RETRIEVERS: tuple[RetrieverName, ...] = ("model", "itemknn", "popular", "recent")
BLOCK_USERS = 512  # users scored at once: bounds the (B, I) score blocks

# scores (B, I) of the run's model for internal users (B,)
ModelScores = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CandidateConfig:
    """Which retrievers propose candidates and how many each (``per_retriever``);
    ``knn_neighbours`` per item for ItemKNN; ``recent_share`` of the log's time span counts
    as recent (without timestamps: that share of the last rows)."""

    retrievers: tuple[RetrieverName, ...] = RETRIEVERS
    per_retriever: int = 50
    knn_neighbours: int = 100
    recent_share: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "retrievers", tuple(self.retrievers))
        unknown = sorted(set(self.retrievers) - set(RETRIEVERS))
        if unknown or not self.retrievers or len(set(self.retrievers)) != len(self.retrievers):
            raise ClrecError(
                f"retrievers must be distinct names among {', '.join(RETRIEVERS)}, "
                f"got {list(self.retrievers)}"
            )
        for name, value in (
            ("per_retriever", self.per_retriever),
            ("knn_neighbours", self.knn_neighbours),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ClrecError(f"{name} must be an integer ≥ 1, got {value!r}")
        if not 0 < self.recent_share <= 1:
            raise ClrecError(f"recent_share must be in (0, 1], got {self.recent_share}")


@dataclass
class Candidates:
    """Candidates of several users in one table: rows ``offsets[u]:offsets[u+1]`` are
    ``users[u]``'s, sorted by item row."""

    users: np.ndarray  # (U,) internal user rows
    offsets: np.ndarray  # (U + 1,)
    items: np.ndarray  # (N,) item rows
    scores: np.ndarray  # (N, R) each retriever's score
    ranks: np.ndarray  # (N, R) 1-based rank in each retriever's list, per_retriever + 1 if absent

    def of(self, position: int) -> slice:
        """The candidate rows of the ``position``-th user."""
        return slice(int(self.offsets[position]), int(self.offsets[position + 1]))

    def per_user(self, values: np.ndarray) -> np.ndarray:
        """Each user's sum ``(U,)`` of a value per candidate row ``(N,)`` (0 for a user
        without candidates)."""
        owners = np.repeat(np.arange(len(self.users)), np.diff(self.offsets))  # (N,)
        return np.bincount(owners, weights=values, minlength=len(self.users))

    def select(self, keep: np.ndarray) -> Candidates:
        """Only the candidate rows where ``keep`` ``(N,)`` is true (users keep their order)."""
        counts = self.per_user(keep.astype(np.float64)).astype(np.int64)  # (U,)
        offsets = _offsets(counts)
        return Candidates(
            self.users, offsets, self.items[keep], self.scores[keep], self.ranks[keep]
        )


@dataclass
class Retrievers:
    """The non-model retrievers fitted on one history, and the model's scores."""

    config: CandidateConfig
    n_items: int
    similarity: sp.csr_matrix | None  # (I, I) ItemKNN neighbours, k per row
    popularity: np.ndarray  # (I,) interactions in the history
    recent: np.ndarray  # (I,) interactions in its newest share
    model_scores: ModelScores | None = field(default=None, repr=False)

    @classmethod
    def fit(cls, dataset: Dataset, history: pd.DataFrame, config: CandidateConfig) -> Retrievers:
        """Fit on ``history`` (``user``, ``item`` and optionally ``timestamp``) of
        ``dataset``'s users and items."""
        n_items = dataset.n_items
        items = history["item"].to_numpy(dtype=np.int64)
        popularity = np.bincount(items, minlength=n_items).astype(np.float32)
        recent_rows = recent_mask(history, config.recent_share)
        recent = np.bincount(items[recent_rows], minlength=n_items).astype(np.float32)
        similarity = None
        if "itemknn" in config.retrievers:
            knn = ItemKNN(k=config.knn_neighbours).fit(replace(dataset, interactions=history))
            similarity = knn.similarity
        return cls(config, n_items, similarity, popularity, recent)

    @property
    def names(self) -> tuple[RetrieverName, ...]:
        return self.config.retrievers

    # ------------------------------------------------------------------ scoring
    def score_block(
        self, name: RetrieverName, users: np.ndarray, history: sp.csr_matrix
    ) -> np.ndarray:
        """Scores ``(B, I)`` of retriever ``name`` for ``users`` ``(B,)`` whose history rows
        are ``history`` ``(B, I)``."""
        if name == "model":
            if self.model_scores is None:
                raise ClrecError("the model retriever needs the run's model scores")
            return np.asarray(self.model_scores(users), dtype=np.float32)
        if name == "itemknn":
            assert self.similarity is not None
            return np.asarray((history @ self.similarity).toarray(), dtype=np.float32)
        table = self.popularity if name == "popular" else self.recent
        return np.broadcast_to(np.log1p(table)[None, :], (len(users), self.n_items)).copy()

    # ------------------------------------------------------------------ candidates
    def candidates(
        self, users: np.ndarray, history: sp.csr_matrix, exclude: sp.csr_matrix
    ) -> Candidates:
        """Candidates of every user in ``users`` ``(U,)``: ``history`` ``(all users, I)`` is
        what the retrievers read, ``exclude`` ``(all users, I)`` what may not be proposed."""
        parts = list(self._blocks(users, history, exclude))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            width = len(self.names)
            return Candidates(
                users,
                np.zeros(1, np.int64),
                empty,
                np.zeros((0, width), np.float32),
                np.zeros((0, width), np.float32),
            )
        counts = np.concatenate([np.diff(p.offsets) for p in parts])
        return Candidates(
            users,
            _offsets(counts),
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.ranks for p in parts]),
        )

    def _blocks(
        self, users: np.ndarray, history: sp.csr_matrix, exclude: sp.csr_matrix
    ) -> Iterator[Candidates]:
        for start in range(0, len(users), BLOCK_USERS):
            block = users[start : start + BLOCK_USERS]  # (B,)
            rows = history[block]
            scores = np.stack([self.score_block(n, block, rows) for n in self.names])  # (R,B,I)
            yield self.union(block, scores, exclude[block])

    def union(self, users: np.ndarray, scores: np.ndarray, exclude: sp.csr_matrix) -> Candidates:
        """The candidates of ``users`` ``(B,)`` from every retriever's full scores
        ``(R, B, I)``, items in ``exclude`` ``(B, I)`` left out: each retriever's top
        ``per_retriever`` (ties by item row), their union sorted by item row."""
        n = self.config.per_retriever
        n_ret, n_users, n_items = scores.shape
        open_items = np.ones((n_users, n_items), dtype=bool)  # (B, I)
        rows, cols = exclude.nonzero()
        open_items[rows, cols] = False
        ranks = np.full((n_ret, n_users, n_items), n + 1, dtype=np.float32)  # (R, B, I)
        for r in range(n_ret):
            masked = np.where(open_items, scores[r], -np.inf)
            top = np.argsort(-masked, axis=1, kind="stable")[:, :n]  # (B, n)
            finite = np.isfinite(np.take_along_axis(masked, top, axis=1))
            place = np.broadcast_to(np.arange(1, n + 1, dtype=np.float32), top.shape)
            user_index = np.broadcast_to(np.arange(n_users)[:, None], top.shape)
            ranks[r, user_index[finite], top[finite]] = place[finite]
        chosen = (ranks <= n).any(axis=0)  # (B, I)
        user_at, item_at = np.nonzero(chosen)  # row-major: by user, then item row
        counts = np.bincount(user_at, minlength=n_users)
        return Candidates(
            users,
            _offsets(counts),
            item_at.astype(np.int64),
            np.ascontiguousarray(scores[:, user_at, item_at].T),  # (N, R)
            np.ascontiguousarray(ranks[:, user_at, item_at].T),  # (N, R)
        )

    def user_candidates(
        self, model_scores: np.ndarray | None, history_items: np.ndarray, exclude: np.ndarray
    ) -> Candidates:
        """One user's candidates (as :meth:`union` with one row): ``model_scores`` ``(I,)``
        over the catalogue (None without the model retriever), ``history_items`` ``(H,)``
        the rows the retrievers read, ``exclude`` ``(E,)`` rows never proposed."""
        history = binary_matrix(
            np.zeros(len(history_items), np.int64), history_items, 1, self.n_items
        )  # (1, I)
        blocks = []
        for name in self.names:
            if name == "model":
                if model_scores is None:
                    raise ClrecError("the model retriever needs the model's scores")
                blocks.append(np.asarray(model_scores, np.float32)[None, :])
            else:
                blocks.append(self.score_block(name, np.zeros(1, np.int64), history))
        excluded = sp.csr_matrix(
            (np.ones(len(exclude), bool), (np.zeros(len(exclude)), exclude)),
            shape=(1, self.n_items),
        )
        return self.union(np.zeros(1, np.int64), np.stack(blocks), excluded)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        arrays = {"popularity": self.popularity, "recent": self.recent}
        if self.similarity is not None:
            csr = self.similarity.tocsr()
            arrays |= {"sim_data": csr.data, "sim_indices": csr.indices, "sim_indptr": csr.indptr}
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path, config: CandidateConfig) -> Retrievers:
        with np.load(path) as saved:
            popularity, recent = saved["popularity"], saved["recent"]
            similarity = None
            if "sim_data" in saved:
                n = len(popularity)
                similarity = sp.csr_matrix(
                    (saved["sim_data"], saved["sim_indices"], saved["sim_indptr"]), shape=(n, n)
                )
        return cls(config, len(popularity), similarity, popularity, recent)


def model_scores_with(model: Recommender, later: pd.DataFrame) -> ModelScores:
    """The run's model's scores ``(B, I)`` with the interactions ``later`` (``user``, ``item``,
    optionally ``timestamp``; newer than its training data) folded into each user's state,
    as the service folds events in (:class:`~clrec.models.embedding.EmbeddingModel`); a model
    without that contract scores as trained."""
    if not isinstance(model, EmbeddingModel) or not len(later):
        return model.score
    embedding: EmbeddingModel = model
    order = ["user", "timestamp"] if "timestamp" in later.columns else ["user"]
    events = later.sort_values(order, kind="stable")
    by_user = {
        int(u): g.to_numpy(dtype=np.int64) for u, g in events.groupby("user", sort=False)["item"]
    }
    history_vectors = embedding.history_vectors()  # (I, D)
    item_vectors = embedding.item_vectors()  # (I, D)
    everything = np.arange(embedding.n_items, dtype=np.int64)

    def scores(users: np.ndarray) -> np.ndarray:
        plain = model.score(users)  # (B, I)
        for position, user in enumerate(users.tolist()):
            items = by_user.get(int(user))
            if items is None:
                continue
            state = embedding.user_state(int(user))
            for item in items.tolist():
                embedding.add_event(state, item, history_vectors[item])
            plain[position] = embedding.score_user(state, item_vectors, everything)
        return plain

    return scores


def recent_mask(history: pd.DataFrame, share: float) -> np.ndarray:
    """Rows ``(N,)`` of ``history`` in the newest ``share`` of its time span (by timestamp;
    without one, the last ``share`` of the rows)."""
    if not len(history):
        return np.zeros(0, dtype=bool)
    if "timestamp" in history.columns:
        stamps = history["timestamp"].to_numpy(dtype=np.float64)
        low, high = float(np.nanmin(stamps)), float(np.nanmax(stamps))
        return np.asarray(stamps >= high - share * (high - low))
    newest = round(share * len(history))
    return np.asarray(np.arange(len(history)) >= len(history) - newest)


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Start of each group ``(G + 1,)`` int64 from the group sizes ``counts`` ``(G,)``."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


__all__ = [
    "RETRIEVERS",
    "CandidateConfig",
    "Candidates",
    "RetrieverName",
    "Retrievers",
    "model_scores_with",
    "recent_mask",
]
