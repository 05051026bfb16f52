"""Embeddings cached on disk by (encoder identity, content hash).

One SQLite file in WAL mode: each :meth:`EmbeddingCache.put_many` is one transaction, so
several processes may write at once and a process killed mid-write (kill -9) leaves only
whole, committed entries behind. Vectors are stored as float32 bytes next to their dimension
and a BLAKE2b digest of the bytes, both checked on every read, with the values' finiteness:
an entry that fails any check (a damaged page, a stray write, an entry from before digests)
is treated as missing — so it is re-encoded and overwritten — never returned. Non-finite
vectors are never stored.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from clrec.errors import ClrecError

logger = logging.getLogger(__name__)

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
    digest BLOB,
    PRIMARY KEY (identity, hash)
) WITHOUT ROWID;
"""


def blob_digest(blob: bytes) -> bytes:
    """The 16-byte BLAKE2b digest stored beside a vector's bytes."""
    return hashlib.blake2b(blob, digest_size=16).digest()


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
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(vectors)")}
            if "digest" not in columns:  # a cache written before digests: entries re-encode
                self._conn.execute("ALTER TABLE vectors ADD COLUMN digest BLOB")
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
        rejected = 0
        try:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    "SELECT hash, dim, vector, digest FROM vectors "
                    f"WHERE identity = ? AND hash IN ({marks})",
                    (identity, *chunk),
                ).fetchall()
                for key, dim, blob, digest in rows:
                    vector = _checked(blob, dim, digest)
                    if vector is None:
                        rejected += 1
                    else:
                        found[key] = vector
        except sqlite3.DatabaseError as err:
            raise ClrecError(f"{self.path}: cannot read the embedding cache ({err})") from err
        if rejected:
            logger.warning(
                "%s: %d cached vector(s) failed their checks (digest, size or finiteness); "
                "they are encoded again",
                self.path,
                rejected,
            )
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
        rows: list[tuple[str, str, int, bytes, bytes]] = []
        dims = set()
        for key, vector in vectors.items():
            flat = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)  # (d,)
            dims.add(flat.shape[0])
            if not np.isfinite(flat).all():
                continue  # never cached: a non-finite vector is a failed encoding
            blob = flat.tobytes()
            rows.append((identity, key, flat.shape[0], blob, blob_digest(blob)))
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
                    "INSERT OR REPLACE INTO vectors (identity, hash, dim, vector, digest) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise ClrecError(f"{self.path}: cannot write the embedding cache ({err})") from err


def _checked(blob: bytes, dim: int, digest: bytes | None) -> np.ndarray | None:
    """The stored vector ``(dim,)`` if its bytes match their size and digest and its
    values are finite, else None."""
    if len(blob) != 4 * dim or digest is None or blob_digest(blob) != digest:
        return None
    vector = np.frombuffer(blob, dtype=np.float32).copy()
    return vector if np.isfinite(vector).all() else None
