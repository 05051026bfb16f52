"""Embeddings cached on disk by (encoder identity, content hash).

One SQLite file in WAL mode: each :meth:`EmbeddingCache.put_many` is one transaction, so
several processes may write at once and a process killed mid-write (kill -9) leaves only
whole, committed entries behind. Vectors are stored as float32 bytes next to their
dimension, which is checked on every read; an entry whose bytes do not match is treated as
missing (and so re-encoded) rather than returned.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from clrec.errors import ClrecError

DB_NAME = "embeddings.sqlite3"
# SQLite allows at least 999 bound variables per statement; stay well below.
_CHUNK = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
    identity TEXT PRIMARY KEY,
    dim INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    identity TEXT NOT NULL,
    hash TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (identity, hash)
) WITHOUT ROWID;
"""


def content_hash(content: str | bytes) -> str:
    """SHA-256 hex digest of the content (text as UTF-8): the cache key of one item."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """Vectors keyed by (encoder identity, content hash) in ``<directory>/embeddings.sqlite3``.

    ``identity`` must name the encoder and every setting that changes its output (model,
    weights hash, truncation, pooling, backend, ...), so a change of settings never serves
    stale vectors. All vectors of one identity share one dimension.
    """

    def __init__(self, directory: str | Path, *, timeout: float = 60.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a crashed process in WAL mode (not a power cut).
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as err:
            raise ClrecError(f"{self.path}: cannot open the embedding cache ({err})") from err

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the database connection; the cache cannot be used afterwards."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ClrecError(f"{self.path}: the embedding cache is closed")
        return self._conn

    # ------------------------------------------------------------------ reads
    def dim(self, identity: str) -> int | None:
        """Dimension of the vectors stored for ``identity``, or None when it has none."""
        row = self.conn.execute(
            "SELECT dim FROM identities WHERE identity = ?", (identity,)
        ).fetchone()
        return int(row[0]) if row else None

    def get_many(self, identity: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached vectors (float32, shape (d,)) for those of ``hashes`` that are present."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        try:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    "SELECT hash, dim, vector FROM vectors "
                    f"WHERE identity = ? AND hash IN ({marks})",
                    (identity, *chunk),
                ).fetchall()
                for key, dim, blob in rows:
                    # A row whose bytes disagree with its dimension is never served.
                    if len(blob) == 4 * dim:
                        found[key] = np.frombuffer(blob, dtype=np.float32).copy()
        except sqlite3.DatabaseError as err:
            raise ClrecError(f"{self.path}: cannot read the embedding cache ({err})") from err
        return found

    def count(self, identity: str | None = None) -> int:
        """Number of cached vectors, for one identity or in all."""
        if identity is None:
            row = self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
        else:
            row = self.conn.execute(
                "SELECT COUNT(*) FROM vectors WHERE identity = ?", (identity,)
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ writes
    def put_many(self, identity: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store vectors by content hash in one transaction (all of them or none).

        Raises :class:`ClrecError` when the vectors' dimension differs from each other or
        from what this identity already stores.
        """
        if not vectors:
            return
        rows: list[tuple[str, str, int, bytes]] = []
        dims = set()
        for key, vector in vectors.items():
            flat = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)  # (d,)
            dims.add(flat.shape[0])
            rows.append((identity, key, flat.shape[0], flat.tobytes()))
        if len(dims) != 1:
            raise ClrecError(f"vectors for {identity!r} have mixed dimensions {sorted(dims)}")
        dim = dims.pop()
        conn = self.conn
        try:
            # IMMEDIATE takes the write lock up front, so concurrent writers queue on
            # busy_timeout instead of failing half-way through a transaction.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT OR IGNORE INTO identities (identity, dim) VALUES (?, ?)",
                    (identity, dim),
                )
                stored = conn.execute(
                    "SELECT dim FROM identities WHERE identity = ?", (identity,)
                ).fetchone()[0]
                if int(stored) != dim:
                    raise ClrecError(
                        f"{self.path}: {identity!r} stores {stored}-d vectors, got {dim}-d"
                    )
                conn.executemany(
                    "INSERT OR REPLACE INTO vectors (identity, hash, dim, vector) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise ClrecError(f"{self.path}: cannot write the embedding cache ({err})") from err
