"""The data folder remembers its store (clrec.serving.store_guard): an emptied or replaced
store is refused with a clear message unless the operator starts over on purpose, a
damaged SQLite file is refused, never served — and the service does not start on either."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clrec.errors import ClrecError
from clrec.serving.app import create_app
from clrec.serving.settings import ServiceSettings, default_database_url
from clrec.serving.store import Event, Store, StoreError
from clrec.serving.store_guard import MARKER_FILE, guard_store, read_record


def _store(data: Path) -> Store:
    return Store(default_database_url(data))


def test_the_first_start_records_the_store_and_later_starts_match(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = guard_store(store, tmp_path)
    assert first.recorded is None and read_record(tmp_path / MARKER_FILE) == first.identity
    store.close()
    again = _store(tmp_path)
    assert guard_store(again, tmp_path).recorded == first.identity  # same store: accepted
    again.close()


def test_an_emptied_store_is_refused_unless_started_over_on_purpose(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_key("dashboard", "read")
    store.record_events([Event("u1", "i1", "click")])
    old = guard_store(store, tmp_path).identity
    store.close()
    for name in ("service.db", "service.db-wal", "service.db-shm"):
        path = tmp_path / name
        if path.exists():
            path.write_bytes(b"")  # emptied: SQLite would silently start a fresh store
    fresh = _store(tmp_path)
    assert fresh.counts() == {"api_keys": 0, "events": 0, "items": 0}
    with pytest.raises(ClrecError, match="not the one this data folder used"):
        guard_store(fresh, tmp_path)
    started_over = guard_store(fresh, tmp_path, new_store=True)
    assert started_over.recorded == old and started_over.identity != old
    assert read_record(tmp_path / MARKER_FILE) == started_over.identity
    assert guard_store(fresh, tmp_path).recorded == started_over.identity
    fresh.close()


def _damage(database: Path) -> None:
    """Overwrite one page in the middle of a checkpointed SQLite file with garbage."""
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(database.read_bytes())
    page = 4096
    pages = len(raw) // page
    assert pages >= 4, pages
    start = (pages // 2) * page
    raw[start + 100 : start + page - 100] = b"\xa5" * (page - 200)
    database.write_bytes(bytes(raw))


def test_a_damaged_store_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    guard_store(store, tmp_path)
    store.record_events([Event(f"u{i}", f"item-{i}", "click") for i in range(3000)])
    store.close()
    _damage(tmp_path / "service.db")
    with pytest.raises(StoreError, match=r"damaged|malformed"):  # at open, or by quick_check
        damaged = _store(tmp_path)
        try:
            guard_store(damaged, tmp_path)
        finally:
            damaged.close()


def test_the_service_does_not_start_on_a_foreign_or_damaged_store(
    clrec_artifact: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = ServiceSettings(
        artifact=clrec_artifact, data_dir=data, auth_required=False, rate_limit_per_s=0
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        client.post("/v1/events", json=[{"user": "u1", "item": "m1", "kind": "click"}])
    (data / "service.db").unlink()
    for stale in data.glob("service.db-*"):
        stale.unlink()
    refused = pytest.raises(ClrecError, match="not the one this data folder used")
    with refused, TestClient(create_app(settings)):
        pass
    over = settings.model_copy(update={"new_store": True})
    with TestClient(create_app(over)) as client:
        assert client.get("/readyz").json()["status"] == "ready"
    with TestClient(create_app(settings)) as client:  # the new store is now the recorded one
        assert client.get("/readyz").json()["status"] == "ready"
        for start in range(0, 3000, 500):
            batch = [
                {"user": f"u{i}", "item": "m1", "kind": "click"} for i in range(start, start + 500)
            ]
            assert client.post("/v1/events", json=batch).status_code == 200
    _damage(data / "service.db")
    with pytest.raises(StoreError), TestClient(create_app(settings)):
        pass
