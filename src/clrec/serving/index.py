"""Item-vector indexes for top-k retrieval: exact (chunked matmul) and approximate (HNSW).

A :class:`VectorIndex` holds one vector per item, ids ``0 .. size-1`` in insertion order, and
answers "the k items with the highest score for each query vector", where the score is the
dot product (``metric="dot"``) or the cosine similarity (``metric="cosine"``: items and
queries are L2-normalised on the way in, so the dot product of the stored vectors *is* the
cosine).

* ``kind="exact"`` scores every item, ``chunk_items`` at a time with a torch matmul and a
  running top-k merge, so peak memory is about ``Q * chunk_items * 4`` bytes whatever the
  catalogue size. Item vectors are stored as float32, float16 or int8 (symmetric per-vector
  scale: ``v ≈ scale * q`` with ``q`` in ``[-127, 127]``) to trade accuracy for memory; the
  float32 originals are *not* kept, which is the point of the smaller precisions.
* ``kind="hnsw"`` searches an hnswlib graph (inner-product space) and always stores float32.
  A float32 copy of the vectors is kept beside the graph: it re-scores the returned ids
  exactly and serves the exact fallback used when filters are too selective for the graph.

Filters (``exclude`` per query, ``allowed`` for the whole batch) are honoured exactly by both
kinds: HNSW over-fetches, filters, grows the fetch and finally falls back to an exact search
over the allowed items, so a query gets ``k`` results whenever ``k`` items qualify. Results
are padded with id ``-1`` and score ``-inf`` when fewer qualify.

Not thread-safe: do not call :meth:`VectorIndex.add` / :meth:`VectorIndex.update` while
another thread searches. hnswlib is imported lazily (the ``serve`` extra), so the exact index
works without it.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any, Literal, get_args

import numpy as np
import torch

from clrec.errors import ClrecError

IndexKind = Literal["exact", "hnsw"]
Precision = Literal["float32", "float16", "int8"]
Metric = Literal["dot", "cosine"]

FORMAT_VERSION = 1
"""Version of the on-disk layout written by :meth:`VectorIndex.save`."""

META_FILE = "index.json"
VECTORS_FILE = "vectors.npy"
SCALES_FILE = "scales.npy"
HNSW_FILE = "hnsw.bin"

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
}
_INT8_MAX = 127.0
_HNSW_SAMPLE_ROWS = 64  # rows compared between hnsw.bin and vectors.npy on load


def _check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ClrecError(f"IndexConfig.{name} must be one of {list(choices)}, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ClrecError(f"IndexConfig.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ClrecError(f"IndexConfig.{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class IndexConfig:
    """How a :class:`VectorIndex` stores and searches item vectors.

    ``precision`` is the storage precision of the exact index (HNSW always stores float32).
    ``m`` / ``ef_construction`` / ``ef_search`` are the usual HNSW knobs (graph degree, build
    beam, query beam: higher is more accurate and slower; a search never uses a beam narrower
    than the results it must return). On 100k 64-d Gaussian items (a hard case for a graph)
    on one core of the reference machine (``bench/serve_request_cost.py``): ``m`` 16 with
    ``ef_search`` 96 found recall@10 0.983 in 0.14 ms a query, ``ef_search`` 64 0.965 in
    0.09 ms; ``m`` 32 took 0.18 ms for 0.979 (ef 64) and 0.30 ms for 0.992 (ef 96), and twice
    the build time. The service reports the recall it measured at start. ``chunk_items``
    bounds the memory of exact search. ``num_threads`` is the hnswlib thread count (``None``:
    all cores; use 1 for a reproducible graph); exact search uses torch's own thread setting.
    """

    kind: IndexKind = "exact"
    precision: Precision = "float32"
    metric: Metric = "dot"
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 96
    chunk_items: int = 65536
    seed: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, get_args(IndexKind))
        _check_choice("precision", self.precision, get_args(Precision))
        _check_choice("metric", self.metric, get_args(Metric))
        if self.kind == "hnsw" and self.precision != "float32":
            raise ClrecError(
                f"IndexConfig.precision={self.precision!r} applies to the exact index only; "
                "an HNSW index always stores float32 (use precision='float32')"
            )
        _check_int("m", self.m, 2)
        _check_int("ef_construction", self.ef_construction, 1)
        _check_int("ef_search", self.ef_search, 1)
        _check_int("chunk_items", self.chunk_items, 1)
        _check_int("seed", self.seed, 0)
        if self.num_threads is not None:
            _check_int("num_threads", self.num_threads, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return asdict(self)

    def structure(self) -> dict[str, Any]:
        """The fields that decide what a built index holds (not how it is searched): two
        configs with equal structures build the same index."""
        return {
            name: value
            for name, value in self.to_dict().items()
            if name not in ("ef_search", "num_threads", "chunk_items")
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (they mean a typo or a newer
        format), missing keys take their defaults."""
        if not isinstance(data, Mapping):
            raise ClrecError(f"index config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClrecError(f"unknown IndexConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


class VectorIndex:
    """Top-k search over item vectors; build with :meth:`build` or :meth:`load`."""

    def __init__(self, config: IndexConfig, dim: int) -> None:
        """An empty index; use :meth:`build` (which refuses empty input) or :meth:`load`."""
        if not isinstance(config, IndexConfig):
            raise ClrecError(f"config must be an IndexConfig, got {type(config).__name__}")
        self.config = config
        self._dim = int(dim)
        self._count = 0
        dtype = _STORAGE_DTYPES[config.precision]
        # Buffers grow geometrically so repeated add() calls are amortised O(N).
        self._buf: np.ndarray = np.empty((0, self._dim), dtype=dtype)  # (capacity, D)
        self._scales: np.ndarray | None = (  # (capacity,) int8 dequantisation scales
            np.empty((0,), dtype=np.float32) if config.precision == "int8" else None
        )
        self._hnsw: Any = None  # hnswlib.Index for kind="hnsw"

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
        stored, scales = _encode(vectors, self.config.precision)
        self._reserve(stop)
        self._buf[start:stop] = stored
        if self._scales is not None and scales is not None:
            self._scales[start:stop] = scales
        if self.config.kind == "hnsw":
            self._hnsw_add(vectors, ids, stop)
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
        stored, scales = _encode(vectors, self.config.precision)
        self._buf[ids_arr] = stored
        if self._scales is not None and scales is not None:
            self._scales[ids_arr] = scales
        if self._hnsw is not None:
            self._hnsw.add_items(vectors, ids_arr, num_threads=self._threads())

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
            ids, scores = self._hnsw_single(q, inner_k, candidates, exclude)
            if ids is not None and scores is not None:
                return self._padded(ids, scores, k)
        excl_rows, excl_cols = self._exclude_pairs(exclude, q.shape[0])  # (E,), (E,)
        if self._hnsw is None:
            ids, scores = _exact_topk(
                q, self._stored(), self._stored_scales(), inner_k, self.config.chunk_items,
                candidates, excl_rows, excl_cols,
            )  # fmt: skip
        else:
            ids, scores = self._hnsw_search(q, inner_k, candidates, excl_rows, excl_cols)
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
        truth, _ = _exact_topk(
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
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / VECTORS_FILE, lambda f: np.save(f, self._stored()))
        scales = self._stored_scales()
        if scales is not None:
            _atomic_write(out / SCALES_FILE, lambda f: np.save(f, scales))
        if self._hnsw is not None:
            handle, temp_name = tempfile.mkstemp(dir=out, prefix=f".{HNSW_FILE}.", suffix=".tmp")
            os.close(handle)
            try:
                self._hnsw.save_index(temp_name)
                os.replace(temp_name, out / HNSW_FILE)
            finally:
                if os.path.exists(temp_name):
                    os.unlink(temp_name)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "count": self._count,
            "dim": self._dim,
            "storage_dtype": str(self.storage_dtype),
        }
        text = json.dumps(meta, indent=2) + "\n"
        _atomic_write(out / META_FILE, lambda f: f.write(text.encode()))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> VectorIndex:
        """Read an index written by :meth:`save`, checking every file against ``index.json``."""
        root = Path(directory)
        meta = _read_meta(root / META_FILE)
        config = IndexConfig.from_dict(meta["config"])
        count, dim = meta["count"], meta["dim"]
        for name, value in (("count", count), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ClrecError(f"{root / META_FILE}: {name} must be a positive integer")
        dtype = _STORAGE_DTYPES[config.precision]
        if meta.get("storage_dtype", str(dtype)) != str(dtype):
            raise ClrecError(
                f"{root / META_FILE}: storage_dtype {meta['storage_dtype']!r} does not match "
                f"precision {config.precision!r}"
            )
        vectors = _load_npy(root / VECTORS_FILE, (count, dim), dtype)  # (I, D)
        if dtype.kind == "f" and not np.isfinite(vectors).all():
            raise ClrecError(f"{root / VECTORS_FILE}: holds NaN or infinite values")
        index = cls(config, dim)
        index._buf = vectors
        if config.precision == "int8":
            scales = _load_npy(root / SCALES_FILE, (count,), np.dtype(np.float32))  # (I,)
            if not (np.isfinite(scales).all() and (scales >= 0).all()):
                raise ClrecError(f"{root / SCALES_FILE}: scales must be finite and >= 0")
            index._scales = scales
        index._count = count
        if config.kind == "hnsw":
            index._hnsw = _load_hnsw(root / HNSW_FILE, config, vectors)
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
            self._hnsw.set_ef(config.ef_search)
            if config.num_threads is not None:
                self._hnsw.set_num_threads(config.num_threads)
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

    def _threads(self) -> int:
        return -1 if self.config.num_threads is None else self.config.num_threads

    def _reserve(self, needed: int) -> None:
        """Grow the storage buffers (and the HNSW capacity) to hold ``needed`` items."""
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

    def _hnsw_add(self, vectors: np.ndarray, ids: np.ndarray, needed: int) -> None:
        if self._hnsw is None:
            hnswlib = _import_hnswlib()
            self._hnsw = hnswlib.Index(space="ip", dim=self._dim)
            self._hnsw.init_index(
                max_elements=self._buf.shape[0],
                M=self.config.m,
                ef_construction=self.config.ef_construction,
                random_seed=self.config.seed,
            )
            self._hnsw.set_ef(self.config.ef_search)
        elif self._hnsw.get_max_elements() < needed:
            self._hnsw.resize_index(self._buf.shape[0])
        self._hnsw.add_items(vectors, ids, num_threads=self._threads())

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

    def _hnsw_search(
        self,
        q: np.ndarray,
        k: int,
        candidates: np.ndarray | None,
        excl_rows: np.ndarray,
        excl_cols: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Graph search with exact filtering: over-fetch, filter, grow, else exact fallback."""
        n_q, n = q.shape[0], self._count
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
            self._hnsw.set_ef(max(self.config.ef_search, size))
            try:
                labels, _ = self._hnsw.knn_query(q[pending], k=size, num_threads=self._threads())
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
        self._hnsw.set_ef(self.config.ef_search)
        answered = np.flatnonzero((ids >= 0).any(axis=1))  # rows filled from the graph
        if answered.size:
            ids[answered], scores[answered] = self._rescore(q[answered], ids[answered])
        if to_exact.size:
            ids[to_exact], scores[to_exact] = self._exact_subset(
                q, to_exact, k, candidates, excl_rows, excl_cols
            )
        return ids, scores

    def _hnsw_single(
        self,
        q: np.ndarray,
        k: int,
        candidates: np.ndarray | None,
        exclude: Sequence[np.ndarray | Sequence[int] | None] | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One query's graph search with plain-Python filtering (a few dozen labels), which
        costs a fraction of the batched path's array bookkeeping. ``(None, None)`` when the
        graph cannot answer (too selective filters): the caller takes the general path."""
        if exclude is not None and len(exclude) != 1:
            return None, None  # the general path reports the mismatch
        n = self._count
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
            self._hnsw.set_ef(max(self.config.ef_search, size))
            try:
                labels = self._hnsw.knn_query(q, k=size, num_threads=1)[0][0].tolist()
            except RuntimeError:  # graph could not return `size` results: rare, be exact
                break
            finally:
                self._hnsw.set_ef(self.config.ef_search)
            kept = [
                label
                for label in labels
                if label not in excluded and (allowed is None or label in allowed)
            ][:k]
            if len(kept) >= target:
                ids = np.asarray(kept, dtype=np.int64)  # (k',)
                scores = self._stored()[ids] @ q[0]  # (k',) exact float32
                order = np.argsort(-scores, kind="stable")
                return ids[order][None, :], scores[order][None, :]
            size *= 4
        return None, None

    def _rescore(self, q: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact float32 scores for graph results ``ids`` ``(P, k)``, re-sorted best first."""
        valid = ids >= 0  # (P, k)
        vectors = self._stored()[np.where(valid, ids, 0)]  # (P, k, D)
        scores = np.einsum("pd,pkd->pk", q, vectors).astype(np.float32)  # (P, k)
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")  # (P, k)
        return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)

    def _exact_subset(
        self,
        q: np.ndarray,
        rows: np.ndarray,
        k: int,
        candidates: np.ndarray | None,
        excl_rows: np.ndarray,
        excl_cols: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search for query rows ``rows`` (the HNSW fallback), filters remapped."""
        position = np.full(q.shape[0], -1, dtype=np.int64)  # (Q,) query row -> subset row
        position[rows] = np.arange(len(rows))
        sub_rows = position[excl_rows]  # (E,)
        inside = sub_rows >= 0
        return _exact_topk(
            q[rows], self._stored(), None, k, self.config.chunk_items,
            candidates, sub_rows[inside], excl_cols[inside],
        )  # fmt: skip


# ---------------------------------------------------------------------- module helpers


def _import_hnswlib() -> Any:
    try:
        import hnswlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ClrecError(
            "kind='hnsw' needs hnswlib: pip install 'clrec[serve]' (or hnswlib>=0.8)"
        ) from error
    return hnswlib


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


def _encode(vectors: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Storage form of float32 ``vectors`` ``(N, D)``: (stored, int8 scales or None)."""
    if precision == "float32":
        return vectors, None
    if precision == "float16":
        if np.abs(vectors).max() > np.finfo(np.float16).max:
            raise ClrecError("item vectors exceed the float16 range (65504); use float32")
        return vectors.astype(np.float16), None
    # int8: symmetric per-vector scale, v ≈ scale * q with q in [-127, 127].
    max_abs = np.abs(vectors).max(axis=1)  # (N,)
    scales = np.where(max_abs > 0, max_abs / _INT8_MAX, 1.0).astype(np.float32)  # (N,)
    quantised = np.clip(np.rint(vectors / scales[:, None]), -_INT8_MAX, _INT8_MAX)  # (N, D)
    return quantised.astype(np.int8), scales


def _exact_topk(
    queries: np.ndarray,
    store: np.ndarray,
    scales: np.ndarray | None,
    k: int,
    chunk: int,
    candidates: np.ndarray | None,
    excl_rows: np.ndarray,
    excl_cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``queries`` ``(Q, D)`` against ``store`` ``(I, D)``, chunk by chunk.

    Only items in ``candidates`` (sorted ids) are scored when given; ``(excl_rows,
    excl_cols)`` pairs are masked to -inf. Each chunk's top-k merges into a running top-k,
    so memory is ``O(Q * chunk)``. Returns ids ``(Q, k)`` (-1 padded) and scores ``(Q, k)``.
    """
    n_q = queries.shape[0]
    total = store.shape[0] if candidates is None else len(candidates)
    # Exclusions in candidate positions, sorted so each chunk finds its slice by bisection.
    rows, pos = excl_rows, excl_cols
    if candidates is not None and len(pos):
        at = np.searchsorted(candidates, pos)  # (E,)
        inside = at < len(candidates)
        inside[inside] = candidates[at[inside]] == pos[inside]
        rows, pos = rows[inside], at[inside]
    order = np.argsort(pos, kind="stable")
    rows, pos = rows[order], pos[order]  # (E,), (E,)

    q_t = torch.from_numpy(queries)  # (Q, D)
    best_scores = torch.full((n_q, k), -torch.inf, dtype=torch.float32)  # (Q, k)
    best_ids = torch.full((n_q, k), -1, dtype=torch.int64)  # (Q, k)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        if candidates is None:
            block = store[start:stop]  # (C, D)
            block_ids = torch.arange(start, stop, dtype=torch.int64)  # (C,)
            block_scales = None if scales is None else scales[start:stop]  # (C,)
        else:
            chunk_ids = candidates[start:stop]  # (C,)
            block = store[chunk_ids]  # (C, D)
            block_ids = torch.from_numpy(chunk_ids)
            block_scales = None if scales is None else scales[chunk_ids]  # (C,)
        block_t = torch.from_numpy(np.ascontiguousarray(block)).to(torch.float32)  # (C, D)
        chunk_scores = q_t @ block_t.T  # (Q, C)
        if block_scales is not None:
            chunk_scores *= torch.from_numpy(np.ascontiguousarray(block_scales))[None, :]
        lo, hi = np.searchsorted(pos, [start, stop])
        if hi > lo:
            hit_rows = torch.from_numpy(rows[lo:hi])  # (H,)
            hit_cols = torch.from_numpy(pos[lo:hi] - start)  # (H,)
            chunk_scores[hit_rows, hit_cols] = -torch.inf
        top = torch.topk(chunk_scores, k=min(k, stop - start), dim=1)  # (Q, kc) each
        merged_scores = torch.cat([best_scores, top.values], dim=1)  # (Q, k + kc)
        merged_ids = torch.cat([best_ids, block_ids[top.indices]], dim=1)  # (Q, k + kc)
        keep = torch.topk(merged_scores, k=k, dim=1)  # (Q, k) each
        best_scores = keep.values
        best_ids = torch.gather(merged_ids, 1, keep.indices)
    ids = best_ids.numpy().copy()  # (Q, k)
    out_scores = best_scores.numpy().copy()  # (Q, k)
    ids[np.isneginf(out_scores)] = -1
    return ids, out_scores


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temporary file in the same directory and ``os.replace``."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found; is this a saved VectorIndex directory?") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClrecError(f"{path}: unreadable index metadata: {error}") from error
    if not isinstance(meta, dict):
        raise ClrecError(f"{path}: expected a JSON object")
    missing = [key for key in ("format_version", "config", "count", "dim") if key not in meta]
    if missing:
        raise ClrecError(f"{path}: missing key(s) {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ClrecError(
            f"{path}: format_version {meta['format_version']!r} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    return meta


def _load_npy(path: Path, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    """A saved array, checked against the shape and dtype ``index.json`` promises."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found") from error
    except (OSError, ValueError, EOFError) as error:
        raise ClrecError(f"{path}: unreadable array: {error}") from error
    if not isinstance(arr, np.ndarray):
        raise ClrecError(f"{path}: expected a single .npy array")
    if arr.shape != shape or arr.dtype != dtype:
        raise ClrecError(
            f"{path}: holds {arr.dtype} {arr.shape}, but index.json says {dtype} {shape}"
        )
    return np.ascontiguousarray(arr)


def _hnsw_header(path: Path) -> tuple[int, int]:
    """(element count, bytes of vector data per element) from an hnswlib index file header.

    hnswlib writes ``offsetLevel0, max_elements, cur_element_count, size_data_per_element,
    label_offset, offsetData`` as little-endian size_t first; ``label_offset - offsetData`` is
    the vector size. Checked before loading because hnswlib trusts the caller's dimension.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(48)
    except FileNotFoundError as error:
        raise ClrecError(f"{path}: not found") from error
    except OSError as error:
        raise ClrecError(f"{path}: unreadable: {error}") from error
    if len(header) < 48:
        raise ClrecError(f"{path}: truncated hnswlib index")
    _, _, count, _, label_offset, data_offset = struct.unpack("<6Q", header)
    return count, label_offset - data_offset


def _load_hnsw(path: Path, config: IndexConfig, vectors: np.ndarray) -> Any:
    """The saved hnswlib graph, checked to hold exactly ``vectors`` ``(I, D)``."""
    count, dim = vectors.shape
    file_count, data_bytes = _hnsw_header(path)
    if file_count != count or data_bytes != dim * 4:
        raise ClrecError(
            f"{path}: holds {file_count} vectors of {data_bytes / 4:g} dims, but "
            f"{VECTORS_FILE} holds {count} of {dim}"
        )
    hnswlib = _import_hnswlib()
    graph = hnswlib.Index(space="ip", dim=dim)
    try:
        graph.load_index(str(path), max_elements=count)
        sample = np.unique(np.linspace(0, count - 1, min(count, _HNSW_SAMPLE_ROWS)).astype(int))
        stored = np.asarray(graph.get_items(sample), dtype=np.float32)  # (S, D)
    except (RuntimeError, ValueError, MemoryError) as error:
        raise ClrecError(f"{path}: unreadable hnswlib index: {error}") from error
    if graph.get_current_count() != count or not np.array_equal(stored, vectors[sample]):
        raise ClrecError(f"{path}: the graph's vectors differ from {VECTORS_FILE}")
    graph.set_ef(config.ef_search)
    if config.num_threads is not None:
        graph.set_num_threads(config.num_threads)
    return graph


__all__ = ["FORMAT_VERSION", "IndexConfig", "IndexKind", "Metric", "Precision", "VectorIndex"]
