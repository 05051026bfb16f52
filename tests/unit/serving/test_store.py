"""The service store: SQLite in WAL mode with full sync, hashed API keys, events written in
one transaction, API items with their vectors; the same code against PostgreSQL when a test
database is given."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from clrec.errors import ClrecError
from clrec.serving.settings import default_database_url
from clrec.serving.store import (
    SCHEMA_VERSION,
    Event,
    Store,
    StoreError,
    parse_scopes,
)
from clrec.serving.store_schema import counters


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(default_database_url(tmp_path / "data"))
    yield opened
    opened.close()


def _raw_rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(f"SELECT * FROM {table}"))


def test_sqlite_is_wal_with_full_sync(store: Store, tmp_path: Path) -> None:
    assert (tmp_path / "data" / "service.db").is_file()  # the folder is created
    assert store.is_sqlite
    assert store.sqlite_pragma("journal_mode") == "wal"
    assert store.sqlite_pragma("synchronous") == "2"  # FULL: fsync at every commit
    assert store.ping()
    assert store.counts() == {"api_keys": 0, "events": 0, "items": 0}


def test_keys_are_hashed_and_verified(store: Store, tmp_path: Path) -> None:
    new = store.create_key("  dashboard ", "read,write")
    token = new.token
    assert token.startswith(f"clrec_{new.key.key_id}_") and len(token) > 50
    assert new.key.name == "dashboard" and new.key.scopes == {"read", "write"}
    assert token not in repr(new)
    # the plaintext is stored nowhere: not in the row, not anywhere in the file
    store.close()
    database = tmp_path / "data" / "service.db"
    secret = token.rsplit("_", 1)[-1].encode()
    for path in database.parent.iterdir():
        data = path.read_bytes()
        assert token.encode() not in data and secret not in data
    (row,) = _raw_rows(database, "api_keys")
    assert token not in [str(v) for v in row]
    verified = store.verify_key(token)
    assert verified is not None and verified.key_id == new.key.key_id and verified.active
    assert verified.scopes == {"read", "write"}
    # wrong secret, same key id; malformed tokens; an unknown key id
    assert store.verify_key(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    for bad in ("", "clrec", "clrec__x", "nonsense", f"clrec_{'0' * 16}_abc", token + "x"):
        assert store.verify_key(bad) is None
    # every key gets its own salt: the same scopes never give the same hash
    other = store.create_key("batch", ["write"])
    hashes = {r[4] for r in _raw_rows(database, "api_keys")}
    salts = {r[3] for r in _raw_rows(database, "api_keys")}
    assert len(hashes) == 2 and len(salts) == 2
    assert store.verify_key(other.token) is not None
    assert store.verify_key(other.token).scopes == {"write"}  # type: ignore[union-attr]


def test_revoke_by_id_or_name(store: Store) -> None:
    first = store.create_key("ci", "read")
    second = store.create_key("ci", "read")
    third = store.create_key("ops", "read,write")
    revoked = store.revoke_key(first.key.key_id)
    assert [k.key_id for k in revoked] == [first.key.key_id] and revoked[0].revoked is not None
    assert store.verify_key(first.token) is None
    assert store.verify_key(second.token) is not None
    assert [k.key_id for k in store.revoke_key("ci")] == [second.key.key_id]  # active only
    assert store.revoke_key("ci") == []
    assert store.verify_key(second.token) is None
    assert store.verify_key(third.token) is not None
    listed = store.list_keys()
    assert [(k.name, k.active) for k in listed] == [("ci", False), ("ci", False), ("ops", True)]


def test_scopes_and_names_are_checked(store: Store) -> None:
    assert parse_scopes("read, write") == {"read", "write"}
    assert parse_scopes(["write"]) == {"write"}
    bad_scopes: list[str | list[str]] = ["", "admin", "read,admin", []]
    for bad in bad_scopes:
        with pytest.raises(ClrecError, match="scopes must be"):
            parse_scopes(bad)
    with pytest.raises(ClrecError, match="1 to 200 characters"):
        store.create_key("   ", "read")
    assert store.counts()["api_keys"] == 0


def test_events_round_trip(store: Store) -> None:
    assert store.record_events([]) == 0
    batch = [
        Event("u1", "m1", "click"),
        Event("u1", "m2", "rating", 4.5, 1_700_000_000.0),
        Event("ü-2", "m1", "view", None, 12.0),
    ]
    assert store.record_events(batch) == 3
    loaded = store.load_events()
    assert [(e.user, e.item, e.kind, e.value) for e in loaded] == [
        ("u1", "m1", "click", None),
        ("u1", "m2", "rating", 4.5),
        ("ü-2", "m1", "view", None),
    ]
    assert loaded[1].ts == 1_700_000_000.0 and loaded[2].ts == 12.0
    assert loaded[0].ts > 1_700_000_000.0  # defaults to the time of writing
    ids = [e.id for e in loaded]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [e.item for e in store.load_events(after_id=ids[0])] == ["m2", "m1"]
    assert store.load_events(after_id=ids[-1]) == []
    # paging returns the same rows
    assert list(store.iter_events(0, batch=2)) == loaded


def test_an_event_batch_is_all_or_nothing(store: Store) -> None:
    store.record_events([Event("u1", "m1", "click")])
    with pytest.raises(ClrecError, match="finite"):
        store.record_events([Event("u1", "m2", "click"), Event("u1", "m3", "x", float("nan"))])
    with pytest.raises(StoreError, match="recording events"):  # NOT NULL on the second row
        store.record_events(
            [Event("u1", "m4", "click"), Event(None, "m5", "click")]  # type: ignore[arg-type]
        )
    assert [e.item for e in store.load_events()] == ["m1"]
    with store.engine.connect() as conn:
        value = conn.execute(sa.select(counters.c.value).where(counters.c.name == "events"))
        assert value.scalar_one() == 1  # the failed transactions left no trace


def test_items_upsert_and_load(store: Store) -> None:
    first = store.upsert_item("n1", {"title": "One (1990)", "genres": None}, np.arange(4), "key-a")
    assert first.revision == 1
    second = store.upsert_item("n2", {"title": "Two"}, np.ones(4, dtype=np.float64), "key-a")
    again = store.upsert_item("n1", {"title": "One again"}, np.full(4, 0.5), "key-b")
    assert again.revision == 3 > second.revision
    loaded = store.load_items()
    assert [(i.id, i.revision) for i in loaded] == [("n2", 2), ("n1", 3)]
    n1 = loaded[1]
    assert n1.content == {"title": "One again"} and n1.artifact_key == "key-b"
    assert n1.vector.dtype == np.float32
    np.testing.assert_array_equal(n1.vector, np.full(4, 0.5, dtype=np.float32))
    assert [i.id for i in store.load_items(after_revision=2)] == ["n1"]
    assert store.load_items(after_revision=3) == []
    assert store.counts()["items"] == 2
    with pytest.raises(ClrecError, match="not finite"):
        store.upsert_item("n3", {}, np.array([np.nan, 1.0]), "key-a")


def test_reopening_sees_everything(tmp_path: Path) -> None:
    url = default_database_url(tmp_path)
    first = Store(url)
    key = first.create_key("k", "read")
    first.record_events([Event("u", "m", "click")])
    first.upsert_item("n", {"title": "t"}, np.ones(3), "a")
    first.close()
    second = Store(url)
    assert second.counts() == {"api_keys": 1, "events": 1, "items": 1}
    assert second.verify_key(key.token) is not None
    second.close()


def test_concurrent_writers_get_increasing_ids(tmp_path: Path) -> None:
    url = default_database_url(tmp_path)
    stores = [Store(url) for _ in range(3)]  # separate engines, as separate workers have
    errors: list[BaseException] = []

    def write(store: Store, user: str) -> None:
        try:
            for n in range(10):
                store.record_events([Event(user, f"m{n}", "click"), Event(user, "x", "view")])
                store.upsert_item(f"{user}-{n}", {"title": user}, np.ones(2), "a")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(s, f"u{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    loaded = stores[0].load_events()
    assert len(loaded) == 60 and [e.id for e in loaded] == sorted({e.id for e in loaded})
    revisions = [i.revision for i in stores[0].load_items()]
    assert revisions == list(range(1, 31))
    for s in stores:
        s.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = default_database_url(tmp_path)
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(counters).where(counters.c.name == "schema").values(value=SCHEMA_VERSION + 1)
        )
    store.close()
    with pytest.raises(StoreError, match="newer clrec"):
        Store(url)


def test_bad_urls() -> None:
    with pytest.raises(ClrecError, match="invalid database URL"):
        Store("not a url at all")
    with pytest.raises(ClrecError):
        Store("nosuchdialect://x/y")


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    opened = Store(postgres_url)
    yield opened
    opened.close()


def test_postgres_round_trip(postgres_store: Store) -> None:
    """The same operations on PostgreSQL: portable SQL only."""
    store = postgres_store
    assert not store.is_sqlite and store.ping()
    key = store.create_key("pg", "read,write")
    assert store.verify_key(key.token) is not None
    store.record_events([Event("u1", "m1", "click"), Event("u1", "m2", "rating", 3.0)])
    assert [e.item for e in store.load_events()] == ["m1", "m2"]
    store.upsert_item("n1", {"title": "x"}, np.ones(3), "a")
    store.upsert_item("n1", {"title": "y"}, np.zeros(3), "a")
    (item,) = store.load_items()
    assert item.content == {"title": "y"} and item.revision == 2
    assert store.revoke_key("pg") and store.verify_key(key.token) is None
