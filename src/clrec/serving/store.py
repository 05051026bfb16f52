"""The service's durable state: API keys, interaction events and items added through the API.

One :class:`Store` over any database URL; the tables, the connection settings (WAL and
``synchronous=FULL`` on SQLite) and the schema version live in
:mod:`clrec.serving.store_schema`.

API keys look like ``clrec_<key_id>_<secret>``: 64 random hex bits to find the row and 256
random bits of secret. Only ``sha256(salt || token)`` with a per-key random salt is stored, so
the plaintext is shown once at creation and never again; verification recomputes the hash
and compares with :func:`hmac.compare_digest`.

Every write transaction starts by bumping a row of ``counters``. That row lock serialises
writers of one kind on every database, so autoincrement ids (events) and item revisions
become visible in increasing order: a worker that has read everything up to id N never
misses a row below N later (see :meth:`Store.load_events` ``after_id``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from clrec.errors import ClrecError
from clrec.serving.idempotency import Idempotency, answered, remember
from clrec.serving.store_schema import (
    COUNTERS,
    SCHEMA_VERSION,
    StoreError,
    api_keys,
    bump,
    counters,
    events,
    items,
    make_engine,
    metadata,
)

SCOPES = frozenset({"read", "write"})
"""``read``: recommendations, similar items, metrics. ``write``: items and events."""

TOKEN_PREFIX = "clrec"
_KEY_ID_BYTES = 8  # 16 hex characters: finds the row, is not secret
_SECRET_BYTES = 32  # 256 bits of secret
_SALT_BYTES = 16
_BATCH = 10_000  # rows read at a time when replaying


@dataclass(frozen=True)
class ApiKey:
    """An API key's public record (never its secret)."""

    id: int
    key_id: str
    name: str
    scopes: frozenset[str]
    created: float
    revoked: float | None

    @property
    def active(self) -> bool:
        return self.revoked is None


@dataclass(frozen=True)
class NewKey:
    """A key just created: its record and the plaintext token, shown this once."""

    key: ApiKey
    token: str = field(repr=False)


@dataclass(frozen=True)
class Event:
    """One interaction to record; ``ts`` (epoch seconds) defaults to the time of writing."""

    user: str
    item: str
    kind: str
    value: float | None = None
    ts: float | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with its id (increasing in commit order)."""

    id: int
    user: str
    item: str
    kind: str
    value: float | None
    ts: float


@dataclass(frozen=True)
class StoredItem:
    """An item added or updated through the API: its fields and the vector they gave.

    ``artifact_key`` names the artifact whose model made ``vector``; under another artifact
    the vector means nothing and the item is re-embedded from ``content``.
    """

    id: str
    content: dict[str, str | None]
    vector: np.ndarray = field(repr=False)  # (D,) float32
    artifact_key: str
    revision: int
    updated: float


def parse_scopes(text: str | Sequence[str]) -> frozenset[str]:
    """``"read,write"`` (or a list) as a checked set of scopes."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(p.strip() for p in parts if p.strip())
    unknown = sorted(scopes - SCOPES)
    if unknown or not scopes:
        raise ClrecError(
            f"scopes must be a non-empty subset of {', '.join(sorted(SCOPES))}, got "
            f"{', '.join(unknown) or 'none'}"
        )
    return scopes


def _hash_token(salt: bytes, token: str) -> str:
    return hashlib.sha256(salt + token.encode("utf-8")).hexdigest()


