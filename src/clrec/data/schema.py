"""The tables every reader produces and every later stage consumes.

A :class:`Dataset` holds:

* ``interactions`` — one row per (user, item) pair with internal integer ids and optional
  ``rating``, ``weight``, ``label``, ``timestamp`` (Unix seconds), ``count`` (source events
  merged into this pair), ``event`` and ``split`` (a split that ships with the data set:
  ``train`` / ``valid`` / ``test``).
* ``items`` / ``users`` — row ``i`` describes internal id ``i``: column ``id`` is the external
  id (always a string, so id maps are lossless both ways) and the other columns are content
  (text, categories, tags, image references, numbers), null where unknown.
* ``item_vectors`` — precomputed content vectors per modality, ``(n_items, d)`` float32 with
  NaN rows where an item has no vector.
* ``user_relations`` — directed user–user edges (a social graph), internal ids.
* ``eval_negatives`` — sampled negatives that ship with a data set's own test protocol.

Internal ids put the users / items that occur in interactions first (in natural order of
their external ids) and catalogue-only entries after them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from clrec.errors import DataError
from clrec.manifest import read_manifest

FieldKind = Literal["text", "category", "tags", "image", "number"]
UnknownPolicy = Literal["keep", "drop", "error"]

INTERACTION_DTYPES: dict[str, str] = {
    "user": "int64",
    "item": "int64",
    "rating": "float32",
    "weight": "float32",
    "label": "int8",
    "timestamp": "int64",
    "count": "int64",
    "event": "string",
    "split": "string",
}
SCHEMA_VERSION = 1


def natural_sorted(ids: pd.Index | np.ndarray | list[str]) -> list[str]:
    """Sort external ids numerically when they all look like integers, else as strings."""
    values = [str(v) for v in ids]
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _id_table(ordered_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": pd.array(ordered_ids, dtype="string")})


@dataclass
class Dataset:
    """Interactions, content and relations of one data set, with integer id maps both ways."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    item_fields: dict[str, FieldKind] = field(default_factory=dict)
    user_fields: dict[str, FieldKind] = field(default_factory=dict)
    item_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    user_relations: pd.DataFrame | None = None
    eval_negatives: pd.DataFrame | None = None
    source: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_external(
        cls,
        name: str,
        interactions: pd.DataFrame,
        *,
        item_content: pd.DataFrame | None = None,
        user_content: pd.DataFrame | None = None,
        item_fields: dict[str, FieldKind] | None = None,
        user_fields: dict[str, FieldKind] | None = None,
        item_vectors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        user_relations: pd.DataFrame | None = None,
        eval_negatives: pd.DataFrame | None = None,
        unknown_content: UnknownPolicy = "keep",
        content_file: str | Path | None = None,
        source: str = "",
    ) -> Dataset:
        """Build a dataset from frames keyed by external ids.

        ``interactions`` needs ``user`` and ``item`` columns (any type; ids become strings)
        plus any optional interaction columns. ``item_content`` / ``user_content`` need an
        ``id`` column. ``item_vectors`` maps a modality to ``(external ids, (n, d) matrix)``.
        ``user_relations`` has ``user`` and ``other`` columns; ``eval_negatives`` has ``user``,
        ``item``, ``split`` and ``negatives`` (a list of external item ids per row).
        ``unknown_content`` says what to do with content rows whose id never occurs in the
        interactions: keep them as catalogue-only entries, drop them, or raise.
        """
        inter = interactions.copy()
        inter["user"] = inter["user"].astype(str)
        inter["item"] = inter["item"].astype(str)

        def catalogue(kind: str, used: pd.Series, content: pd.DataFrame | None) -> list[str]:
            ordered = natural_sorted(pd.unique(used))
            if content is None:
                return ordered
            known = set(ordered)
            extra = [i for i in pd.unique(content["id"].astype(str)) if i not in known]
            if extra and unknown_content == "error":
                raise DataError(
                    f"{len(extra)} {kind} content row(s) name {kind}s that have no interactions "
                    f"(first: {extra[0]!r}); pass unknown_content='keep' to add them to the "
                    "catalogue as new entries or 'drop' to ignore them",
                    file=content_file,
                )
            if unknown_content == "keep":
                ordered += natural_sorted(extra)
            return ordered

        users = _id_table(catalogue("user", inter["user"], user_content))
        items = _id_table(catalogue("item", inter["item"], item_content))
        user_index = pd.Index(users["id"].astype(str))
        item_index = pd.Index(items["id"].astype(str))
        inter["user"] = user_index.get_indexer(inter["user"])
        inter["item"] = item_index.get_indexer(inter["item"])

        items = _attach_content(items, item_content, item_index)
        users = _attach_content(users, user_content, user_index)

        vectors: dict[str, np.ndarray] = {}
        for modality, (ids, matrix) in (item_vectors or {}).items():
            full = np.full((len(items), matrix.shape[1]), np.nan, dtype=np.float32)
            positions = item_index.get_indexer(pd.Index([str(i) for i in ids]))
            keep = positions >= 0
            if not keep.all() and unknown_content == "error":
                raise DataError(f"{modality} vectors name items that have no interactions")
            full[positions[keep]] = matrix[keep]
            vectors[modality] = full

        relations = None
        if user_relations is not None:
            relations = pd.DataFrame(
                {
                    "user": user_index.get_indexer(user_relations["user"].astype(str)),
                    "other": user_index.get_indexer(user_relations["other"].astype(str)),
                }
            )
            relations = relations[(relations["user"] >= 0) & (relations["other"] >= 0)]
            relations = relations.reset_index(drop=True).astype("int64")

        negatives = None
        if eval_negatives is not None:
            lists = list(eval_negatives["negatives"])
            flat = item_index.get_indexer(pd.Index([str(i) for row in lists for i in row]))
            bounds = np.cumsum([len(row) for row in lists])[:-1]
            negatives = pd.DataFrame(
                {
                    "user": user_index.get_indexer(eval_negatives["user"].astype(str)),
                    "item": item_index.get_indexer(eval_negatives["item"].astype(str)),
                    "split": pd.array(eval_negatives["split"], dtype="string"),
                    "negatives": [part.tolist() for part in np.split(flat, bounds)],
                }
            )

        dataset = cls(
            name=name,
            interactions=_typed_interactions(inter),
            items=items,
            users=users,
            item_fields=dict(item_fields or {}),
            user_fields=dict(user_fields or {}),
            item_vectors=vectors,
            user_relations=relations,
            eval_negatives=negatives,
            source=source,
        )
        dataset.check_integrity()
        return dataset

    # ------------------------------------------------------------------ shape
    @property
    def n_users(self) -> int:
        """Users in the id map (interacting users plus profile-only users)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Items in the catalogue (interacted items plus content-only items)."""
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def user_index(self) -> pd.Index:
        """External user id → internal id lookup (``get_indexer`` gives -1 for unknown)."""
        return pd.Index(self.users["id"].astype(str))

    def item_index(self) -> pd.Index:
        """External item id → internal id lookup (``get_indexer`` gives -1 for unknown)."""
        return pd.Index(self.items["id"].astype(str))

    def with_interactions(self, interactions: pd.DataFrame) -> Dataset:
        """The same catalogue and content with another interaction table."""
        return Dataset(
            name=self.name,
            interactions=_typed_interactions(interactions.reset_index(drop=True)),
            items=self.items,
            users=self.users,
            item_fields=self.item_fields,
            user_fields=self.user_fields,
            item_vectors=self.item_vectors,
            user_relations=self.user_relations,
            eval_negatives=self.eval_negatives,
            source=self.source,
        )

    # ------------------------------------------------------------------ checks
    def check_integrity(self) -> None:
        """Raise :class:`DataError` when the tables contradict each other."""
        inter = self.interactions
        for column in ("user", "item"):
            if column not in inter.columns:
                raise DataError(f"interactions have no {column!r} column")
        if len(inter) and (inter["user"].min() < 0 or inter["user"].max() >= self.n_users):
            raise DataError("interactions name users outside the user id map")
        if len(inter) and (inter["item"].min() < 0 or inter["item"].max() >= self.n_items):
            raise DataError("interactions name items outside the item id map")
        duplicated = inter.duplicated(["user", "item"])
        if duplicated.any():
            row = int(np.flatnonzero(duplicated.to_numpy())[0])
            user = self.users["id"].iloc[int(inter["user"].iloc[row])]
            item = self.items["id"].iloc[int(inter["item"].iloc[row])]
            raise DataError(f"duplicate (user, item) pair ({user}, {item})")
        for table, kind in ((self.users, "user"), (self.items, "item")):
            if table["id"].isna().any() or table["id"].duplicated().any():
                raise DataError(f"the {kind} id map has missing or repeated ids")
        for modality, matrix in self.item_vectors.items():
            if matrix.ndim != 2 or matrix.shape[0] != self.n_items:
                raise DataError(
                    f"{modality} vectors have shape {matrix.shape}, expected ({self.n_items}, d)"
                )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write every table as Parquet (vectors as .npy) plus ``dataset.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.interactions.to_parquet(out / "interactions.parquet", index=False)
        self.items.to_parquet(out / "items.parquet", index=False)
        self.users.to_parquet(out / "users.parquet", index=False)
        if self.user_relations is not None:
            self.user_relations.to_parquet(out / "user_relations.parquet", index=False)
        if self.eval_negatives is not None:
            self.eval_negatives.to_parquet(out / "eval_negatives.parquet", index=False)
        for modality, matrix in self.item_vectors.items():
            np.save(out / f"item_vectors.{modality}.npy", matrix)
        meta = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "source": self.source,
            "item_fields": self.item_fields,
            "user_fields": self.user_fields,
            "item_vectors": sorted(self.item_vectors),
            "counts": {
                "users": self.n_users,
                "items": self.n_items,
                "interactions": self.n_interactions,
            },
        }
        (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Dataset:
        """Read a dataset written by :meth:`save`; refuses a folder that is not one."""
        root = Path(directory)
        meta = read_manifest(root, "dataset.json", "schema_version", SCHEMA_VERSION)

        def optional(name: str) -> pd.DataFrame | None:
            path = root / name
            return pd.read_parquet(path) if path.exists() else None

        negatives = optional("eval_negatives.parquet")
        if negatives is not None:
            negatives["negatives"] = [list(map(int, row)) for row in negatives["negatives"]]
        dataset = cls(
            name=meta["name"],
            interactions=_typed_interactions(pd.read_parquet(root / "interactions.parquet")),
            items=pd.read_parquet(root / "items.parquet"),
            users=pd.read_parquet(root / "users.parquet"),
            item_fields=meta["item_fields"],
            user_fields=meta["user_fields"],
            item_vectors={m: np.load(root / f"item_vectors.{m}.npy") for m in meta["item_vectors"]},
            user_relations=optional("user_relations.parquet"),
            eval_negatives=negatives,
            source=meta.get("source", ""),
        )
        dataset.check_integrity()
        return dataset


def _attach_content(
    ids: pd.DataFrame, content: pd.DataFrame | None, index: pd.Index
) -> pd.DataFrame:
    """Align content rows (keyed by external ``id``) to internal id order; drop unknown ids."""
    if content is None:
        return ids
    content = content.copy()
    content["id"] = content["id"].astype(str)
    content = content[content["id"].isin(index)]
    content = content.drop_duplicates("id", keep="last").set_index("id")
    aligned = content.reindex(pd.Index(ids["id"].astype(str)))
    aligned = aligned.reset_index(drop=True)
    return pd.concat([ids.reset_index(drop=True), aligned], axis=1)


def _typed_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Put the known interaction columns in a fixed order with fixed dtypes."""
    known = [c for c in INTERACTION_DTYPES if c in frame.columns]
    extra = [c for c in frame.columns if c not in INTERACTION_DTYPES]
    typed = frame[known + extra].astype({c: INTERACTION_DTYPES[c] for c in known})
    return typed.reset_index(drop=True)
