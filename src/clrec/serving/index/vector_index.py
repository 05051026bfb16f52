"""The :class:`VectorIndex`: item vectors in insertion order (ids ``0 .. size-1``), their
validation, updates and filtered top-k search over the exact or the HNSW part."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clrec.errors import ClrecError
from clrec.serving.index.config import IndexConfig
from clrec.serving.index.exact import exact_topk
from clrec.serving.index.hnsw import HnswGraph
from clrec.serving.index.storage import STORAGE_DTYPES, encode, load_index, save_index


class VectorIndex:
    """Top-k search over item vectors; build with :meth:`build` or :meth:`load`."""

    def __init__(self, config: IndexConfig, dim: int) -> None:
        """An empty index; use :meth:`build` (which refuses empty input) or :meth:`load`."""
        if not isinstance(config, IndexConfig):
            raise ClrecError(f"config must be an IndexConfig, got {type(config).__name__}")
        self.config = config
        self._dim = int(dim)
        self._count = 0
        dtype = STORAGE_DTYPES[config.precision]
        # Buffers grow geometrically so repeated add() calls are amortised O(N).
        self._buf: np.ndarray = np.empty((0, self._dim), dtype=dtype)  # (capacity, D)
        self._scales: np.ndarray | None = (  # (capacity,) int8 dequantisation scales
            np.empty((0,), dtype=np.float32) if config.precision == "int8" else None
        )
        self._hnsw: HnswGraph | None = None  # kind="hnsw" only

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, item_vectors: np.ndarray, config: IndexConfig | None = None) -> VectorIndex:
        """Index ``item_vectors`` ``(I, D)``; item ``i`` gets id ``i``."""
        config = IndexConfig() if config is None else config
        vectors = _as_matrix(item_vectors, "item_vectors")  # (I, D)
        if vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise ClrecError(f"item_vectors is empty (shape {vectors.shape}); nothing to index")
        index = cls(config, vectors.shape[1])
        index.add(vectors)
        return index

    @property
    def size(self) -> int:
        """Number of items (ids are ``0 .. size-1``)."""
        return self._count

    @property
    def dim(self) -> int:
        """Vector dimension D."""
        return self._dim

    @property
    def storage_dtype(self) -> np.dtype[Any]:
        """dtype the item vectors are stored in (float32 / float16 / int8)."""
        return self._buf.dtype

    def __repr__(self) -> str:
        c = self.config
        return (
            f"VectorIndex(kind={c.kind!r}, precision={c.precision!r}, metric={c.metric!r}, "
            f"size={self.size}, dim={self.dim})"
        )

    def add(self, item_vectors: np.ndarray) -> np.ndarray:
        """Append ``item_vectors`` ``(N, D)``; returns their new ids ``(N,)`` int64.

        The items are searchable as soon as this returns.
        """
        vectors = self._prepare_items(item_vectors, "item_vectors")  # (N, D) float32
        start, stop = self._count, self._count + vectors.shape[0]
        ids = np.arange(start, stop, dtype=np.int64)  # (N,)
        if stop == start:
            return ids
        stored, scales = encode(vectors, self.config.precision)
        self._reserve(stop)
        self._buf[start:stop] = stored
        if self._scales is not None and scales is not None:
            self._scales[start:stop] = scales
        if self.config.kind == "hnsw":
            capacity = self._buf.shape[0]
            if self._hnsw is None:
                self._hnsw = HnswGraph.create(self._dim, capacity, self.config)
            else:
                self._hnsw.reserve(stop, capacity)
            self._hnsw.add(vectors, ids)
        self._count = stop
        return ids

    def update(self, ids: np.ndarray, item_vectors: np.ndarray) -> None:
        """Replace the vectors of existing items ``ids`` ``(N,)`` with ``item_vectors`` ``(N, D)``.

        The new vectors are searchable as soon as this returns (hnswlib re-links an element
        re-added under its label).
        """
        ids_arr = self._check_ids(ids, "update ids")  # (N,)
        if len(np.unique(ids_arr)) != len(ids_arr):
            raise ClrecError("update ids contain duplicates; give each item once")
        vectors = self._prepare_items(item_vectors, "item_vectors")  # (N, D) float32
        if vectors.shape[0] != len(ids_arr):
            raise ClrecError(
                f"update got {len(ids_arr)} ids but {vectors.shape[0]} vectors; they must match"
            )
        if len(ids_arr) == 0:
            return
        stored, scales = encode(vectors, self.config.precision)
        self._buf[ids_arr] = stored
        if self._scales is not None and scales is not None:
            self._scales[ids_arr] = scales
        if self._hnsw is not None:
            self._hnsw.add(vectors, ids_arr)

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Sequence[np.ndarray | Sequence[int] | None] | None = None,
        allowed: np.ndarray | Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best-first top-``k`` ids ``(Q, k)`` int64 and scores ``(Q, k)`` float32.

        ``exclude[q]``: item ids never returned for query ``q`` (e.g. items already seen);
        ids outside ``0 .. size-1`` are ignored, since a caller's history may name items the
        index does not hold. ``allowed``: a boolean mask ``(size,)`` or an array of ids that
        restricts every query's results (e.g. one category); unknown ids are an error here,
        since they almost certainly mean a wrong id space. Missing results are padded with
        id ``-1`` and score ``-inf``.
        """
        q = self._prepare_queries(queries)  # (Q, D)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ClrecError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        candidates = self._allowed_ids(allowed)  # (A,) sorted, or None for all items
        inner_k = min(k, self._count)  # never more than the catalogue; padded below
        if self._hnsw is not None and q.shape[0] == 1:  # the service's case: keep it lean
            ids, scores = self._hnsw.search_one(q, inner_k, self._stored(), candidates, exclude)
            if ids is not None and scores is not None:
                return self._padded(ids, scores, k)
        excl_rows, excl_cols = self._exclude_pairs(exclude, q.shape[0])  # (E,), (E,)
        if self._hnsw is None:
            ids, scores = exact_topk(
                q, self._stored(), self._stored_scales(), inner_k, self.config.chunk_items,
                candidates, excl_rows, excl_cols,
            )  # fmt: skip
        else:
            ids, scores = self._hnsw.search(
                q, inner_k, self._stored(), candidates, excl_rows, excl_cols
            )
        return self._padded(ids, scores, k)

    @staticmethod
    def _padded(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Results ``(Q, k')`` padded to ``(Q, k)`` with id -1 and score -inf."""
        pad = k - ids.shape[1]
        if pad > 0:
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)  # (Q, k)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)  # (Q, k)
        return ids, scores

    def recall_against_exact(
        self, sample_queries: np.ndarray, k: int = 10, *, reference: np.ndarray | None = None
    ) -> float:
        """Mean recall@k of this index's results against an exact float32 search.

        The exact search runs over ``reference`` ``(size, D)`` when given, else over this
        index's own float32 vectors (exact float32 and HNSW indexes keep them; a float16 /
        int8 index does not, so it needs the original vectors as ``reference``). An exact
        float32 index scores 1.0.
        """
        if reference is None:
            if self.storage_dtype != np.float32:
                raise ClrecError(
                    f"a {self.config.precision} index does not keep its float32 vectors; "
                    "pass the original vectors as reference="
                )
            truth_store = self._stored()  # (I, D)
        else:
            truth_store = self._prepare_items(reference, "reference")  # (I, D)
            if truth_store.shape[0] != self._count:
                raise ClrecError(
                    f"reference has {truth_store.shape[0]} rows but the index holds "
                    f"{self._count} items"
                )
        q = self._prepare_queries(sample_queries)  # (Q, D)
        if q.shape[0] == 0:
            raise ClrecError("recall_against_exact needs at least one sample query")
        found, _ = self.search(q, k)  # (Q, k); also validates k
        empty = np.empty(0, dtype=np.int64)
        truth, _ = exact_topk(
            q, truth_store, None, min(k, self._count), self.config.chunk_items, None, empty, empty
        )  # (Q, min(k, I))
        recalls = [
            len(np.intersect1d(t[t >= 0], f[f >= 0])) / max(int((t >= 0).sum()), 1)
            for t, f in zip(truth, found, strict=True)
        ]
        return float(np.mean(recalls))

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> Path:
        """Write ``vectors.npy`` (+ ``scales.npy`` for int8, ``hnsw.bin`` for HNSW) and
        ``index.json`` into ``directory``; each file is replaced atomically and the JSON,
        which :meth:`load` reads first, is written last."""
        return save_index(directory, self.config, self._stored(), self._stored_scales(), self._hnsw)

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Read an index written by :meth:`save`, checking every file against ``index.json``."""
        saved = load_index(directory)
        index = cls(saved.config, saved.vectors.shape[1])
        index._buf = saved.vectors  # (I, D)
        index._scales = saved.scales  # (I,) for int8, else None
        index._count = saved.vectors.shape[0]
        index._hnsw = saved.graph
        return index

    def with_search(self, config: IndexConfig) -> VectorIndex:
        """This index, searched from now on with ``config``'s search settings
        (``ef_search``, ``num_threads``, ``chunk_items``); ``config`` must describe the same
        structure (e.g. a saved graph loaded under today's search settings)."""
        if config.structure() != self.config.structure():
            raise ClrecError(
                f"index settings {config.structure()} describe another index than "
                f"{self.config.structure()}"
            )
        self.config = config
        if self._hnsw is not None:
            self._hnsw.configure(config)
        return self

    def vectors(self) -> np.ndarray:
        """The indexed vectors ``(I, D)`` as stored (float32, float16, or int8 codes), as a
        read-only view."""
        view = self._stored().view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ internals

    def _stored(self) -> np.ndarray:
        return self._buf[: self._count]  # (I, D)

    def _stored_scales(self) -> np.ndarray | None:
        return None if self._scales is None else self._scales[: self._count]  # (I,)

    def _reserve(self, needed: int) -> None:
        """Grow the storage buffers to hold ``needed`` items (:meth:`add` grows the graph)."""
        capacity = self._buf.shape[0]
        if needed <= capacity:
            return
        # Build allocates exactly; later adds grow by 1.5x to amortise the copies.
        new_capacity = needed if capacity == 0 else max(needed, capacity + capacity // 2)
        buf = np.empty((new_capacity, self._dim), dtype=self._buf.dtype)  # (capacity, D)
        buf[: self._count] = self._buf[: self._count]
        self._buf = buf
        if self._scales is not None:
            scales = np.empty((new_capacity,), dtype=np.float32)  # (capacity,)
            scales[: self._count] = self._scales[: self._count]
            self._scales = scales

    def _prepare_items(self, item_vectors: np.ndarray, what: str) -> np.ndarray:
        """Validated float32 copy ``(N, D)``, L2-normalised for the cosine metric."""
        vectors = _as_matrix(item_vectors, what)  # (N, D)
        if vectors.shape[1] != self._dim:
            raise ClrecError(
                f"{what} has dimension {vectors.shape[1]}, but the index holds "
                f"{self._dim}-dimensional vectors"
            )
        return _normalise(vectors) if self.config.metric == "cosine" else vectors

    def _prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        return self._prepare_items(queries, "queries")  # (Q, D)

    def _check_ids(self, ids: np.ndarray | Sequence[int], what: str) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.size == 0:
            return np.empty(0, dtype=np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ClrecError(
                f"{what} must be a 1-D array of integer ids, got {arr.dtype} {arr.shape}"
            )
        arr = arr.astype(np.int64)
        bad = arr[(arr < 0) | (arr >= self._count)]
        if bad.size:
            raise ClrecError(
                f"{what}: id {int(bad[0])} is not in the index (ids are 0..{self._count - 1})"
            )
        return arr

    def _allowed_ids(self, allowed: np.ndarray | Sequence[int] | None) -> np.ndarray | None:
        """Sorted unique allowed ids ``(A,)``, or None when every item is allowed."""
        if allowed is None:
            return None
        arr = np.asarray(allowed)
        if arr.dtype == np.bool_:
            if arr.shape != (self._count,):
                raise ClrecError(
                    f"allowed mask has shape {arr.shape}, expected ({self._count},) "
                    "(one flag per indexed item)"
                )
            ids = np.flatnonzero(arr).astype(np.int64)  # (A,)
        else:
            ids = np.unique(self._check_ids(arr, "allowed"))  # (A,)
        return None if len(ids) == self._count else ids

    def _exclude_pairs(
        self, exclude: Sequence[np.ndarray | Sequence[int] | None] | None, n_queries: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unique (query row, item id) pairs to drop, ids limited to ``0 .. size-1``."""
        empty = np.empty(0, dtype=np.int64)
        if exclude is None:
            return empty, empty
        if len(exclude) != n_queries:
            raise ClrecError(
                f"exclude has {len(exclude)} entries but there are {n_queries} queries; "
                "give one (possibly empty) id array per query"
            )
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        for row, item_ids in enumerate(exclude):
            if item_ids is None:
                continue
            arr = np.asarray(item_ids).ravel()
            if arr.size == 0:
                continue
            if arr.dtype.kind not in "iu":
                raise ClrecError(f"exclude[{row}] must hold integer item ids, got {arr.dtype}")
            arr = arr.astype(np.int64)
            arr = arr[(arr >= 0) & (arr < self._count)]
            rows.append(np.full(len(arr), row, dtype=np.int64))
            cols.append(arr)
        if not rows:
            return empty, empty
        keys = np.unique(np.concatenate(rows) * self._count + np.concatenate(cols))  # (E,)
        return keys // self._count, keys % self._count


def _as_matrix(values: np.ndarray, what: str) -> np.ndarray:
    """Finite float32 C-contiguous copy of a 2-D array, or a ClrecError naming the problem."""
    try:
        arr = np.array(values, dtype=np.float32, copy=True, order="C")  # (N, D)
    except (TypeError, ValueError) as error:
        raise ClrecError(f"{what} must be a numeric array: {error}") from error
    if arr.ndim != 2:
        raise ClrecError(f"{what} must be 2-D (rows, dim), got shape {arr.shape}")
    finite = np.isfinite(arr).all(axis=1)  # (N,)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ClrecError(
            f"{what} has {len(bad)} row(s) with NaN or infinite values (first: row {bad[0]})"
        )
    return arr


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero) for the cosine metric."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)  # (N, D)


__all__ = ["VectorIndex"]
