"""`clrec keys create / list / revoke` (clrec.cli.keys) on a SQLite database: what each
prints, what the store then holds, and bad arguments as one clear line.

More in tests/unit/serving/test_security.py::test_keys_cli (the token never reaches stderr
or the list; the default database in --data-dir).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import assert_user_error, runner

from clrec.cli import app

pytest.importorskip("sqlalchemy", reason="the service's store needs the serve extra")

from clrec.serving.settings import default_database_url
from clrec.serving.store import Store


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = default_database_url(tmp_path)
    created = runner.invoke(
        app, ["keys", "create", "--db", db, "--name", "ops", "--scopes", "write,read"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    store = Store(db)
    try:
        key = store.verify_key(token)
        assert key is not None and key.name == "ops" and key.scopes == {"read", "write"}
        assert created.stderr.startswith(f"created key {key.key_id} (ops; scopes read,write)")
        other = runner.invoke(app, ["keys", "create", "--db", db, "--name", "ci"])
        assert other.exit_code == 0, other.output
        [_, ci] = store.list_keys()

        revoked = runner.invoke(app, ["keys", "revoke", "ops", "--db", db])
        assert revoked.exit_code == 0, revoked.output
        assert revoked.stdout == f"revoked {key.key_id} (ops)\n"
        assert store.verify_key(token) is None

        listed = runner.invoke(app, ["keys", "list", "--db", db])
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.splitlines() == [
            f"{key.key_id}  revoked  read,write  ops",
            f"{ci.key_id}  active   read        ci",
        ]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--db", "{db}", "--name", "x", "--scopes", "admin"], "scopes"),
        (["keys", "create", "--db", "{db}", "--name", " "], "a key name must have"),
        (["keys", "revoke", "nobody", "--db", "{db}"], "no active key has the id or name"),
        (["keys", "list", "--db", "nonsense"], "invalid database URL"),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else None,
)
def test_a_bad_argument_is_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    db = default_database_url(tmp_path)
    result = runner.invoke(app, [arg.format(db=db) for arg in args])
    assert_user_error(result, message)
