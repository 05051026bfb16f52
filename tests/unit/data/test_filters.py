"""Filters on hand-made tables with known answers: binarize, k-core and compact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clrec.data.filters import binarize, compact, k_core
from clrec.data.schema import Dataset
from clrec.errors import DataError


def external_pairs(ds: Dataset) -> set[tuple[str, str]]:
    """Interactions as (external user, external item) pairs, independent of internal ids."""
    users = ds.users["id"].to_numpy()
    items = ds.items["id"].to_numpy()
    return {
        (str(users[u]), str(items[i]))
        for u, i in zip(ds.interactions["user"], ds.interactions["item"], strict=True)
    }


def pairs_table(pairs: list[tuple[str, str]], name: str = "toy") -> Dataset:
    frame = pd.DataFrame(pairs, columns=["user", "item"])
    return Dataset.from_external(name, frame)


# ---------------------------------------------------------------------- binarize
def test_binarize_keeps_ratings_at_or_above_the_threshold() -> None:
    frame = pd.DataFrame(
        {
            "user": ["a", "a", "a", "b", "b", "c"],
            "item": ["x", "y", "z", "x", "y", "z"],
            "rating": [5.0, 3.5, 4.0, 1.0, np.nan, 2.0],
        }
    )
    ds = Dataset.from_external("ratings", frame)
    kept = binarize(ds, 4.0)
    assert external_pairs(kept) == {("a", "x"), ("a", "z")}
    assert kept.interactions["rating"].tolist() == [5.0, 4.0]
    assert kept.n_users == ds.n_users and kept.n_items == ds.n_items  # catalogue unchanged
    assert ds.n_interactions == 6  # the input is untouched
    assert binarize(ds, 0.0).n_interactions == 5  # a missing rating is never a positive


def test_binarize_refuses_data_without_ratings() -> None:
    with pytest.raises(DataError, match="no ratings"):
        binarize(pairs_table([("a", "x")]), 3.0)
    with pytest.raises(DataError, match="finite"):
        binarize(pairs_table([("a", "x")]), float("nan"))


# ---------------------------------------------------------------------- k-core
def test_k_core_needs_more_than_one_pass() -> None:
    # Pass 1 drops (c, z): item z has one interaction. That leaves user c with one, so
    # pass 2 drops (c, x). Then x and y have 2 each, a and b have 2 each: stable.
    ds = pairs_table([("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "z"), ("c", "x")])
    core = k_core(ds, user_k=2, item_k=2)
    assert external_pairs(core) == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}
    assert core.n_users == 3  # ids are not renumbered until compact()


def test_k_core_can_cascade_to_nothing() -> None:
    # A chain: every removal starves the next user or item, three passes and more.
    chain = [("u1", "i1"), ("u1", "i2"), ("u2", "i2"), ("u2", "i3"), ("u3", "i3"), ("u3", "i4")]
    assert k_core(pairs_table(chain), user_k=2, item_k=2).n_interactions == 0
    assert k_core(pairs_table(chain), user_k=1, item_k=1).n_interactions == 6


def naive_k_core(pairs: set[tuple[int, int]], user_k: int, item_k: int) -> set[tuple[int, int]]:
    """Remove one offending pair at a time until none is left (a slow reference)."""
    left = set(pairs)
    while True:
        users = pd.Series([u for u, _ in left]).value_counts()
        items = pd.Series([i for _, i in left]).value_counts()
        bad = [p for p in sorted(left) if users[p[0]] < user_k or items[p[1]] < item_k]
        if not bad:
            return left
        left.discard(bad[0])


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.sets(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=40),
    user_k=st.integers(0, 4),
    item_k=st.integers(0, 4),
)
def test_k_core_matches_one_at_a_time_removal(
    pairs: set[tuple[int, int]], user_k: int, item_k: int
) -> None:
    ds = pairs_table([(f"u{u}", f"i{i}") for u, i in sorted(pairs)])
    expected = {(f"u{u}", f"i{i}") for u, i in naive_k_core(pairs, user_k, item_k)}
    assert external_pairs(k_core(ds, user_k, item_k)) == expected


# ---------------------------------------------------------------------- compact
def rich_dataset() -> Dataset:
    """Interactions plus content, a catalogue-only item, vectors, relations and negatives."""
    frame = pd.DataFrame(
        {
            "user": ["1", "1", "2", "3", "3", "4"],
            "item": ["10", "20", "20", "30", "40", "10"],
            "rating": [5.0, 2.0, 5.0, 1.0, 4.0, 2.0],
        }
    )
    content = pd.DataFrame(
        {
            "id": ["10", "20", "30", "40", "99"],
            "title": ["Ten", "Twenty", "Thirty", "Forty", "Ninety-nine"],
        }
    )
    vector_ids = np.array(["10", "20", "30", "40", "99"])
    vectors = np.arange(10, dtype=np.float32).reshape(5, 2)  # row k = [2k, 2k + 1]
    relations = pd.DataFrame({"user": ["1", "2", "3", "4"], "other": ["2", "3", "4", "1"]})
    negatives = pd.DataFrame(
        {
            "user": ["1", "2", "3"],
            "item": ["10", "20", "40"],
            "split": ["test", "test", "test"],
            "negatives": [["30", "40"], ["10", "99"], ["20", "30"]],
        }
    )
    return Dataset.from_external(
        "rich",
        frame,
        item_content=content,
        item_fields={"title": "text"},
        item_vectors={"text": (vector_ids, vectors)},
        user_relations=relations,
        eval_negatives=negatives,
    )


def test_compact_renumbers_and_keeps_content_aligned() -> None:
    ds = rich_dataset()
    positives = binarize(ds, 4.0)  # keeps (1,10) (2,20) (3,40); users 4, items 30 and 99 idle
    small = compact(positives)

    assert small.users["id"].tolist() == ["1", "2", "3"]
    assert small.items["id"].tolist() == ["10", "20", "40"]
    assert external_pairs(small) == {("1", "10"), ("2", "20"), ("3", "40")}
    assert sorted(small.interactions["user"].tolist()) == [0, 1, 2]
    assert sorted(small.interactions["item"].tolist()) == [0, 1, 2]

    # Content and vectors follow their ids.
    assert small.items["title"].tolist() == ["Ten", "Twenty", "Forty"]
    np.testing.assert_array_equal(small.item_vectors["text"], [[0, 1], [2, 3], [6, 7]])
    by_id = dict(zip(small.items["id"], small.items["title"], strict=True))
    for user, item in external_pairs(small):
        assert by_id[item] == dict(zip(ds.items["id"], ds.items["title"], strict=True))[item]
        assert user in set(ds.users["id"])

    # Relations keep only edges between surviving users, in external terms unchanged.
    assert small.user_relations is not None
    names = small.users["id"].tolist()
    edges = {(names[a], names[b]) for a, b in small.user_relations.to_numpy()}
    assert edges == {("1", "2"), ("2", "3")}

    # Negatives: rows whose user and item survive; negative ids outside the catalogue go.
    assert small.eval_negatives is not None
    items = small.items["id"].tolist()
    rows = [
        (names[u], items[i], [items[j] for j in negs])
        for u, i, negs in zip(
            small.eval_negatives["user"],
            small.eval_negatives["item"],
            small.eval_negatives["negatives"],
            strict=True,
        )
    ]
    assert rows == [("1", "10", ["40"]), ("2", "20", ["10"]), ("3", "40", ["20"])]
    small.check_integrity()


def test_compact_of_a_compact_dataset_changes_nothing() -> None:
    ds = compact(rich_dataset())  # drops only the catalogue-only item 99
    assert ds.items["id"].tolist() == ["10", "20", "30", "40"]
    again = compact(ds)
    pd.testing.assert_frame_equal(again.interactions, ds.interactions)
    pd.testing.assert_frame_equal(again.items, ds.items)
    pd.testing.assert_frame_equal(again.users, ds.users)
    np.testing.assert_array_equal(again.item_vectors["text"], ds.item_vectors["text"])
