"""The approximate part of a vector index: an hnswlib graph (inner-product space) with exact
filtering.

A graph search over-fetches, filters, grows the fetch and finally falls back to an exact
search over the allowed items, so a query gets ``k`` results whenever ``k`` items qualify;
results are re-scored exactly against the index's float32 vectors. hnswlib is imported
lazily (the ``serve`` extra), so the exact index works without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from clrec.errors import ClrecError
from clrec.serving.index.config import IndexConfig
from clrec.serving.index.exact import exact_topk


def import_hnswlib() -> Any:
    """The hnswlib module, or a ClrecError naming the extra that installs it."""
    try:
        import hnswlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ClrecError(
            "kind='hnsw' needs hnswlib: pip install 'clrec[serve]' (or hnswlib>=0.8)"
        ) from error
    return hnswlib


class HnswGraph:
    """An hnswlib graph over an index's items (label = item id), searched under ``config``.

    The graph never returns vectors to callers: every search takes the index's float32
    vectors ``stored`` ``(I, D)``, which re-score the graph's results exactly and serve the
    exact fallback.
    """

    def __init__(self, graph: Any, config: IndexConfig) -> None:
        self.graph = graph  # hnswlib.Index
        self.config = config

    @classmethod
    def create(cls, dim: int, capacity: int, config: IndexConfig) -> HnswGraph:
        """An empty graph with room for ``capacity`` items."""
        graph = import_hnswlib().Index(space="ip", dim=dim)
        graph.init_index(
            max_elements=capacity,
            M=config.m,
            ef_construction=config.ef_construction,
            random_seed=config.seed,
        )
        graph.set_ef(config.ef_search)
        return cls(graph, config)

    @property
    def threads(self) -> int:
        """hnswlib's thread count for adds and batched searches (-1: all cores)."""
        return -1 if self.config.num_threads is None else self.config.num_threads

    def configure(self, config: IndexConfig) -> None:
        """Search from now on with ``config``'s ``ef_search`` and ``num_threads``."""
        self.config = config
        self.graph.set_ef(config.ef_search)
        if config.num_threads is not None:
            self.graph.set_num_threads(config.num_threads)

    def reserve(self, needed: int, capacity: int) -> None:
        """Grow the graph to ``capacity`` when it cannot hold ``needed`` items."""
        if self.graph.get_max_elements() < needed:
            self.graph.resize_index(capacity)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add ``vectors`` ``(N, D)`` under labels ``ids`` ``(N,)``; a label already in the
        graph is re-linked with its new vector."""
        self.graph.add_items(vectors, ids, num_threads=self.threads)

    def save(self, path: str) -> None:
        """Write the graph to ``path`` (hnswlib's own format)."""
        self.graph.save_index(path)

    def search(
        self,
        q: np.ndarray,
        k: int,
        stored: np.ndarray,
        candidates: np.ndarray | None,
        excl_rows: np.ndarray,
        excl_cols: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids ``(Q, k)`` and scores ``(Q, k)`` of queries ``q`` ``(Q, D)`` over
        ``stored`` ``(I, D)``: over-fetch, filter, grow, else exact fallback."""
        n_q, n = q.shape[0], stored.shape[0]
        n_allowed = n if candidates is None else len(candidates)
        allowed_mask: np.ndarray | None = None  # (I,)
        if candidates is not None:
            allowed_mask = np.zeros(n, dtype=bool)
            allowed_mask[candidates] = True
        # How many items qualify per query, so we know when a query's result is complete.
        relevant = np.ones(len(excl_cols), dtype=bool)  # (E,)
        if allowed_mask is not None:
            relevant = allowed_mask[excl_cols]
        n_excluded = np.bincount(excl_rows[relevant], minlength=n_q)  # (Q,)
        target = np.minimum(k, n_allowed - n_excluded)  # (Q,)
        ids = np.full((n_q, k), -1, dtype=np.int64)  # (Q, k)
        scores = np.full((n_q, k), -np.inf, dtype=np.float32)  # (Q, k)
        pending = np.flatnonzero(target > 0)  # query rows still to answer
        if pending.size == 0:
            return ids, scores
        # First fetch: enough that k survive the filters if they hit at the average rate.
        fraction = n_allowed / n
        fetch = np.ceil((k + n_excluded) / fraction).astype(np.int64)  # (Q,)
        to_exact = pending[2 * fetch[pending] > n]  # the graph would visit most items anyway
        pending = pending[2 * fetch[pending] <= n]
        excl_keys = excl_rows * n + excl_cols  # (E,) sorted (pairs come from np.unique)
        size = int(fetch[pending].max()) if pending.size else 0
        while pending.size:
            if 2 * size > n:
                to_exact = np.concatenate([to_exact, pending])
                break
            self.graph.set_ef(max(self.config.ef_search, size))
            try:
                labels, _ = self.graph.knn_query(q[pending], k=size, num_threads=self.threads)
            except RuntimeError:  # graph could not return `size` results: rare, be exact
                to_exact = np.concatenate([to_exact, pending])
                break
            labels = labels.astype(np.int64)  # (P, F)
            keep = np.ones(labels.shape, dtype=bool)  # (P, F)
            if allowed_mask is not None:
                keep &= allowed_mask[labels]
            if excl_keys.size:
                keep &= ~np.isin(pending[:, None] * n + labels, excl_keys)
            rank = np.cumsum(keep, axis=1)  # (P, F) results so far, in graph order
            done = rank[:, -1] >= target[pending]  # (P,)
            for p in np.flatnonzero(done):
                found = labels[p][keep[p] & (rank[p] <= k)]
                ids[pending[p], : len(found)] = found
            pending = pending[~done]
            size *= 4
        self.graph.set_ef(self.config.ef_search)
        answered = np.flatnonzero((ids >= 0).any(axis=1))  # rows filled from the graph
        if answered.size:
            ids[answered], scores[answered] = _rescore(q[answered], ids[answered], stored)
        if to_exact.size:
            ids[to_exact], scores[to_exact] = self._exact_subset(
                q, to_exact, k, stored, candidates, excl_rows, excl_cols
            )
        return ids, scores

    def search_one(
        self,
        q: np.ndarray,
        k: int,
        stored: np.ndarray,
        candidates: np.ndarray | None,
        exclude: Sequence[np.ndarray | Sequence[int] | None] | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One query's (``q`` ``(1, D)``) graph search with plain-Python filtering (a few
        dozen labels), which costs a fraction of the batched path's array bookkeeping.
        ``(None, None)`` when the graph cannot answer (too selective filters): the caller
        takes the general path."""
        if exclude is not None and len(exclude) != 1:
            return None, None  # the general path reports the mismatch
        n = stored.shape[0]
        excluded: set[int] = set()
        if exclude is not None and exclude[0] is not None:
            arr = np.asarray(exclude[0]).ravel()
            if arr.size and arr.dtype.kind not in "iu":
                return None, None
            excluded = set(arr.tolist())
        allowed = None if candidates is None else set(candidates.tolist())
        n_allowed = n if allowed is None else len(allowed)
        relevant = sum(1 for i in excluded if 0 <= i < n and (allowed is None or i in allowed))
        target = min(k, n_allowed - relevant)
        if target <= 0:
            return np.full((1, k), -1, dtype=np.int64), np.full((1, k), -np.inf, np.float32)
        size = math.ceil((k + relevant) * n / n_allowed)
        while 2 * size <= n:
            self.graph.set_ef(max(self.config.ef_search, size))
            try:
                labels = self.graph.knn_query(q, k=size, num_threads=1)[0][0].tolist()
            except RuntimeError:  # graph could not return `size` results: rare, be exact
                break
            finally:
                self.graph.set_ef(self.config.ef_search)
            kept = [
                label
                for label in labels
                if label not in excluded and (allowed is None or label in allowed)
            ][:k]
            if len(kept) >= target:
                ids = np.asarray(kept, dtype=np.int64)  # (k',)
                scores = stored[ids] @ q[0]  # (k',) exact float32
                order = np.argsort(-scores, kind="stable")
                return ids[order][None, :], scores[order][None, :]
            size *= 4
        return None, None

    def _exact_subset(
        self,
        q: np.ndarray,
        rows: np.ndarray,
        k: int,
        stored: np.ndarray,
        candidates: np.ndarray | None,
        excl_rows: np.ndarray,
        excl_cols: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search for query rows ``rows`` (the graph's fallback), filters remapped."""
        position = np.full(q.shape[0], -1, dtype=np.int64)  # (Q,) query row -> subset row
        position[rows] = np.arange(len(rows))
        sub_rows = position[excl_rows]  # (E,)
        inside = sub_rows >= 0
        return exact_topk(
            q[rows], stored, None, k, self.config.chunk_items,
            candidates, sub_rows[inside], excl_cols[inside],
        )  # fmt: skip


def _rescore(q: np.ndarray, ids: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 scores for graph results ``ids`` ``(P, k)`` of queries ``q`` ``(P, D)``,
    re-sorted best first."""
    valid = ids >= 0  # (P, k)
    vectors = stored[np.where(valid, ids, 0)]  # (P, k, D)
    scores = np.einsum("pd,pkd->pk", q, vectors).astype(np.float32)  # (P, k)
    scores[~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")  # (P, k)
    return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)


__all__ = ["HnswGraph", "import_hnswlib"]
