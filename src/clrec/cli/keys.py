"""The ``clrec keys`` group: create, list and revoke the service's API keys."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clrec.cli.common import DEFAULT_DATA_DIR, DataDirOption, DbOption, user_errors
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.serving.store import Store

app = typer.Typer(
    help="Create, list and revoke the recommendation service's API keys.", no_args_is_help=True
)


@app.command("create")
@user_errors
def keys_create_command(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write.")] = "read",
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Create an API key; its token is printed once (stdout) and never stored."""
    store = _key_store(db, data_dir)
    try:
        new = store.create_key(name, scopes)
    finally:
        store.close()
    typer.echo(
        f"created key {new.key.key_id} ({new.key.name}; scopes "
        f"{','.join(sorted(new.key.scopes))}); the token below is shown only this once:",
        err=True,
    )
    typer.echo(new.token)


@app.command("revoke")
@user_errors
def keys_revoke_command(
    key: Annotated[str, typer.Argument(help="The key id (from keys list) or the key's name.")],
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Revoke the active key(s) with this key id or name; effective at once."""
    store = _key_store(db, data_dir)
    try:
        revoked = store.revoke_key(key)
    finally:
        store.close()
    if not revoked:
        raise ClrecError(f"no active key has the id or name {key!r}")
    for item in revoked:
        typer.echo(f"revoked {item.key_id} ({item.name})")


@app.command("list")
@user_errors
def keys_list_command(
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Every key: id, name, scopes, state (tokens are never stored, so never shown)."""
    store = _key_store(db, data_dir)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    for item in keys:
        state = "active" if item.active else "revoked"
        typer.echo(f"{item.key_id}  {state:<7}  {','.join(sorted(item.scopes)):<10}  {item.name}")


def _key_store(db: str | None, data_dir: Path) -> Store:
    """The service's store at ``--db``, or the default SQLite database in ``--data-dir``."""
    from clrec.serving.settings import default_database_url
    from clrec.serving.store import Store

    return Store(db or default_database_url(data_dir))
