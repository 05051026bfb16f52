"""Reading a run's results dict for a report: tolerant accessors and shared cell formatting.

The input is the results dict a run writes (``metrics.json``); any key may be missing, empty
or of an unexpected type, and every accessor here returns an empty value rather than
raising. The Markdown summary, the HTML page and the plots all read the run through these
functions and format numbers the same way (:func:`fmt`, :func:`fmt_metric`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Accuracy metrics first, in the order readers look for them; other names follow sorted.
ACCURACY_ORDER = ("recall", "ndcg", "hit", "mrr", "precision", "map")
# Beyond-accuracy names (ours and RecBole's spellings): plotted as popularity bias, not curves.
BEYOND_ACCURACY = (
    "coverage",
    "itemcoverage",
    "average_popularity",
    "averagepopularity",
    "gini",
    "giniindex",
    "tail_share",
    "tailpercentage",
    "shannonentropy",
    "entropy",
    "novelty",
)
# Keys of a segment bucket that count things rather than measure quality.
COUNT_KEYS = ("users", "items", "interactions", "n")
MISSING = "–"
AT_K = re.compile(r"^(?P<name>.+)@(?P<k>\d+)$")


# --- reading the run dict tolerantly ------------------------------------------------------


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (a missing or odd section)."""
    return value if isinstance(value, Mapping) else {}


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    return float(value)


