"""A data set's vital statistics: the numbers a user checks before trusting a data set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset

# Unix seconds below this are before March 1973: a column that never reaches it holds
# sequence positions (0, 1, 2, ...), which are shown as positions, not as 1970 dates.
_SEQUENCE_BOUND = 100_000_000


def _field_summary(table: pd.DataFrame, kinds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Kind and coverage (share of rows with a value) of each content field."""
    return {
        name: {"kind": kind, "coverage": round(float(table[name].notna().mean()), 4)}
        for name, kind in kinds.items()
        if name in table.columns
    }


def describe(dataset: Dataset) -> dict[str, Any]:
    """Counts, density, value ranges and content fields of a data set, JSON-serialisable.

    ``users`` / ``items`` count those that occur in interactions (the figures papers quote);
    ``catalogue_users`` / ``catalogue_items`` also count profile-only and content-only entries.
    ``interactions`` counts source events (a pair merged from repeats counts each repeat);
    ``pairs`` counts the distinct (user, item) pairs models train on.
    """
    inter = dataset.interactions
    n_users = int(inter["user"].nunique())
    n_items = int(inter["item"].nunique())
    per_user = inter.groupby("user").size()
    per_item = inter.groupby("item").size()
    events = int(inter["count"].sum()) if "count" in inter.columns else len(inter)
    summary: dict[str, Any] = {
        "name": dataset.name,
        "users": n_users,
        "items": n_items,
        "interactions": events,
        "pairs": len(inter),
        "density": round(events / (n_users * n_items), 6) if n_users and n_items else 0.0,
        "catalogue_users": dataset.n_users,
        "catalogue_items": dataset.n_items,
        "interactions_per_user": _spread(per_user),
        "interactions_per_item": _spread(per_item),
        "items_with_one_interaction": int((per_item == 1).sum()),
    }
    if "rating" in inter.columns:
        ratings = inter["rating"].astype("float64")
        summary["rating"] = {
            "min": float(ratings.min()),
            "max": float(ratings.max()),
            "mean": round(float(ratings.mean()), 4),
        }
    if "weight" in inter.columns:
        summary["weight"] = _spread(inter["weight"].astype("float64"))
    if "timestamp" in inter.columns:
        stamps = inter["timestamp"]
        if len(stamps) and stamps.max() < _SEQUENCE_BOUND:  # positions in a sequence, not times
            summary["position_range"] = [int(stamps.min()), int(stamps.max())]
        else:
            times = pd.to_datetime(stamps, unit="s", utc=True)
            summary["time_range"] = [times.min().isoformat(), times.max().isoformat()]
    if "event" in inter.columns:
        summary["events"] = {str(k): int(v) for k, v in inter["event"].value_counts().items()}
    if "split" in inter.columns:
        summary["predefined_split"] = {
            str(k): int(v) for k, v in inter["split"].value_counts().items()
        }
    summary["item_fields"] = _field_summary(dataset.items, dict(dataset.item_fields))
    summary["user_fields"] = _field_summary(dataset.users, dict(dataset.user_fields))
    summary["item_vectors"] = {
        name: {
            "dim": int(matrix.shape[1]),
            "coverage": round(float((~np.isnan(matrix[:, 0])).mean()), 4),
        }
        for name, matrix in dataset.item_vectors.items()
    }
    if dataset.user_relations is not None:
        summary["user_relations"] = len(dataset.user_relations)
    if dataset.eval_negatives is not None:
        summary["eval_negatives"] = len(dataset.eval_negatives)
    return summary


def _spread(values: pd.Series) -> dict[str, float]:
    return {
        "min": float(values.min()),
        "median": float(values.median()),
        "mean": round(float(values.mean()), 3),
        "max": float(values.max()),
    }
