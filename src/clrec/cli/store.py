"""The ``clrec store`` group: check and back up the service's store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clrec.cli.common import DEFAULT_DATA_DIR, DataDirOption, DbOption, print_json, user_errors
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.serving.store import Store

app = typer.Typer(
    help="Check and back up the recommendation service's store (API keys, events, items).",
    no_args_is_help=True,
)


@app.command("check")
@user_errors
def store_check_command(
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    full: Annotated[
        bool, typer.Option(help="SQLite integrity_check (every index) instead of quick_check.")
    ] = False,
) -> None:
    """Check the store's pages and that it is the store the data folder recorded; prints a
    report, exits 1 on any problem."""
    from clrec.serving.store_guard import MARKER_FILE, read_record

    store = _open_store(db, data_dir)
    try:
        problems = store.check(full=full)
        identity = store.identity() if not problems else None
        counts = store.counts() if not problems else {}
    finally:
        store.close()
    recorded = read_record(Path(data_dir).expanduser() / MARKER_FILE)
    if recorded is not None and identity is not None and recorded != identity:
        problems.append(f"the data folder records store {recorded}, the database is {identity}")
    print_json(
        {
            "ok": not problems,
            "problems": problems,
            "identity": identity,
            "recorded": recorded,
            "rows": counts,
        }
    )
    if problems:
        raise ClrecError(f"the store has {len(problems)} problem(s); see the report above")


@app.command("backup")
@user_errors
def store_backup_command(
    out: Annotated[Path, typer.Argument(help="The backup file to write (must not exist).")],
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Copy a SQLite store with SQLite's online backup (safe while the service writes)."""
    store = _open_store(db, data_dir)
    try:
        written = store.backup(out)
    finally:
        store.close()
    typer.echo(f"backed up to {written}", err=True)


def _open_store(db: str | None, data_dir: Path) -> Store:
    """The store at ``--db`` or in ``--data-dir``, never created by opening it."""
    import sqlalchemy as sa

    from clrec.serving.settings import default_database_url
    from clrec.serving.store import Store

    url = db or default_database_url(data_dir)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.is_file():
            raise ClrecError(f"no store at {path}")
    return Store(url, create=False)
