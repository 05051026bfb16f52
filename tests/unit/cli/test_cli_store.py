"""`clrec store check / backup` (clrec.cli.store): a healthy store reports its identity and
rows, a backup is a working copy of it, and a missing, foreign or damaged store is a clear
error with exit code 1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cli_support import assert_user_error, runner

from clrec.cli import app
from clrec.serving.settings import default_database_url
from clrec.serving.store import Event, Store
from clrec.serving.store_guard import MARKER_FILE, guard_store, write_record


def _filled(data: Path) -> int:
    store = Store(default_database_url(data))
    store.create_key("dashboard", "read")
    store.record_events([Event(f"u{i}", "i1", "click") for i in range(2000)])
    identity = guard_store(store, data).identity
    store.close()
    return identity


def test_check_and_backup_a_healthy_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    identity = _filled(data)
    result = runner.invoke(app, ["store", "check", "--data-dir", str(data), "--full"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["identity"] == report["recorded"] == identity
    assert report["rows"] == {"api_keys": 1, "events": 2000, "items": 0}

    copy = tmp_path / "backup" / "service.db"
    result = runner.invoke(app, ["store", "backup", str(copy), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    restored = Store(f"sqlite:///{copy}", create=False)
    assert restored.identity() == identity and restored.counts()["events"] == 2000
    restored.close()
    again = runner.invoke(app, ["store", "backup", str(copy), "--data-dir", str(data)])
    assert_user_error(again, "exists")


def test_a_missing_foreign_or_damaged_store_fails_the_check(tmp_path: Path) -> None:
    assert_user_error(
        runner.invoke(app, ["store", "check", "--data-dir", str(tmp_path / "none")]),
        "no store at",
    )
    data = tmp_path / "data"
    _filled(data)
    write_record(data / MARKER_FILE, 12345)  # the folder remembers another store
    result = runner.invoke(app, ["store", "check", "--data-dir", str(data)])
    assert result.exit_code == 1 and "records store 12345" in result.stdout

    database = data / "service.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(database.read_bytes())
    start = (len(raw) // 4096 // 2) * 4096
    raw[start + 100 : start + 3996] = b"\xa5" * 3896
    database.write_bytes(bytes(raw))
    result = runner.invoke(app, ["store", "check", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    backup = runner.invoke(
        app, ["store", "backup", str(tmp_path / "b.db"), "--data-dir", str(data)]
    )
    assert backup.exit_code == 1 and not (tmp_path / "b.db").exists()


def test_a_postgresql_store_is_backed_up_with_pg_dump(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = runner.invoke(app, ["store", "backup", str(tmp_path / "x"), "--db", url])
    assert result.exit_code == 1 and "pg_dump" in result.output
