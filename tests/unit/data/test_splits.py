"""Splits: property tests on random small tables, RecBole's ratio rule, persistence, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clrec.data.registry import load
from clrec.data.schema import Dataset
from clrec.data.splits import (
    PARTS,
    SCHEMES,
    Split,
    SplitConfig,
    ratio_counts,
    split_dataset,
)
from clrec.errors import ClrecError, DataError

RANDOM_SCHEMES = ["random", "loo", "temporal", "cold-item", "cold-user"]
RATIOS = [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5, 0.0), (0.7, 0.0, 0.3), (1.0, 1.0, 1.0)]


def recbole_counts(total: int, ratios: tuple[float, ...]) -> list[int]:
    """RecBole's ``_calcu_split_ids`` as part sizes, written out row by row as a reference."""
    norm = [r / sum(ratios) for r in ratios]
    counts = [int(r * total) for r in norm]
    counts[0] = total - sum(counts[1:])
    for back in range(1, len(norm)):
        if counts[0] <= 1:
            break
        if 0 < norm[-back] * total < 1:
            counts[-back] += 1
            counts[0] -= 1
    return counts


@st.composite
def tables(draw: st.DrawFn) -> Dataset:
    """A random small interaction table: unique pairs, tied timestamps, a shipped split column."""
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 10))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=1,
            max_size=60,
            unique=True,
        )
    )
    n = len(pairs)
    times = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
    shipped = draw(st.lists(st.sampled_from(PARTS), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "user": [f"u{u}" for u, _ in pairs],
            "item": [f"i{i}" for _, i in pairs],
            "rating": [float(1 + (u + i) % 5) for u, i in pairs],
            "timestamp": times,
            "split": shipped,
        }
    )
    return Dataset.from_external("toy", frame)


