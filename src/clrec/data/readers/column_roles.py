"""Which column plays which role: interaction roles inferred from common header names.

:class:`ColumnMapping` says which column is the user, item, rating, label, timestamp, event
or weight; :func:`infer_mapping` recognises the common names (``userId``, ``user_id``,
``User ID``, …) so a file with standard headers needs none, and names a likely misspelling
when it finds no user or item column. Content tables get the same treatment for their id
column (:func:`content_id_column`) and a guessed kind per content column (:func:`guess_kind`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from clrec.data.schema import FieldKind
from clrec.data.validation import require_columns
from clrec.errors import ClrecError, DataError

ROLES: tuple[str, ...] = ("user", "item", "rating", "label", "timestamp", "event", "weight")

# Names recognised per role, most specific first; compared after lower-casing and removing
# ``_``, ``-``, ``.`` and spaces, so ``userId``, ``user_id`` and ``User ID`` all match.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "uid", "user_idx", "customer_id", "visitor_id"),
    "item": (
        "item",
        "item_id",
        "itemId",
        "iid",
        "movieId",
        "movie_id",
        "product_id",
        "productId",
        "asin",
        "artist_id",
        "track_id",
        "book_id",
        "news_id",
        "article_id",
    ),
    "rating": ("rating", "score", "stars", "rating_value"),
    "label": ("label", "click", "clicked", "is_click"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "unix_time", "date"),
    "event": ("event", "event_type", "action", "behavior", "behaviour", "interaction_type"),
    "weight": ("weight", "count", "play_count", "plays", "playcount", "quantity"),
}


def _normal(name: str) -> str:
    """A column name compared loosely: lower case, without spaces, ``_``, ``-`` or ``.``."""
    return re.sub(r"[\s_\-.]", "", name).lower()


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of the file plays which interaction role; ``None`` = not present."""

    user: str
    item: str
    rating: str | None = None
    label: str | None = None
    timestamp: str | None = None
    event: str | None = None
    weight: str | None = None

    def roles(self) -> dict[str, str]:
        """Role → column for every role that is mapped."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


def infer_mapping(
    columns: Iterable[str],
    overrides: Mapping[str, str] | None = None,
    *,
    file: str | Path | None = None,
) -> ColumnMapping:
    """Map roles to columns by common names; ``overrides`` fixes some roles explicitly.

    Raises a :class:`DataError` when no user or item column can be found, naming the
    columns the file has and the closest one when a name looks misspelt.
    """
    present = [str(c) for c in columns]
    chosen: dict[str, str] = {}
    for role, column in (overrides or {}).items():
        if role not in ROLES:
            raise ClrecError(f"unknown column role {role!r}; roles are {', '.join(ROLES)}")
        require_columns(pd.DataFrame(columns=present), [column], file=file, role=role)
        chosen[role] = column
    taken = set(chosen.values())
    by_normal: dict[str, str] = {}
    for column in present:
        by_normal.setdefault(_normal(column), column)
    for role, candidates in ROLE_NAMES.items():
        if role in chosen:
            continue
        for candidate in candidates:
            match = by_normal.get(_normal(candidate))
            if match is not None and match not in taken:
                chosen[role] = match
                taken.add(match)
                break
    for role in ("user", "item"):
        if role not in chosen:
            free = [c for c in present if c not in taken]
            raise DataError(_no_column_message(role, present, free), file=file)
    return ColumnMapping(**chosen)


def _no_column_message(role: str, present: list[str], free: list[str] | None = None) -> str:
    """Why no column fits ``role``, pointing at a free column that looks like a misspelling."""
    names = ROLE_NAMES[role]
    message = (
        f"no {role} column: looked for {', '.join(repr(n) for n in names)}; "
        f"the file has columns {present}"
    )
    for column in present if free is None else free:
        close = difflib.get_close_matches(
            _normal(column), [_normal(n) for n in names], n=1, cutoff=0.8
        )
        if close:
            standard = next(n for n in names if _normal(n) == close[0])
            return (
                f"{message}; {column!r} looks like a misspelling of {standard!r}: rename it "
                f"or map it explicitly ({role}={column!r}; --{role} {column} on the command line)"
            )
    return f"{message}; map it explicitly ({role}=COLUMN; --{role} COLUMN on the command line)"


def guess_kind(name: str, values: pd.Series) -> FieldKind:
    """A content column's kind from its name and values (used when none is given)."""
    present = values.dropna().astype(str)
    if present.empty:
        return "text"
    if pd.to_numeric(present, errors="coerce").notna().all():
        return "number"
    if re.search(r"image|picture|poster|thumbnail|photo|cover", name, re.IGNORECASE):
        return "image"
    if present.str.contains("|", regex=False).mean() > 0.2:
        return "tags"
    if re.search(r"title|name|description|summary|abstract|overview|text", name, re.IGNORECASE):
        return "text"  # however few or short: a small catalogue's titles are still text
    if present.nunique() <= max(20, len(present) // 20) and present.str.len().max() <= 40:
        return "category"
    return "text"


def content_id_column(table: pd.DataFrame, kind: str, path: Path) -> str:
    """The id column of a content table: a usual ``kind`` id name, else ``id``."""
    by_normal = {_normal(str(c)): str(c) for c in reversed(table.columns)}
    for candidate in (*ROLE_NAMES[kind], "id"):
        if _normal(candidate) in by_normal:
            return by_normal[_normal(candidate)]
    raise DataError(_no_column_message(kind, [str(c) for c in table.columns]), file=path)


def guess_kinds(table: pd.DataFrame, id_column: str) -> dict[str, FieldKind]:
    """Every content column's guessed kind (:func:`guess_kind`), the id column left out."""
    return {str(c): guess_kind(str(c), table[c]) for c in table.columns if c != id_column}
