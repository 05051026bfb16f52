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

Modules: :mod:`~clrec.serving.index.config` (:class:`IndexConfig`),
:mod:`~clrec.serving.index.vector_index` (:class:`VectorIndex`: validation, updates, search),
:mod:`~clrec.serving.index.exact` (the chunked exact search), :mod:`~clrec.serving.index.hnsw`
(the graph and its filtered search) and :mod:`~clrec.serving.index.storage` (precision
encoding, files, atomic writes, checked loading).
"""

from clrec.serving.index.config import IndexConfig, IndexKind, Metric, Precision
from clrec.serving.index.storage import (
    FORMAT_VERSION,
    HNSW_FILE,
    META_FILE,
    SCALES_FILE,
    VECTORS_FILE,
)
from clrec.serving.index.vector_index import VectorIndex

__all__ = [
    "FORMAT_VERSION",
    "HNSW_FILE",
    "META_FILE",
    "SCALES_FILE",
    "VECTORS_FILE",
    "IndexConfig",
    "IndexKind",
    "Metric",
    "Precision",
    "VectorIndex",
]