def pair_set(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def by_pair(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user", "item"]).reset_index(drop=True)


def assert_same_split(a: Split, b: Split) -> None:
    for name in PARTS:
        pd.testing.assert_frame_equal(a.parts()[name], b.parts()[name])
    assert a.config == b.config
    for name in ("valid_cold_items", "test_cold_items", "valid_cold_users", "test_cold_users"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------- ratio rule
@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (10, [8, 1, 1]),
        (5, [3, 1, 1]),  # 0.5 per held-out part: each raised to 1, train keeps 3
        (4, [2, 1, 1]),
        (3, [1, 1, 1]),
        (2, [1, 0, 1]),  # test is raised first; then train has 1 left and valid gets none
        (1, [1, 0, 0]),
        (0, [0, 0, 0]),
        (11, [9, 1, 1]),
        (19, [17, 1, 1]),
        (20, [16, 2, 2]),
        (100, [80, 10, 10]),
    ],
)
def test_ratio_counts_match_recbole_by_hand(total: int, expected: list[int]) -> None:
    assert ratio_counts([total], (0.8, 0.1, 0.1))[0].tolist() == expected
    assert recbole_counts(total, (0.8, 0.1, 0.1)) == expected


@settings(max_examples=200, deadline=None)
@given(
    totals=st.lists(st.integers(0, 300), min_size=1, max_size=20),
    ratios=st.tuples(st.integers(1, 10), st.integers(0, 10), st.integers(0, 10)),
)
def test_ratio_counts_equal_the_recbole_reference(
    totals: list[int], ratios: tuple[int, int, int]
) -> None:
    as_floats = tuple(float(r) for r in ratios)
    got = ratio_counts(totals, as_floats)
    assert got.tolist() == [recbole_counts(t, as_floats) for t in totals]
    assert got.sum(axis=1).tolist() == totals


def test_random_split_gives_each_user_recbole_counts() -> None:
    sizes = {"a": 10, "b": 5, "c": 2, "d": 1, "e": 3}
    frame = pd.DataFrame(
        [(u, f"{u}{k}") for u, n in sizes.items() for k in range(n)], columns=["user", "item"]
    )
    ds = Dataset.from_external("counts", frame)
    split = split_dataset(ds, SplitConfig("random"))
    names = ds.users["id"].tolist()
    for part, column in zip(PARTS, range(3), strict=True):
        counts = split.parts()[part]["user"].map(lambda u: names[u]).value_counts()
        for user, n in sizes.items():
            assert int(counts.get(user, 0)) == recbole_counts(n, (0.8, 0.1, 0.1))[column]
    assert [len(split.train), len(split.valid), len(split.test)] == [8 + 3 + 1 + 1 + 1, 3, 4]


# ---------------------------------------------------------------------- properties
def check_scheme_properties(ds: Dataset, split: Split) -> None:
    """Check each scheme's promise directly on the frames, independently of verify()."""
    config = split.config
    train, valid, test = split.train, split.valid, split.test
    if config.scheme == "random":
        everything = pd.concat([train, valid, test])
        for user, rows in everything.groupby("user"):
            got = [int((frame["user"] == user).sum()) for frame in (train, valid, test)]
            assert got == recbole_counts(len(rows), config.ratios)
    elif config.scheme == "loo":
        for user, rows in ds.interactions.groupby("user"):
            held_valid = valid[valid["user"] == user]
            held_test = test[test["user"] == user]
            kept = train[train["user"] == user]
            if len(rows) < 3:
                assert len(held_valid) == 0 and len(held_test) == 0
                continue
            assert len(held_valid) == 1 and len(held_test) == 1
            assert held_test["timestamp"].iloc[0] == rows["timestamp"].max()
            assert held_valid["timestamp"].iloc[0] <= held_test["timestamp"].iloc[0]
            assert held_valid["timestamp"].iloc[0] >= kept["timestamp"].max()
    elif config.scheme == "temporal":
        if len(valid) and len(train):
            assert valid["timestamp"].min() >= train["timestamp"].max()
        if len(test):
            before = pd.concat([train, valid])["timestamp"]
            assert test["timestamp"].min() >= before.max()
        expected = recbole_counts(ds.n_interactions, config.ratios)
        assert [len(train), len(valid), len(test)] == expected
    elif config.scheme in ("cold-item", "cold-user"):
        column = "item" if config.scheme == "cold-item" else "user"
        cold_valid = split.valid_cold_items if column == "item" else split.valid_cold_users
        cold_test = split.test_cold_items if column == "item" else split.test_cold_users
        assert cold_valid is not None and cold_test is not None
        in_train = set(train[column])
        assert set(cold_valid.tolist()) == set(valid[column])
        assert set(cold_test.tolist()) == set(test[column])
        assert not (set(cold_valid.tolist()) & in_train)
        assert not (set(cold_test.tolist()) & in_train)
        assert not (set(cold_valid.tolist()) & set(cold_test.tolist()))
        n_ids = ds.interactions[column].nunique()
        expected = recbole_counts(n_ids, config.ratios)
        assert [len(in_train), len(cold_valid), len(cold_test)] == expected
    elif config.scheme == "predefined":
        for name, frame in split.parts().items():
            assert (frame["split"] == name).all()


@settings(max_examples=40, deadline=None)
@given(
    ds=tables(),
    scheme=st.sampled_from(SCHEMES),
    ratios=st.sampled_from(RATIOS),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_scheme_partitions_without_leakage(
    ds: Dataset, scheme: str, ratios: tuple[float, float, float], seed: int
) -> None:
    config = SplitConfig(scheme, ratios, seed)  # type: ignore[arg-type]
    split = split_dataset(ds, config)

    # The parts are exactly the data set's rows: nothing lost, nothing duplicated.
    whole = pd.concat(list(split.parts().values()), ignore_index=True)
    pd.testing.assert_frame_equal(by_pair(whole), by_pair(ds.interactions))
    for name, frame in split.parts().items():
        assert list(frame.columns) == list(ds.interactions.columns), name
    # No (user, item) pair of valid or test is in train.
    assert not pair_set(split.train) & pair_set(split.valid)
    assert not pair_set(split.train) & pair_set(split.test)
    assert not pair_set(split.valid) & pair_set(split.test)

    check_scheme_properties(ds, split)
    split.verify(ds)

    summary = split.summary()
    sizes = summary["sizes"]
    assert sizes["total"]["interactions"] == ds.n_interactions
    assert sum(sizes[p]["interactions"] for p in PARTS) == ds.n_interactions
    assert sizes["total"]["users"] == ds.interactions["user"].nunique()
    assert sizes["total"]["items"] == ds.interactions["item"].nunique()
    assert summary["guarantees"] and all(isinstance(g, str) for g in summary["guarantees"])

    # Same data and config → the same split.
    assert_same_split(split, split_dataset(ds, config))


def varied_table(n_users: int = 30, n_items: int = 25, seed: int = 0) -> Dataset:
    """A fixed table big enough that two seeds almost surely split it differently."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, size=n_users * n_items // 2, replace=False)
    frame = pd.DataFrame(
        {
            "user": keys // n_items,
            "item": keys % n_items,
            "timestamp": rng.integers(0, 3, len(keys)),  # many ties, so tie-breaks matter
        }
    )
    return Dataset.from_external("varied", frame)


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
def test_different_seeds_give_different_splits(scheme: str) -> None:
    ds = varied_table()
    a = split_dataset(ds, SplitConfig(scheme, seed=1))  # type: ignore[arg-type]
    b = split_dataset(ds, SplitConfig(scheme, seed=2))  # type: ignore[arg-type]
    assert pair_set(a.test) != pair_set(b.test) or pair_set(a.valid) != pair_set(b.valid)
    a.verify(ds)
    b.verify(ds)


def test_loo_with_distinct_times_ignores_the_seed_and_takes_the_latest() -> None:
    frame = pd.DataFrame(
        {
            "user": ["a"] * 4 + ["b"] * 2,
            "item": ["1", "2", "3", "4", "1", "2"],
            "timestamp": [40, 10, 30, 20, 5, 6],
        }
    )
    ds = Dataset.from_external("loo", frame)
    for seed in (0, 1, 2):
        split = split_dataset(ds, SplitConfig("loo", seed=seed))
        items = ds.items["id"].tolist()
        assert [items[i] for i in split.test["item"]] == ["1"]
        assert [items[i] for i in split.valid["item"]] == ["3"]
        assert len(split.train) == 4  # a's two earliest plus both of b's (< 3 interactions)


# ---------------------------------------------------------------------- errors
def test_schemes_that_need_data_the_set_lacks_raise() -> None:
    ds = Dataset.from_external("bare", pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1]}))
    for scheme in ("loo", "temporal"):
        with pytest.raises(DataError, match="timestamps"):
            split_dataset(ds, SplitConfig(scheme))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no predefined split"):
        split_dataset(ds, SplitConfig("predefined"))
    odd = pd.DataFrame({"user": [1, 2], "item": [1, 1], "split": ["train", "validation"]})
    with pytest.raises(DataError, match="validation"):
        split_dataset(Dataset.from_external("odd", odd), SplitConfig("predefined"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scheme": "by-moon-phase"},
        {"ratios": (0.0, 0.5, 0.5)},
        {"ratios": (0.8, -0.1, 0.3)},
        {"ratios": (0.8, 0.2)},
        {"ratios": (0.8, float("nan"), 0.1)},
        {"seed": -1},
    ],
)
def test_bad_configs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ClrecError):
        SplitConfig(**kwargs)  # type: ignore[arg-type]


def test_verify_catches_tampering() -> None:
    ds = varied_table()
    leaky = split_dataset(ds, SplitConfig("random"))
    leaky.train = pd.concat([leaky.train, leaky.test.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="more than one part"):
        leaky.verify()

    moved = split_dataset(ds, SplitConfig("random"))
    moved.train = pd.concat([moved.train, moved.test.iloc[:1]], ignore_index=True)
    moved.test = moved.test.iloc[1:].reset_index(drop=True)
    with pytest.raises(DataError, match="ratio rule"):
        moved.verify()

    cold = split_dataset(ds, SplitConfig("cold-item"))
    cold.train = pd.concat([cold.train, cold.valid.iloc[:1]], ignore_index=True)
    cold.valid = cold.valid.iloc[1:].reset_index(drop=True)
    with pytest.raises(DataError, match="cold-item"):
        cold.verify()

    temporal = split_dataset(ds, SplitConfig("temporal"))
    late = temporal.test.iloc[:1].assign(timestamp=0)
    temporal.test = pd.concat([temporal.test.iloc[1:], late], ignore_index=True)
    with pytest.raises(DataError, match="temporal"):
        temporal.verify()

    edited = split_dataset(ds, SplitConfig("cold-user"))
    edited.train = edited.train.assign(timestamp=edited.train["timestamp"] + 100)
    edited.verify()  # consistent on its own …
    with pytest.raises(DataError, match="not exactly"):
        edited.verify(ds)  # … but no longer the data set's interactions


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize("scheme", SCHEMES)
def test_save_load_round_trip(scheme: str, tmp_path: Path) -> None:
    ds = varied_table()
    if scheme == "predefined":
        labels = split_dataset(ds, SplitConfig("random", seed=7))
        marked = pd.concat(
            [frame.assign(split=name) for name, frame in labels.parts().items()],
            ignore_index=True,
        )
        ds = ds.with_interactions(marked)
    split = split_dataset(ds, SplitConfig(scheme, (0.7, 0.15, 0.15), seed=11))  # type: ignore[arg-type]
    split.save(tmp_path / "split")
    assert {p.name for p in (tmp_path / "split").iterdir()} == {
        "train.parquet",
        "valid.parquet",
        "test.parquet",
        "split.json",
    }
    restored = Split.load(tmp_path / "split")
    assert_same_split(split, restored)
    assert restored.dataset_name == "varied"
    assert restored.summary() == split.summary()
    restored.verify(ds)


def test_load_refuses_a_folder_that_is_not_a_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no split\.json"):
        Split.load(tmp_path)


# ---------------------------------------------------------------------- bundled data
@pytest.fixture(scope="module")
def small() -> Dataset:
    return load("ml-latest-small")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bundled_data_set_splits_add_up(small: Dataset, scheme: str) -> None:
    ds = small
    if scheme == "predefined":
        labels = split_dataset(ds, SplitConfig("random"))
        ds = ds.with_interactions(
            pd.concat(
                [frame.assign(split=name) for name, frame in labels.parts().items()],
                ignore_index=True,
            )
        )
    split = split_dataset(ds, SplitConfig(scheme))  # type: ignore[arg-type]
    split.verify(ds)
    summary = split.summary()

    sizes = {p: summary["sizes"][p]["interactions"] for p in (*PARTS, "total")}
    assert sizes["train"] + sizes["valid"] + sizes["test"] == sizes["total"] == 100_836
    assert summary["sizes"]["total"]["users"] == 610
    assert summary["sizes"]["total"]["items"] == 9_724
    for kind in ("users", "items"):
        per_part = [summary["sizes"][p][kind] for p in PARTS]
        assert max(per_part) <= summary["sizes"]["total"][kind]
        assert len(set(split.train[kind[:-1]])) == per_part[0]
    assert summary["guarantees"]

    if scheme == "random":
        assert sizes["valid"] > 0 and sizes["test"] > 0
        assert summary["unseen_in_train"]["test_users"] == 0  # every user has ≥ 20 ratings
    if scheme == "loo":
        assert sizes["valid"] == sizes["test"] == 610
    if scheme == "temporal":
        assert [sizes[p] for p in PARTS] == recbole_counts(100_836, (0.8, 0.1, 0.1))
    if scheme == "cold-item":
        cold = summary["cold"]
        assert summary["unseen_in_train"]["valid_items"] == cold["valid_cold_items"] == 972
        assert summary["unseen_in_train"]["test_items"] == cold["test_cold_items"] == 972
    if scheme == "cold-user":
        assert summary["unseen_in_train"]["valid_users"] == summary["cold"]["valid_cold_users"]
        assert summary["unseen_in_train"]["test_users"] == summary["cold"]["test_cold_users"]
        assert summary["sizes"]["valid"]["users"] == summary["sizes"]["test"]["users"] == 61
    if scheme == "predefined":
        assert_same_split_parts(split, labels)


def assert_same_split_parts(a: Split, b: Split) -> None:
    for name in PARTS:
        left = a.parts()[name].drop(columns="split")
        pd.testing.assert_frame_equal(by_pair(left), by_pair(b.parts()[name]))
