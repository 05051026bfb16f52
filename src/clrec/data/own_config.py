"""A commented run config for one's own files (``clrec init-config``): the columns and
content fields read from the files themselves, every ``data:`` key spelled out, ready to
edit and to train with ``clrec train``."""

from __future__ import annotations

from pathlib import Path

from clrec.data.readers.column_roles import content_id_column, guess_kinds, infer_mapping
from clrec.data.readers.table_files import read_table

_TEMPLATE = """# A run config for your own data, written by `clrec init-config` from the files'
# headers: edit what it guessed, then `clrec train {name} --out runs/mine`.
data:
  path: {path}
  columns: {columns}   # role -> column; roles not named are inferred by name
{items}{users}  sep: null                 # null: by extension (.csv comma, .tsv tab, .txt sniffed)
  encoding: utf-8
  time_unit: auto           # numeric timestamps: auto | s | ms | us | ns
  duplicates: reject        # repeated user-item pairs: reject | keep_last | aggregate
  unknown_content: keep     # content rows nobody interacted with: keep | drop | error
  min_rating: null          # ratings >= this become positives (null: every row counts)
  k_core: 0                 # keep users and items with >= k interactions
  drop_unused: true
split:
  scheme: random            # random | temporal | leave-one-out | cold-item | ...
  ratios: [0.8, 0.1, 0.1]
  seed: 2020
model:
  name: clrec
  params:
    num_threads: null       # torch threads (null: all cores); set it on a shared machine
    time_limit_minutes: null  # ends the whole fit (prior search included) at this time
evaluation:
  ks: [10, 20]
"""


def own_config(
    data: str | Path,
    items: str | Path | None = None,
    users: str | Path | None = None,
    name: str = "config.yaml",
) -> str:
    """The YAML text of a run config for ``data`` (and its content tables)."""
    table = read_table(Path(data))
    mapping = infer_mapping(table.columns, file=data).roles()
    columns = "{" + ", ".join(f"{role}: {column}" for role, column in mapping.items()) + "}"
    return _TEMPLATE.format(
        name=name,
        path=Path(data),
        columns=columns,
        items=_content("items", items, "item"),
        users=_content("users", users, "user"),
    )


def _content(key: str, path: str | Path | None, kind: str) -> str:
    if path is None:
        return ""
    table = read_table(Path(path))
    id_column = content_id_column(table, kind, Path(path))
    fields = guess_kinds(table, id_column)
    shown = ", ".join(f"{column}: {field}" for column, field in fields.items())
    return (
        f"  {key}:\n"
        f"    path: {Path(path)}\n"
        f"    id: {id_column}\n"
        f"    fields: {{{shown}}}   # text | category | tags | image | number\n"
    )


__all__ = ["own_config"]
