"""The data folder remembers its store: a replaced, emptied or damaged store is never served.

Every store draws a random identity when its tables are created
(:meth:`~clrec.serving.store.Store.identity`). The first service start over a data folder
writes ``store.json`` there with that identity; every later start compares. A store that
answers with another identity — an emptied SQLite file that SQLite silently re-creates, a
database restored from elsewhere, a URL pointing somewhere new — would lose every API key
and event without a word, so the service refuses to start and says so, unless told to start
over (``new_store``: ``clrec serve --new-store``). The store's own consistency check (SQLite
``quick_check``) runs first: a damaged file is refused, never served.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from clrec.errors import ClrecError
from clrec.serving.index.storage import atomic_write
from clrec.serving.store import Store, StoreError

logger = logging.getLogger(__name__)

MARKER_FILE = "store.json"


@dataclass(frozen=True)
class StoreRecord:
    """The store's identity, and the one the data folder had recorded."""

    identity: int
    recorded: int | None  # None: the folder had no record (a first start)


def guard_store(store: Store, data_dir: str | Path, new_store: bool = False) -> StoreRecord:
    """Check ``store`` against the record in ``data_dir`` and its own consistency; write
    the record on a first start (or with ``new_store``). Raises StoreError for a damaged
    store and ClrecError for a store that is not the one the folder used."""
    problems = store.check()
    if problems:
        raise StoreError(
            f"the store is damaged ({'; '.join(problems[:3])}); it will not be served. Run "
            "`clrec store check`, restore it from a backup (`clrec store backup`), or start "
            "over with --new-store"
        )
    identity = store.identity()
    marker = Path(data_dir).expanduser() / MARKER_FILE
    recorded = read_record(marker)
    if recorded is not None and recorded != identity and not new_store:
        raise ClrecError(
            f"the store at {_safe_url(store)} is not the one this data folder used (it "
            f"records store {recorded}, the database answers {identity}): it was emptied, "
            "replaced or moved, and every API key and event of the old one would be lost. "
            "Restore the old store, or start over on purpose with --new-store"
        )
    if recorded is None or recorded != identity:
        if recorded is not None:
            logger.warning("starting over on a new store (%s → %s)", recorded, identity)
        write_record(marker, identity)
    return StoreRecord(identity, recorded)


def read_record(marker: Path) -> int | None:
    """The identity recorded in ``marker``; None when there is no record."""
    try:
        data = json.loads(marker.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ClrecError(f"{marker}: unreadable store record: {error}") from error
    value = data.get("identity") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClrecError(f"{marker}: the store record names no identity")
    return value


def write_record(marker: Path, identity: int) -> None:
    """Write the record atomically (a crash leaves the old record or the new one)."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"identity": identity, "written": time.time()}) + "\n"
    atomic_write(marker, lambda f: f.write(text.encode()))


def _safe_url(store: Store) -> str:
    """The store's URL without its password."""
    return store.engine.url.render_as_string(hide_password=True)


__all__ = ["MARKER_FILE", "StoreRecord", "guard_store", "read_record", "write_record"]
