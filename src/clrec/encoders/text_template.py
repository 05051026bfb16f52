"""Text templates: an item's named fields → the one text the language model reads.

A :class:`TextTemplate` turns an item's fields into one text (``"{title} | {genres}"``),
skipping missing fields without leaving ``None`` or dangling separators behind;
:func:`default_template` picks the known template of a data set, or its text and tag fields.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.data.schema import Dataset, FieldKind

# Item templates of the known data sets: the fields that describe an item in words.
DEFAULT_TEMPLATES: dict[str, str] = {
    "ml-1m": "{title} | {genres} | {abstract}",
    "ml-100k": "{title} | {genres}",
    "ml-100k-recbole": "{title} | {genres}",
    "ml-latest-small": "{title} | {genres} | {tags}",
    "amazon-office": "{text}",
    "amazon-scientific": "{text}",
    "lastfm": "{name} | {tags}",
}


def _is_missing(value: object) -> bool:
    """None, NaN, pandas NA or a blank string: a field that adds no text."""
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array value: present
        return False


@dataclass(frozen=True)
class TextTemplate:
    """Joins named item fields into one text, e.g. ``"{title} | {genres} | {abstract}"``.

    Text between two fields is a separator: it is written only between two fields that are
    both present, and the separator used is the one just before the later field. Text before
    the first field and after the last one is written whenever any field is present. A field
    of kind ``tags`` (a ``|``-joined list, as the readers store them) is written as
    ``"a, b, c"``. An item with no field present renders as ``None`` (no text).
    """

    pattern: str
    tag_separator: str = "|"
    tag_join: str = ", "

    def __post_init__(self) -> None:
        self._parts()  # validate early

    def _parts(self) -> tuple[str, list[str], list[str], str]:
        """(leading text, field names, separator before each field, trailing text)."""
        try:
            pieces = list(string.Formatter().parse(self.pattern))
        except ValueError as err:
            raise ClrecError(f"text template {self.pattern!r}: {err}") from None
        fields: list[str] = []
        before: list[str] = []
        pending = ""
        for literal, name, spec, conversion in pieces:
            pending += literal
            if name is None:
                continue
            if not name or name.isdigit() or spec or conversion:
                raise ClrecError(
                    f"text template {self.pattern!r}: use plain named fields like {{title}}, "
                    f"got {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}"
                )
            fields.append(name)
            before.append(pending)
            pending = ""
        if not fields:
            raise ClrecError(f"text template {self.pattern!r} names no field")
        lead = before[0]
        before[0] = ""
        return lead, fields, before, pending

    @property
    def fields(self) -> list[str]:
        """The item fields the template reads, in order."""
        return self._parts()[1]

    def render(
        self, values: Mapping[str, object], kinds: Mapping[str, FieldKind] | None = None
    ) -> str | None:
        """One item's text, or None when none of the template's fields is present."""
        lead, fields, before, trail = self._parts()
        return self._render(values, kinds or {}, lead, fields, before, trail)

    def _render(
        self,
        values: Mapping[str, object],
        kinds: Mapping[str, FieldKind],
        lead: str,
        fields: list[str],
        before: list[str],
        trail: str,
    ) -> str | None:
        out: list[str] = []
        for name, separator in zip(fields, before, strict=True):
            value = values.get(name)
            if _is_missing(value):
                continue
            text = str(value).strip()
            if kinds.get(name) == "tags":
                tags = [t.strip() for t in text.split(self.tag_separator) if t.strip()]
                if not tags:
                    continue
                text = self.tag_join.join(tags)
            if out:
                out.append(separator)
            out.append(text)
        if not out:
            return None
        return lead + "".join(out) + trail

    def render_table(
        self, table: pd.DataFrame, kinds: Mapping[str, FieldKind] | None = None
    ) -> list[str | None]:
        """One text (or None) per row of ``table``; raises when a field is not a column."""
        lead, fields, before, trail = self._parts()
        absent = [name for name in fields if name not in table.columns]
        if absent:
            raise ClrecError(
                f"text template {self.pattern!r} names field(s) {', '.join(absent)} that the "
                f"items do not have; available: {', '.join(map(str, table.columns))}"
            )
        columns = {name: table[name].tolist() for name in fields}
        return [
            self._render(
                {name: columns[name][row] for name in fields},
                kinds or {},
                lead,
                fields,
                before,
                trail,
            )
            for row in range(len(table))
        ]


def default_template(dataset: Dataset) -> TextTemplate:
    """The known template for the data set's name, else its text and tag fields in order."""
    known = DEFAULT_TEMPLATES.get(dataset.name)
    if known is not None and all(f in dataset.items.columns for f in TextTemplate(known).fields):
        return TextTemplate(known)
    fields = [
        name
        for name, kind in dataset.item_fields.items()
        if kind in ("text", "tags") and name in dataset.items.columns
    ]
    if not fields:
        raise ClrecError(
            f"data set {dataset.name!r} has no text or tag item fields to encode; "
            "give a text template naming some"
        )
    return TextTemplate(" | ".join(f"{{{name}}}" for name in fields))
