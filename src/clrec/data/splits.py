"""Train / valid / test splits of a data set's interactions, with checkable guarantees.

:func:`split_dataset` cuts ``dataset.interactions`` into three disjoint frames by one of
six schemes (see :class:`~clrec.data.split_config.SplitConfig`). The result, a
:class:`~clrec.data.split_result.Split`, states, verifies and persists its guarantees.

Every scheme is vectorised over the whole interaction table (one sort, no Python loop per
user), and everything random comes from ``numpy.random.default_rng(config.seed)``, so the
same data set and config give the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.data.split_config import (
    PARTS,
    SCHEMES,
    TEST,
    TRAIN,
    VALID,
    Scheme,
    SplitConfig,
    ratio_counts,
)
from clrec.data.split_result import Split, column_ids
from clrec.errors import DataError

__all__ = [
    "PARTS",
    "SCHEMES",
    "Scheme",
    "Split",
    "SplitConfig",
    "ratio_counts",
    "split_dataset",
]


def _groups(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For keys sorted so equal ones are adjacent: each row's group, rank in it, group sizes."""
    n = len(sorted_keys)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])  # (g,)
    sizes = np.diff(np.r_[starts, n])  # (g,)
    group = np.repeat(np.arange(len(starts)), sizes)  # (n,)
    rank = np.arange(n) - starts[group]  # (n,) position within its group
    return group, rank, sizes


def _random_parts(
    users: np.ndarray, ratios: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Per user: shuffle, then first cnt[0] rows train, next cnt[1] valid, the rest test."""
    shuffled = rng.permutation(len(users))
    order = shuffled[np.argsort(users[shuffled], kind="stable")]  # grouped, shuffled inside
    group, rank, sizes = _groups(users[order])
    counts = ratio_counts(sizes, ratios)  # (g, 3)
    train_end = counts[:, 0][group]
    valid_end = (counts[:, 0] + counts[:, 1])[group]
    part = np.empty(len(users), dtype=np.int8)
    part[order] = np.where(rank < train_end, TRAIN, np.where(rank < valid_end, VALID, TEST))
    return part


def _loo_parts(users: np.ndarray, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per user with ≥ 3 rows: latest → test, second latest → valid (seeded tie-break)."""
    shuffled = rng.permutation(len(users))  # a seeded order breaks ties in time
    by_time = shuffled[np.argsort(times[shuffled], kind="stable")]
    order = by_time[np.argsort(users[by_time], kind="stable")]  # by user, then time
    group, rank, sizes = _groups(users[order])
    from_end = sizes[group] - 1 - rank  # 0 for each user's latest row
    held = sizes[group] >= 3
    part = np.empty(len(users), dtype=np.int8)
    part[order] = np.where(
        held & (from_end == 0), TEST, np.where(held & (from_end == 1), VALID, TRAIN)
    )
    return part


def _temporal_parts(
    times: np.ndarray, ratios: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Sort by time (seeded tie-break) and cut at the ratio positions."""
    shuffled = rng.permutation(len(times))  # a seeded order breaks ties in time
    order = shuffled[np.argsort(times[shuffled], kind="stable")]
    counts = ratio_counts([len(times)], ratios)[0]
    part = np.empty(len(times), dtype=np.int8)
    part[order] = np.repeat(np.array([TRAIN, VALID, TEST], dtype=np.int8), counts)
    return part


def _cold_parts(
    ids: np.ndarray, ratios: Sequence[float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deal the ids that occur into train / valid / test by ratio; rows follow their id."""
    present = np.unique(ids)
    shuffled = rng.permutation(present)
    n_train, n_valid, _ = ratio_counts([len(present)], ratios)[0]
    valid_ids = np.sort(shuffled[n_train : n_train + n_valid])
    test_ids = np.sort(shuffled[n_train + n_valid :])
    lookup = np.full(int(present.max()) + 1 if len(present) else 0, TRAIN, dtype=np.int8)
    lookup[valid_ids] = VALID
    lookup[test_ids] = TEST
    return lookup[ids], valid_ids, test_ids


def _predefined_parts(inter: pd.DataFrame, name: str) -> np.ndarray:
    if "split" not in inter.columns:
        raise DataError(
            f"data set {name!r} has no predefined split (no 'split' interaction column); "
            f"choose another scheme: {', '.join(s for s in SCHEMES if s != 'predefined')}"
        )
    labels = inter["split"]
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0]) + 1
        raise DataError(f"interaction row {row} has no value in the 'split' column")
    unknown = sorted(set(labels.unique()) - set(PARTS))
    if unknown:
        raise DataError(f"the 'split' column has values {unknown}; expected train, valid, test")
    values = labels.to_numpy(dtype=object)
    return np.select([values == "train", values == "valid"], [TRAIN, VALID], default=TEST).astype(
        np.int8
    )


def split_dataset(dataset: Dataset, config: SplitConfig | None = None) -> Split:
    """Split ``dataset.interactions`` into train / valid / test by ``config``.

    Raises :class:`DataError` when the scheme needs data the set lacks (timestamps for
    ``loo`` and ``temporal``, a ``split`` column for ``predefined``).
    """
    config = config or SplitConfig()
    inter = dataset.interactions
    rng = np.random.default_rng(config.seed)
    users = column_ids(inter, "user")
    scheme = config.scheme
    cold_valid: np.ndarray | None = None
    cold_test: np.ndarray | None = None
    if scheme in ("loo", "temporal") and "timestamp" not in inter.columns:
        raise DataError(
            f"the {scheme!r} split needs timestamps and data set {dataset.name!r} has none; "
            "use 'random' or a cold scheme"
        )
    if scheme == "random":
        part = _random_parts(users, config.ratios, rng)
    elif scheme == "loo":
        part = _loo_parts(users, column_ids(inter, "timestamp"), rng)
    elif scheme == "temporal":
        part = _temporal_parts(column_ids(inter, "timestamp"), config.ratios, rng)
    elif scheme == "cold-item":
        part, cold_valid, cold_test = _cold_parts(column_ids(inter, "item"), config.ratios, rng)
    elif scheme == "cold-user":
        part, cold_valid, cold_test = _cold_parts(users, config.ratios, rng)
    else:
        part = _predefined_parts(inter, dataset.name)
    frames = [inter.iloc[np.flatnonzero(part == k)].reset_index(drop=True) for k in range(3)]
    return Split(
        config=config,
        train=frames[TRAIN],
        valid=frames[VALID],
        test=frames[TEST],
        dataset_name=dataset.name,
        valid_cold_items=cold_valid if scheme == "cold-item" else None,
        test_cold_items=cold_test if scheme == "cold-item" else None,
        valid_cold_users=cold_valid if scheme == "cold-user" else None,
        test_cold_users=cold_test if scheme == "cold-user" else None,
    )