def metrics_at_k(metrics: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """``{"recall@10": 0.1}`` → ``{"recall": {10: 0.1}}``; keys without ``@K`` dropped."""
    out: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        match = AT_K.match(str(key))
        number = as_number(value)
        if match and number is not None:
            out.setdefault(match["name"], {})[int(match["k"])] = number
    return out


def is_beyond_accuracy(name: str) -> bool:
    """True for a popularity-bias / diversity measure (plotted apart from accuracy)."""
    return name.lower() in BEYOND_ACCURACY


def ordered_names(names: set[str]) -> list[str]:
    """Accuracy names in reading order, then the rest sorted, beyond-accuracy last."""
    known = [n for n in ACCURACY_ORDER if n in names]
    beyond = [n for n in BEYOND_ACCURACY if n in names]
    rest = sorted(n for n in names if n not in known and n not in beyond)
    return known + rest + beyond


def _ordered_metric_keys(keys: set[str]) -> list[str]:
    """``name@K`` keys ordered by name (as above) then K; other keys after, sorted."""
    parsed = {k: AT_K.match(k) for k in keys}
    names = {m["name"] for m in parsed.values() if m}
    ordered: list[str] = []
    for name in ordered_names(names):
        ks = sorted(int(m["k"]) for m in parsed.values() if m and m["name"] == name)
        ordered += [f"{name}@{k}" for k in ks]
    return ordered + sorted(k for k, m in parsed.items() if not m)


@dataclass(frozen=True)
class Segment:
    """One bucket's metrics: ``group`` names the split and family, ``bucket`` the bucket."""

    group: str
    bucket: str
    values: Mapping[str, Any]


def _is_leaf(node: Mapping[str, Any]) -> bool:
    return any(as_number(v) is not None for v in node.values())


def segment_buckets(tree: Any, path: tuple[str, ...] = ()) -> list[Segment]:
    """Flatten nested segments to buckets, whatever the depth and names.

    A mapping holding numbers is a bucket; its parent path is its group (``segments`` at the
    top). A bucket whose siblings are whole families (``test.cold_users`` beside
    ``test.item_popularity``) is a family of its own with the single bucket ``all``.
    """
    node = as_mapping(tree)
    children = {str(k): as_mapping(v) for k, v in node.items() if as_mapping(v)}
    mixed = any(not _is_leaf(c) for c in children.values())
    found: list[Segment] = []
    for key, child in children.items():
        if _is_leaf(child):
            if mixed:
                found.append(Segment(" / ".join((*path, key)), "all", child))
            else:
                found.append(Segment(" / ".join(path) or "segments", key, child))
        else:
            found += segment_buckets(child, (*path, key))
    return found


def history_rows(run: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-epoch training rows, skipping anything that is not a mapping."""
    history = run.get("history")
    if not isinstance(history, Sequence) or isinstance(history, str):
        return []
    return [as_mapping(row) for row in history if as_mapping(row)]


def split_config(split: Mapping[str, Any]) -> dict[str, Any]:
    """Split settings: ``split["config"]``, or the split summary's own top-level settings."""
    config = dict(as_mapping(split.get("config")))
    for key, value in split.items():
        if key not in ("config", "sizes", "guarantees") and key not in config:
            config[key] = value
    return config


# --- formatting ---------------------------------------------------------------------------


def fmt(value: Any, plain: bool = False) -> str:
    """Readable text for a number, string, list or mapping.

    Counts get thousands separators and fractions four decimals; ``plain`` (settings such
    as seeds and ratios) prints numbers as written.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    number = as_number(value)
    if number is not None:
        if math.isnan(number) or math.isinf(number):
            return str(number)
        if plain:
            return str(int(number)) if number.is_integer() else f"{number:g}"
        if number.is_integer() and abs(number) < 1e15:
            return f"{int(number):,}"
        if abs(number) >= 100:
            return f"{number:,.1f}"
        if abs(number) >= 1:
            return f"{number:.3f}"
        if abs(number) >= 1e-3:
            return f"{number:.4f}"
        return f"{number:.3g}"
    if isinstance(value, Mapping | list | tuple) and not value:
        return MISSING
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {fmt(v, plain)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v, plain) for v in value)
    return str(value)


def fmt_metric(key: str, value: Any) -> str:
    """A metric cell: counts as counts, measures with four decimals (0 as 0.0000)."""
    number = as_number(value)
    if key in COUNT_KEYS or number is None or math.isnan(number) or abs(number) >= 100:
        return fmt(value)
    return f"{number:.4f}"


def dataset_line(dataset: Mapping[str, Any]) -> str:
    """``"name — 6,040 users, 3,706 items, …"`` for the report header."""
    name = dataset.get("name", "dataset")
    counts = [f"{fmt(dataset[k])} {k}" for k in ("users", "items", "interactions") if k in dataset]
    if "density" in dataset:
        counts.append(f"density {fmt(dataset['density'])}")
    return f"{name} — {', '.join(counts)}" if counts else str(name)


def run_title(run: Mapping[str, Any]) -> str:
    """``"model on dataset"``, or the model alone."""
    model = run.get("model") or "model"
    dataset = as_mapping(run.get("dataset")).get("name")
    return f"{model} on {dataset}" if dataset else str(model)


def metric_rows(run: Mapping[str, Any]) -> list[list[str]]:
    """One ``[metric, valid, test]`` row per ``name@K`` key, in reading order."""
    valid, test = as_mapping(run.get("valid")), as_mapping(run.get("test"))
    keys = {str(k) for part in (valid, test) for k, v in part.items() if as_number(v) is not None}
    return [
        [key, fmt_metric(key, valid.get(key)), fmt_metric(key, test.get(key))]
        for key in _ordered_metric_keys(keys)
    ]


def segment_columns(segments: list[Segment]) -> list[str]:
    """The segment table's columns: counts first, then metrics in reading order."""
    keys = {str(k) for s in segments for k, v in s.values.items() if as_number(v) is not None}
    counts = [k for k in COUNT_KEYS if k in keys]
    return counts + _ordered_metric_keys(keys - set(counts))


def segment_rows(segments: list[Segment], columns: list[str]) -> list[list[str]]:
    """One ``[group, bucket, *columns]`` row per bucket."""
    return [
        [s.group, s.bucket, *(fmt_metric(c, s.values.get(c)) for c in columns)] for s in segments
    ]
