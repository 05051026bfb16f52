"""The service database's tables and connection: one layout for SQLite and PostgreSQL.

SQLAlchemy Core over any database URL; only portable SQL is used, so the same code runs on
SQLite (the default, one file) and PostgreSQL. On SQLite every connection switches to WAL
mode (readers never block the writer, so several worker processes can share the file) with
``synchronous=FULL``, so a write the service acknowledged survives a crash or ``kill -9``.

Tables::

    api_keys   id, key_id (public, unique), name, salt, hash, scopes, created, revoked
    events     id (autoincrement), user, item, kind, value, ts
    items      id (external item id), content (JSON), vector (float32 bytes), dim,
               artifact_key, revision, updated
    idempotency_keys  key, route, fingerprint (of the request), answer (JSON), created
    counters   name, value: the schema version, the store's identity and the write sequences
               (see :func:`bump`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clrec.errors import ClrecError

SCHEMA_VERSION = 1
"""Version of the tables this module writes; a newer database is refused."""

_BUSY_TIMEOUT_MS = 10_000

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.String(100), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("revoked", sa.Float, nullable=True),
)

_EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: a rowid alias

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _EVENT_ID, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("item_id", sa.String(256), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_events_user", "user_id"),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("content", sa.JSON, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("artifact_key", sa.String(64), nullable=False),
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Index("ix_items_revision", "revision"),
)

# A client's Idempotency-Key and the answer its first request got: a retry (the same key and
# request) is answered the same and writes nothing again. Written in the write's own
# transaction, so a write and its key are both stored or neither.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("route", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("answer", sa.JSON, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Index("ix_idempotency_created", "created"),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# Rows of ``counters``: the schema version, the store's identity (a random number drawn when
# the tables are created: a replaced or emptied database has another one), then one write
# sequence per kind of write.
COUNTERS = ("schema", "identity", "events", "items", "keys")


class StoreError(ClrecError):
    """The database could not be reached or refused a statement (the service answers 503)."""


def bump(conn: Connection, name: str, by: int) -> int:
    """Add ``by`` to counter ``name`` as the transaction's first write (its row lock orders
    concurrent writers) and return the new value."""
    conn.execute(
        sa.update(counters).where(counters.c.name == name).values(value=counters.c.value + by)
    )
    return int(
        conn.execute(sa.select(counters.c.value).where(counters.c.name == name)).scalar_one()
    )


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder, WAL, FULL sync, a busy wait."""
    try:
        parsed = sa.make_url(url)
    except (SQLAlchemyError, ValueError) as error:
        raise ClrecError(f"invalid database URL: {error}") from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return sa.create_engine(parsed, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as error:
            raise StoreError(f"cannot use database {parsed.render_as_string()}: {error}") from None
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed)
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL journal, full fsync on commit, wait instead of failing on a busy database."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()
