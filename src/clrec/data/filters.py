"""Interaction filters: keep positives, k-core, and drop unused ids.

Every filter returns a new :class:`Dataset` and leaves its input untouched. ``binarize`` and
``k_core`` only remove interaction rows (the catalogue keeps every user and item, so ids stay
comparable with the unfiltered data); ``compact`` then removes users and items left without
interactions and renumbers ids, remapping content, vectors, relations and negatives with them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.errors import DataError


def binarize(dataset: Dataset, threshold: float) -> Dataset:
    """Keep interactions rated at least ``threshold``: explicit ratings → implicit positives.

    Rows with a missing rating are dropped. Other columns (the rating included) are kept as
    they are, so the threshold can be audited afterwards.
    """
    if not math.isfinite(threshold):
        raise DataError(f"binarize threshold must be a finite number, got {threshold!r}")
    inter = dataset.interactions
    if "rating" not in inter.columns or (len(inter) and inter["rating"].isna().all()):
        raise DataError(
            f"data set {dataset.name!r} has no ratings to binarize; its interactions are "
            "already implicit (use them as they are)"
        )
    keep = (inter["rating"] >= threshold).fillna(False).to_numpy(dtype=bool)
    return dataset.with_interactions(inter[keep])


def k_core(dataset: Dataset, user_k: int, item_k: int) -> Dataset:
    """Keep the largest subset where every user has ≥ ``user_k`` and every item ≥ ``item_k``.

    Removing a sparse user can push an item under its threshold and vice versa, so passes
    repeat until nothing changes. The result is the unique maximal such subset, whatever the
    order of removal.
    """
    if user_k < 0 or item_k < 0:
        raise DataError(f"k-core thresholds must be ≥ 0, got user_k={user_k}, item_k={item_k}")
    inter = dataset.interactions
    users = inter["user"].to_numpy(dtype=np.int64)  # (n,)
    items = inter["item"].to_numpy(dtype=np.int64)  # (n,)
    keep = np.ones(len(inter), dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=dataset.n_users)
        item_counts = np.bincount(items[keep], minlength=dataset.n_items)
        still = keep & (user_counts[users] >= user_k) & (item_counts[items] >= item_k)
        if np.array_equal(still, keep):
            break
        keep = still
    return dataset.with_interactions(inter[keep])


def _new_ids(used: np.ndarray, size: int) -> np.ndarray:
    """Old id → new id lookup (``-1`` for dropped ids), keeping the old relative order."""
    mapping = np.full(size, -1, dtype=np.int64)
    kept = np.flatnonzero(used)
    mapping[kept] = np.arange(len(kept), dtype=np.int64)
    return mapping


def _remap_list(ids: object, mapping: np.ndarray) -> list[int]:
    """Map one list of old ids to new ids, dropping ids that are unknown or were dropped."""
    old = np.asarray(ids, dtype=np.int64).reshape(-1)
    old = old[(old >= 0) & (old < len(mapping))]
    new = mapping[old]
    return [int(j) for j in new[new >= 0]]


def compact(dataset: Dataset) -> Dataset:
    """Drop users and items with no interactions and renumber ids densely from 0.

    Surviving ids keep their relative order, so interacting entries stay in natural order
    of their external ids. Content rows, item vectors, user relations (edges whose two ends
    survive) and evaluation negatives (rows whose user and item survive; negative ids outside
    the compacted catalogue are dropped from the lists) are remapped to the new ids.
    """
    inter = dataset.interactions
    users = inter["user"].to_numpy(dtype=np.int64)
    items = inter["item"].to_numpy(dtype=np.int64)
    user_used = np.bincount(users, minlength=dataset.n_users) > 0  # (n_users,) bool
    item_used = np.bincount(items, minlength=dataset.n_items) > 0  # (n_items,) bool
    user_map = _new_ids(user_used, dataset.n_users)
    item_map = _new_ids(item_used, dataset.n_items)

    new_inter = inter.copy()
    new_inter["user"] = user_map[users]
    new_inter["item"] = item_map[items]

    relations = None
    if dataset.user_relations is not None:
        rel = dataset.user_relations
        a = user_map[rel["user"].to_numpy(dtype=np.int64)]
        b = user_map[rel["other"].to_numpy(dtype=np.int64)]
        ok = (a >= 0) & (b >= 0)
        relations = pd.DataFrame({"user": a[ok], "other": b[ok]}).astype("int64")

    negatives = None
    if dataset.eval_negatives is not None:
        neg = dataset.eval_negatives
        nu = user_map[neg["user"].to_numpy(dtype=np.int64)]
        ni = item_map[neg["item"].to_numpy(dtype=np.int64)]
        ok = (nu >= 0) & (ni >= 0)
        lists = [_remap_list(row, item_map) for row in neg["negatives"][ok]]
        negatives = pd.DataFrame(
            {
                "user": nu[ok],
                "item": ni[ok],
                "split": neg["split"][ok].to_numpy(),
                "negatives": lists,
            }
        )
        negatives["split"] = negatives["split"].astype("string")

    result = Dataset(
        name=dataset.name,
        interactions=new_inter.reset_index(drop=True),
        items=dataset.items[item_used].reset_index(drop=True),
        users=dataset.users[user_used].reset_index(drop=True),
        item_fields=dict(dataset.item_fields),
        user_fields=dict(dataset.user_fields),
        item_vectors={m: v[item_used] for m, v in dataset.item_vectors.items()},
        user_relations=relations,
        eval_negatives=negatives,
        source=dataset.source,
    )
    result.check_integrity()
    return result
