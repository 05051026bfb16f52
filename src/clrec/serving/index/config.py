"""How a vector index stores and searches: :class:`IndexConfig`, validated on creation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import numpy as np

from clrec.errors import ClrecError

IndexKind = Literal["exact", "hnsw"]
Precision = Literal["float32", "float16", "int8"]
Metric = Literal["dot", "cosine"]


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


__all__ = ["IndexConfig", "IndexKind", "Metric", "Precision"]