def _split_token(token: str) -> str | None:
    """The key id of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    key_id = parts[1]
    if len(key_id) != 2 * _KEY_ID_BYTES or any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id


class Store:
    """API keys, events and API items in one database (see the module docstring).

    Thread-safe: each call takes its own pooled connection. Create the tables once with
    :meth:`create` (the constructor does it unless ``create=False``).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if create:
            self.create()

    # ------------------------------------------------------------------ lifecycle
    def create(self) -> None:
        """Create missing tables and counters; refuse a database of a newer schema."""
        with self._errors("creating the tables"):
            try:
                metadata.create_all(self.engine)
            except SQLAlchemyError:  # another process created them at the same moment
                metadata.create_all(self.engine)
            with self.engine.connect() as conn:
                present = {
                    row.name: int(row.value)
                    for row in conn.execute(sa.select(counters.c.name, counters.c.value))
                }
            for name in COUNTERS:
                if name in present:
                    continue
                start = {"schema": SCHEMA_VERSION, "identity": secrets.randbits(62) + 1}.get(
                    name, 0
                )
                try:
                    with self.engine.begin() as conn:
                        conn.execute(sa.insert(counters).values(name=name, value=start))
                except IntegrityError:  # inserted by another process meanwhile
                    pass
            schema = present.get("schema", SCHEMA_VERSION)
        if schema > SCHEMA_VERSION:
            raise StoreError(
                f"the database holds schema version {schema}, written by a newer clrec; "
                f"this version reads {SCHEMA_VERSION}: upgrade clrec"
            )

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def identity(self) -> int:
        """The random number drawn when this store's tables were created."""
        with self._errors("reading the store's identity"), self.engine.connect() as conn:
            value = conn.execute(
                sa.select(counters.c.value).where(counters.c.name == "identity")
            ).scalar_one_or_none()
        if value is None:
            raise StoreError("the store has no identity row; it was not created by clrec")
        return int(value)

    def check(self, full: bool = False) -> list[str]:
        """Problems the database reports about itself (empty: none). SQLite runs
        ``PRAGMA quick_check`` (``integrity_check`` with ``full``); other databases check
        their own pages, so only the tables' presence is checked here."""
        with self._errors("checking the database"), self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(sa.select(sa.func.count()).select_from(counters)).scalar_one()
                return []
            pragma = "integrity_check" if full else "quick_check"
            rows = [str(row[0]) for row in conn.exec_driver_sql(f"PRAGMA {pragma}")]
        return [] if rows == ["ok"] else rows

    def backup(self, target: str | Path) -> Path:
        """Copy a SQLite store to ``target`` with SQLite's online backup (consistent while
        the service writes); PostgreSQL stores are backed up with ``pg_dump``."""
        if not self.is_sqlite:
            raise ClrecError(
                "clrec store backup copies SQLite stores; back up PostgreSQL with pg_dump "
                "(pg_dump --format=custom DBNAME > store.dump)"
            )
        out = Path(target).expanduser()
        if out.exists():
            raise ClrecError(f"{out}: exists; choose a new file for the backup")
        problems = self.check()
        if problems:
            raise StoreError(f"the store is damaged ({problems[0]}); not backing it up")
        out.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("backing up the store"), self.engine.connect() as conn:
            source = conn.connection.dbapi_connection
            assert isinstance(source, sqlite3.Connection)
            with sqlite3.connect(out) as copy:
                source.backup(copy)
            copy.close()
        return out

    def sqlite_pragma(self, name: str) -> str:
        """A SQLite PRAGMA's value as text (for checks: ``journal_mode``, ``synchronous``)."""
        if not self.is_sqlite:
            raise ClrecError("sqlite_pragma applies to SQLite databases only")
        if not name.isidentifier():
            raise ClrecError(f"not a pragma name: {name!r}")
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql(f"PRAGMA {name}").scalar())

    # ------------------------------------------------------------------ API keys
    def create_key(self, name: str, scopes: str | Sequence[str] = ("read",)) -> NewKey:
        """A new active key; the returned token is the only copy of its secret."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ClrecError("a key name must have 1 to 200 characters")
        wanted = parse_scopes(scopes)
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        salt = secrets.token_bytes(_SALT_BYTES)
        created = time.time()
        with self._errors("creating an API key"), self.engine.begin() as conn:
            bump(conn, "keys", 1)
            row_id = conn.execute(
                sa.insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    salt=salt.hex(),
                    hash=_hash_token(salt, token),
                    scopes=",".join(sorted(wanted)),
                    created=created,
                    revoked=None,
                )
            ).inserted_primary_key
        assert row_id is not None
        key = ApiKey(int(row_id[0]), key_id, name, wanted, created, None)
        return NewKey(key, token)

    def verify_key(self, token: str) -> ApiKey | None:
        """The active key ``token`` belongs to, or None (malformed, unknown, wrong secret or
        revoked): callers cannot tell which, by design."""
        key_id = _split_token(token)
        with self._errors("checking an API key"), self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(api_keys).where(api_keys.c.key_id == (key_id or "")))
                .mappings()
                .first()
            )
        if row is None:
            hmac.compare_digest(_hash_token(b"\0" * _SALT_BYTES, token), "0" * 64)  # same work
            return None
        expected = str(row["hash"])
        given = _hash_token(bytes.fromhex(str(row["salt"])), token)
        if not hmac.compare_digest(given, expected) or row["revoked"] is not None:
            return None
        return _key(row)

    def revoke_key(self, key: str) -> list[ApiKey]:
        """Revoke the active key(s) whose key id or name is ``key``; returns them."""
        now = time.time()
        match = sa.or_(api_keys.c.key_id == key, api_keys.c.name == key)
        with self._errors("revoking an API key"), self.engine.begin() as conn:
            bump(conn, "keys", 1)
            rows = (
                conn.execute(sa.select(api_keys).where(match, api_keys.c.revoked.is_(None)))
                .mappings()
                .all()
            )
            if rows:
                ids = [int(r["id"]) for r in rows]
                conn.execute(sa.update(api_keys).where(api_keys.c.id.in_(ids)).values(revoked=now))
        return [dataclasses.replace(_key(r), revoked=now) for r in rows]

    def list_keys(self) -> list[ApiKey]:
        """Every key, active or revoked, oldest first."""
        with self._errors("listing API keys"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.id)).mappings().all()
        return [_key(r) for r in rows]

    # ------------------------------------------------------------------ events
    def answered(self, idempotency: Idempotency) -> dict[str, object] | None:
        """The answer stored under ``idempotency``'s key (None: a new key; see
        :mod:`clrec.serving.idempotency`)."""
        with self._errors("reading an idempotency key"), self.engine.connect() as conn:
            return answered(conn, idempotency)

    def remember(self, idempotency: Idempotency, answer: dict[str, object]) -> None:
        """Store ``answer`` under the key after a write that is idempotent by itself (an
        item PUT); a twin that stored it first wins."""
        with self._errors("storing an idempotency key"):
            try:
                with self.engine.begin() as conn:
                    remember(conn, idempotency, answer, time.time())
            except IntegrityError:
                pass

    def record_events(self, batch: Sequence[Event], idempotency: Idempotency | None = None) -> int:
        """Write ``batch`` in one transaction; returns after the commit (durable on SQLite
        with ``synchronous=FULL``). All or nothing. Returns the number written. With
        ``idempotency`` the key and the answer are stored in the same transaction, and a
        key already stored (a retry, possibly racing its twin) writes nothing and returns
        the first answer's count."""
        written = self.record_new_events(batch, idempotency)
        if written is None:
            assert idempotency is not None
            answer = self.answered(idempotency)
            assert answer is not None  # the key is stored
            return int(answer["recorded"])  # type: ignore[call-overload]
        return written

    def record_new_events(
        self, batch: Sequence[Event], idempotency: Idempotency | None = None
    ) -> int | None:
        """:meth:`record_events`, but None when ``idempotency``'s key is already stored
        (nothing was written: the caller must not apply the batch again)."""
        if not batch:  # nothing to write, so no key to store: a stored one is still answered
            stored = idempotency is not None and self.answered(idempotency) is not None
            return None if stored else 0
        now = time.time()
        rows = []
        for event in batch:
            if event.value is not None and not math.isfinite(event.value):
                raise ClrecError("an event value must be a finite number")
            rows.append(
                {
                    "user_id": event.user,
                    "item_id": event.item,
                    "kind": event.kind,
                    "value": event.value,
                    "ts": now if event.ts is None else float(event.ts),
                }
            )
        with self._errors("recording events"):
            try:
                with self.engine.begin() as conn:
                    bump(conn, "events", len(rows))
                    conn.execute(sa.insert(events), rows)
                    if idempotency is not None:
                        remember(conn, idempotency, {"recorded": len(rows)}, now)
            except IntegrityError:
                if idempotency is None:
                    raise
                return None  # the key is stored (a twin committed first): nothing was written
        return len(rows)

    def load_events(self, after_id: int = 0) -> list[StoredEvent]:
        """Every event with an id above ``after_id``, in id order."""
        return list(self.iter_events(after_id))

    def iter_events(self, after_id: int = 0, batch: int = _BATCH) -> Iterator[StoredEvent]:
        """:meth:`load_events` read ``batch`` rows at a time (for long histories)."""
        last = after_id
        while True:
            query = sa.select(events).where(events.c.id > last).order_by(events.c.id).limit(batch)
            with self._errors("reading events"), self.engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
            for row in rows:
                yield StoredEvent(
                    id=int(row["id"]),
                    user=str(row["user_id"]),
                    item=str(row["item_id"]),
                    kind=str(row["kind"]),
                    value=None if row["value"] is None else float(row["value"]),
                    ts=float(row["ts"]),
                )
            if len(rows) < batch:
                return
            last = int(rows[-1]["id"])

    # ------------------------------------------------------------------ items
    def upsert_item(
        self,
        item_id: str,
        content: Mapping[str, str | None],
        vector: np.ndarray,
        artifact_key: str = "",
    ) -> StoredItem:
        """Insert or replace an API item with its content and vector ``(D,)``; returns the
        stored row (its revision increases with every write). ``artifact_key`` names the
        artifact whose model made the vector (empty: unknown, re-embedded at every start)."""
        array = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)  # (D,)
        if array.size == 0 or not np.isfinite(array).all():
            raise ClrecError(f"item {item_id!r}: its vector is empty or not finite")
        plain = {str(k): None if v is None else str(v) for k, v in content.items()}
        json.dumps(plain)  # fail here, not inside the transaction
        now = time.time()
        values = {
            "content": plain,
            "vector": array.tobytes(),
            "dim": int(array.size),
            "artifact_key": artifact_key,
            "updated": now,
        }
        with self._errors("saving an item"), self.engine.begin() as conn:
            revision = bump(conn, "items", 1)
            exists = conn.execute(sa.select(items.c.id).where(items.c.id == item_id)).first()
            if exists is None:
                conn.execute(sa.insert(items).values(id=item_id, revision=revision, **values))
            else:
                conn.execute(
                    sa.update(items)
                    .where(items.c.id == item_id)
                    .values(revision=revision, **values)
                )
        return StoredItem(item_id, plain, array.copy(), artifact_key, revision, now)

    def load_items(self, after_revision: int = 0) -> list[StoredItem]:
        """Every API item written after ``after_revision``, in revision order."""
        query = sa.select(items).where(items.c.revision > after_revision).order_by(items.c.revision)
        with self._errors("reading items"), self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        out = []
        for row in rows:
            vector = np.frombuffer(row["vector"], dtype=np.float32).copy()  # (D,)
            if vector.size != int(row["dim"]):
                raise StoreError(f"item {row['id']!r}: stored vector has the wrong size")
            content = row["content"]
            if isinstance(content, str):  # drivers without native JSON
                content = json.loads(content)
            out.append(
                StoredItem(
                    id=str(row["id"]),
                    content={str(k): None if v is None else str(v) for k, v in content.items()},
                    vector=vector,
                    artifact_key=str(row["artifact_key"]),
                    revision=int(row["revision"]),
                    updated=float(row["updated"]),
                )
            )
        return out

    def counts(self) -> dict[str, int]:
        """Rows per table (for readiness and tests)."""
        with self._errors("counting rows"), self.engine.connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in (("api_keys", api_keys), ("events", events), ("items", items))
            }

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn driver failures into a StoreError that names the step but holds no SQL
        parameters (they may carry user data)."""
        try:
            yield
        except SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error
            reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            if cause is error:
                reason = type(error).__name__
            raise StoreError(f"database error while {what}: {reason}") from None


def _key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=int(row["id"]),
        key_id=str(row["key_id"]),
        name=str(row["name"]),
        scopes=frozenset(s for s in str(row["scopes"]).split(",") if s),
        created=float(row["created"]),
        revoked=None if row["revoked"] is None else float(row["revoked"]),
    )


__all__ = [
    "SCHEMA_VERSION",
    "SCOPES",
    "ApiKey",
    "Event",
    "Idempotency",
    "NewKey",
    "Store",
    "StoreError",
    "StoredEvent",
    "StoredItem",
    "parse_scopes",
]
