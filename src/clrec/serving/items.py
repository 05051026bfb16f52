"""The service's items: the artifact's catalogue plus items added through the API, their
vectors in both of the model's spaces, and the vector index over them.

Internally an item is its row: artifact items first, in artifact order (so a row below the
model's ``n_items`` is also the model's own item row), then API items in the order this
process first saw them. Not thread-safe: :class:`~clrec.serving.state.ServiceState` holds its
lock around every call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clrec.errors import ClrecError
from clrec.models.embedding import EmbeddingModel
from clrec.serving.artifact import Artifact
from clrec.serving.index import VectorIndex
from clrec.serving.settings import ServiceSettings

logger = logging.getLogger("clrec.serving")

INDEX_CACHE_DIR = "index-cache"
"""Folder of ``data_dir`` where built HNSW graphs are kept between restarts."""
_RECALL_K = 10
_RECALL_SEED = 0


class Rows:
    """A growable float32 matrix ``(N, D)``: amortised O(1) appends, in-place updates."""

    def __init__(self, initial: np.ndarray) -> None:
        self._buf = np.array(initial, dtype=np.float32, copy=True, order="C")  # (cap, D)
        self._count = initial.shape[0]

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self._count]

    def append(self, vector: np.ndarray) -> None:
        if self._count == self._buf.shape[0]:
            grown = np.empty((max(16, 2 * self._count), self._buf.shape[1]), dtype=np.float32)
            grown[: self._count] = self._buf[: self._count]
            self._buf = grown
        self._buf[self._count] = vector
        self._count += 1

    def set(self, row: int, vector: np.ndarray) -> None:
        self._buf[row] = vector


class ItemTable:
    """Ids, titles, API items' fields and vectors — history space (what a user pools, what
    the store keeps) and index space (what scores are dot products with) — plus the index."""

    def __init__(self, settings: ServiceSettings, artifact: Artifact, key: str) -> None:
        self.model: EmbeddingModel = artifact.model
        self.n_artifact = artifact.n_items
        self.ids: list[str] = list(artifact.item_ids)
        self.row: dict[str, int] = dict(artifact.item_index)
        self.titles: list[str | None] = catalogue_titles(artifact)
        self.pooled = Rows(self.model.history_vectors())  # (N, D) history space
        self.vectors = Rows(self.model.item_vectors())  # (N, D) index space
        self.content: dict[int, dict[str, str | None]] = {}  # API items' fields
        self.artifact = artifact
        self.index, self.source = _artifact_index(settings, self.vectors.view, key)

    def __len__(self) -> int:
        return len(self.ids)

    def set(self, item_id: str, pooled: np.ndarray, content: Mapping[str, str | None]) -> int:
        """Add or replace an item from its history-space vector ``(D,)``; returns its row."""
        pooled = np.asarray(pooled, dtype=np.float32).reshape(1, -1)  # (1, D)
        vector = self.model.index_vectors(pooled)  # (1, D)
        row = self.row.get(item_id)
        if row is None:
            row = int(self.index.add(vector)[0])
            self.ids.append(item_id)
            self.row[item_id] = row
            self.pooled.append(pooled[0])
            self.vectors.append(vector[0])
            self.titles.append(None)
        else:
            self.index.update(np.array([row]), vector)
            self.pooled.set(row, pooled[0])
            self.vectors.set(row, vector[0])
        self.content[row] = dict(content)
        title = content.get("title")
        if title is not None:
            self.titles[row] = title
        elif row >= self.n_artifact:
            self.titles[row] = None
        return row

    def fields(self, row: int) -> dict[str, str | None]:
        """An item's content fields: as written through the API, else the catalogue's."""
        if row in self.content:
            return dict(self.content[row])
        catalogue = self.artifact.catalogue
        values = catalogue.iloc[row]
        return {c: text_or_none(values[c]) for c in catalogue.columns if c != "id"}

    def image(self, row: int) -> str | None:
        """The catalogue's image field of an artifact item when it holds an http(s) URL a
        browser can show (never a local path, never an API item's field)."""
        if row >= self.n_artifact:
            return None
        catalogue = self.artifact.catalogue
        for name, kind in self.artifact.item_fields.items():
            if kind != "image" or name not in catalogue:
                continue
            value = text_or_none(catalogue[name].iat[row])
            if value and value.startswith(("https://", "http://")):
                return value
        return None

    def measure_recall(self, users: np.ndarray, sample: int) -> dict[str, Any]:
        """recall@10 of the index against exact search on up to ``sample`` of the user
        vectors ``users`` ``(U, D)`` (a fixed draw), and what it cost."""
        if users.shape[0] == 0:
            return {"recall@10": None}
        rng = np.random.default_rng(_RECALL_SEED)
        count = min(sample, users.shape[0])
        queries = users[np.sort(rng.choice(users.shape[0], count, replace=False))]  # (S, D)
        started = time.perf_counter()
        recall = self.index.recall_against_exact(
            queries, k=min(_RECALL_K, self.index.size), reference=self.vectors.view
        )
        return {
            "recall@10": round(recall, 4),
            "recall_sample": count,
            "recall_seconds": round(time.perf_counter() - started, 4),
        }

    def candidates(
        self, query: np.ndarray, k: int, excluded: np.ndarray | Collection[int], margin: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``(C,)`` of the index's top ``k + margin`` for ``query`` ``(D,)``, excluded rows
        filtered inside the search, and the index's similarities ``(C,)``: exact float32 dot
        products (recomputed when the index stores float16 / int8)."""
        want = min(k + margin, self.index.size)
        if not isinstance(excluded, np.ndarray):
            excluded = np.fromiter(excluded, dtype=np.int64, count=len(excluded))  # (E,)
        ids, scores = self.index.search(query[None, :], want, exclude=[excluded])  # (1, want)
        found = ids[0] >= 0  # (want,)
        rows = ids[0][found]  # (C,)
        if self.index.storage_dtype != np.float32:  # float16 / int8 scores are approximate
            return rows, self.vectors.view[rows] @ query
        return rows, scores[0][found]


def catalogue_titles(artifact: Artifact) -> list[str | None]:
    if "title" not in artifact.catalogue.columns:
        return [None] * artifact.n_items
    return [text_or_none(value) for value in artifact.catalogue["title"].tolist()]


def text_or_none(value: object) -> str | None:
    """A catalogue cell as text (None for a missing value)."""
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _artifact_index(
    settings: ServiceSettings, vectors: np.ndarray, key: str
) -> tuple[VectorIndex, str]:
    """The index of the artifact's item vectors ``(I, D)`` and where it came from
    (``"built"`` or ``"cache"``). An HNSW graph, whose build dominates start-up (about 40 s
    for 100k items on 2 cores), is kept in ``data_dir/index-cache/`` under a digest of the
    artifact and the index settings, so a restart loads it; a cached index that does not
    hold exactly the artifact's vectors is rebuilt."""
    config = settings.index
    if config.kind != "hnsw" or not settings.index_cache:
        return VectorIndex.build(vectors, config), "built"
    digest = hashlib.sha256(
        json.dumps([key, config.structure()], sort_keys=True).encode()
    ).hexdigest()[:24]
    folder = Path(settings.data_dir).expanduser() / INDEX_CACHE_DIR / digest
    if (folder / "index.json").is_file():
        try:
            cached = VectorIndex.load(folder).with_search(config)
            if cached.size == len(vectors) and np.array_equal(cached.vectors(), vectors):
                return cached, "cache"
            logger.warning("cached index %s does not match the artifact; rebuilding", folder)
        except ClrecError as error:
            logger.warning("cached index %s unreadable (%s); rebuilding", folder, error)
    index = VectorIndex.build(vectors, config)
    try:
        index.save(folder)
    except OSError as error:  # a read-only data folder costs start-up time, nothing else
        logger.warning("could not cache the index in %s: %s", folder, error)
    return index, "built"
