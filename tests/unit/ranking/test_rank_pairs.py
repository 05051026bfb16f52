"""Ranker pairs: the protocol checked by hand on a tiny split with a fixed-order retriever, and
its guarantees (no test leakage, exact positives, hard negatives from the retriever's top,
random negatives never interacted, disjoint fit / validation users, determinism) on a real
split of ml-latest-small with the popularity retriever."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from clrec.data import registry
from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.data.splits import Split, SplitConfig, split_dataset
from clrec.errors import ClrecError
from clrec.models.registry import build_model
from clrec.ranking.pairs import (
    HARD_NEGATIVE,
    NO_ITEM,
    POSITIVE,
    RANDOM_NEGATIVE,
    PairConfig,
    RankPairs,
    TestPairs,
    TrainPairs,
    build_pairs,
    retrieve,
)

N_ITEMS = 12


class LowestIdFirst:
    """A retriever that ranks items by id, lowest first (excluded items score -inf)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.tile(-np.arange(self.n_items, dtype=np.float32), (len(users), 1))  # (B, I)
        if exclude is not None:
            scores[exclude[users].toarray() > 0] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (B, k)
        return top, np.take_along_axis(scores, top, axis=1)


def hand_split() -> tuple[Dataset, Split]:
    """Users 0–2 over items 0–11, with train / valid / test written out.

    * user 0: train {0, 1}, valid {3}, test {2}
    * user 1: train {0…8}, valid {9}, test {10} — only item 11 never interacted
    * user 2: train {4}, no valid, test {0}
    """
    parts = {
        "train": [(0, 0), (0, 1), *((1, i) for i in range(9)), (2, 4)],
        "valid": [(0, 3), (1, 9)],
        "test": [(0, 2), (1, 10), (2, 0)],
    }
    frames = {
        name: pd.DataFrame(pairs, columns=["user", "item"]).astype("int64")
        for name, pairs in parts.items()
    }
    log = pd.concat(frames.values())
    dataset = Dataset.from_external(
        "hand",
        log.astype(str),
        item_content=pd.DataFrame({"id": [str(i) for i in range(N_ITEMS)]}),
    )
    split = Split(SplitConfig(), frames["train"], frames["valid"], frames["test"])
    return dataset, split


def pairs_of(pairs: RankPairs, user: int, origin: int) -> list[int]:
    assert pairs.origin is not None
    chosen: list[int] = pairs.items[(pairs.users == user) & (pairs.origin == origin)].tolist()
    return chosen


def keys(users: np.ndarray, items: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(users.tolist(), items.tolist(), strict=True))


def frame_keys(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return keys(frame["user"].to_numpy(), frame["item"].to_numpy())


# --------------------------------------------------------------------------- by hand


def test_train_stage_by_hand() -> None:
    dataset, split = hand_split()
    config = PairConfig(candidates=5, hard_negatives=2, random_negatives=2, validation_share=0)
    result = build_pairs(dataset, split, LowestIdFirst(N_ITEMS), "train", config)
    assert isinstance(result, TrainPairs)
    pairs = result.fit
    assert len(result.validation) == 0
    assert sorted(set(pairs.users.tolist())) == [0, 1]  # user 2 has no valid interaction
    # user 0: candidates 2, 3, 4, 5, 6 (train excluded); 2 is a test item, 3 the positive
    assert pairs_of(pairs, 0, POSITIVE) == [3]
    assert pairs_of(pairs, 0, HARD_NEGATIVE) == [4, 5]
    random_0 = pairs_of(pairs, 0, RANDOM_NEGATIVE)
    assert len(random_0) == 2 and set(random_0) <= set(range(6, N_ITEMS))
    # user 1: candidates 9, 10, 11 then nothing; 9 is valid, 10 test → one hard negative
    assert pairs_of(pairs, 1, POSITIVE) == [9]
    assert pairs_of(pairs, 1, HARD_NEGATIVE) == [11]
    assert pairs_of(pairs, 1, RANDOM_NEGATIVE) == []  # 11 is taken: nothing left
    assert pairs.origin is not None
    np.testing.assert_array_equal(pairs.labels, pairs.origin == POSITIVE)


def test_test_stage_by_hand_returns_the_candidates_of_the_same_users() -> None:
    dataset, split = hand_split()
    config = PairConfig(candidates=4, hard_negatives=2, random_negatives=1)
    result = build_pairs(dataset, split, LowestIdFirst(N_ITEMS), "test", config)
    assert isinstance(result, TestPairs)
    assert result.users.tolist() == [0, 1, 2]
    # train and valid excluded; user 1 has only 10 and 11 left
    assert result.candidates.tolist() == [[2, 4, 5, 6], [10, 11, NO_ITEM, NO_ITEM], [0, 1, 2, 3]]
    pairs = result.pairs
    assert pairs_of(pairs, 0, POSITIVE) == [2]
    assert pairs_of(pairs, 0, HARD_NEGATIVE) == [4, 5]
    assert pairs_of(pairs, 1, HARD_NEGATIVE) == [11]
    assert pairs_of(pairs, 2, POSITIVE) == [0]
    assert pairs_of(pairs, 2, HARD_NEGATIVE) == [1, 2]
    random_2 = pairs_of(pairs, 2, RANDOM_NEGATIVE)
    assert len(random_2) == 1 and random_2[0] not in {0, 1, 2, 4}


def test_random_negatives_of_a_heavy_user_are_the_items_left() -> None:
    dataset, split = hand_split()
    for seed in range(5):  # whether or not the block draw finds item 11, it is the answer
        config = PairConfig(hard_negatives=0, random_negatives=3, validation_share=0, seed=seed)
        fit = build_pairs(dataset, split, LowestIdFirst(N_ITEMS), "train", config).fit
        assert pairs_of(fit, 1, RANDOM_NEGATIVE) == [11]
        assert len(pairs_of(fit, 0, RANDOM_NEGATIVE)) == 3


def test_retrieve_batches_and_pads_short_rows() -> None:
    dataset, split = hand_split()
    exclude = interaction_matrix(split.train, dataset.n_users, dataset.n_items)
    users = np.array([1, 0, 2])
    top = retrieve(LowestIdFirst(N_ITEMS), users, 4, exclude, batch_users=2)
    assert top.dtype == np.int64
    assert top.tolist() == [[9, 10, 11, NO_ITEM], [2, 3, 4, 5], [0, 1, 2, 3]]
    wide = retrieve(LowestIdFirst(N_ITEMS), users[:1], N_ITEMS + 3, None)
    assert wide.shape == (1, N_ITEMS + 3) and (wide[0, N_ITEMS:] == NO_ITEM).all()


def test_pos_weight_counts_and_subset_by_hand() -> None:
    pairs = RankPairs(
        users=np.array([0, 0, 0, 1, 1, 1, 1]),
        items=np.array([5, 6, 7, 5, 6, 7, 8]),
        labels=np.array([1, 0, 0, 1, 1, 0, 0]),
    )
    assert (len(pairs), pairs.positives, pairs.negatives) == (7, 3, 4)
    assert pairs.pos_weight == pytest.approx(4 / 3)
    first_user = pairs.subset(pairs.users == 0)
    assert first_user.items.tolist() == [5, 6, 7] and first_user.pos_weight == 2.0
    picked = pairs.subset(np.array([6, 3]))
    assert picked.items.tolist() == [8, 5] and picked.labels.dtype == np.int8
    with pytest.raises(ClrecError, match="no positive"):
        _ = pairs.subset(np.array([1, 2])).pos_weight
    with pytest.raises(ClrecError, match="0 or 1"):
        RankPairs(np.array([0]), np.array([0]), np.array([2]))
    with pytest.raises(ClrecError, match="entries"):
        RankPairs(np.array([0, 1]), np.array([0]), np.array([1]))


@pytest.mark.parametrize(
    "fields",
    [
        {"max_users": 0},
        {"candidates": 0},
        {"hard_negatives": -1},
        {"hard_negatives": 51},  # more than the 50 candidates
        {"random_negatives": 1.5},
        {"hard_negatives": 0, "random_negatives": 0},
        {"validation_share": 1.0},
        {"validation_share": -0.1},
        {"seed": -1},
        {"seed": True},
        {"max_positives_per_user": 0},
    ],
)
def test_bad_pair_config_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ClrecError):
        PairConfig(**fields)


def test_unknown_stage_and_foreign_split_are_refused() -> None:
    dataset, split = hand_split()
    with pytest.raises(ClrecError, match="stage"):
        unknown: Any = "valid"
        build_pairs(dataset, split, LowestIdFirst(N_ITEMS), unknown)
    bigger = Split(
        SplitConfig(), split.train.assign(item=split.train["item"] + 20), *[split.valid, split.test]
    )
    with pytest.raises(ClrecError, match="outside"):
        build_pairs(dataset, bigger, LowestIdFirst(N_ITEMS), "train")


# --------------------------------------------------------------------------- real data

MOVIES_CONFIG = PairConfig(max_users=200, candidates=30, hard_negatives=4, random_negatives=2)


@pytest.fixture(scope="module")
def movies() -> tuple[Dataset, Split, Any]:
    """ml-latest-small, split 8:1:1 per user, and a popularity retriever fitted on train."""
    dataset = registry.load("ml-latest-small", None)
    split = split_dataset(dataset, SplitConfig(seed=7))
    model = build_model("popularity", {}).fit(dataset.with_interactions(split.train))
    return dataset, split, model


@pytest.fixture(scope="module")
def movie_train_pairs(movies: tuple[Dataset, Split, Any]) -> TrainPairs:
    dataset, split, model = movies
    return build_pairs(dataset, split, model, "train", MOVIES_CONFIG)


def all_pairs(result: TrainPairs) -> RankPairs:
    fit, validation = result.fit, result.validation
    assert fit.origin is not None and validation.origin is not None
    return RankPairs(
        np.concatenate([fit.users, validation.users]),
        np.concatenate([fit.items, validation.items]),
        np.concatenate([fit.labels, validation.labels]),
        np.concatenate([fit.origin, validation.origin]),
    )


def test_training_pairs_never_touch_a_test_interaction(
    movies: tuple[Dataset, Split, Any], movie_train_pairs: TrainPairs
) -> None:
    _, split, _ = movies
    pairs = all_pairs(movie_train_pairs)
    assert not keys(pairs.users, pairs.items) & frame_keys(split.test)
    assert not keys(pairs.users, pairs.items) & frame_keys(split.train)


def test_positives_are_exactly_the_valid_interactions_of_the_sampled_users(
    movies: tuple[Dataset, Split, Any], movie_train_pairs: TrainPairs
) -> None:
    _, split, _ = movies
    pairs = all_pairs(movie_train_pairs)
    sampled = np.unique(pairs.users)
    assert len(sampled) == MOVIES_CONFIG.max_users
    assert set(sampled.tolist()) <= set(split.valid["user"].tolist())
    valid = split.valid[split.valid["user"].isin(sampled)]
    positive = pairs.labels == 1
    assert keys(pairs.users[positive], pairs.items[positive]) == frame_keys(valid)
    assert pairs.positives == len(valid)
    assert len(keys(pairs.users, pairs.items)) == len(pairs)  # no duplicate pair


def test_heavy_users_positives_are_capped_to_a_seeded_sample(
    movies: tuple[Dataset, Split, Any], movie_train_pairs: TrainPairs
) -> None:
    dataset, split, model = movies
    capped = all_pairs(
        build_pairs(
            dataset, split, model, "train", replace(MOVIES_CONFIG, max_positives_per_user=2)
        )
    )
    full = all_pairs(movie_train_pairs)
    positive = capped.labels == 1
    per_user = np.bincount(capped.users[positive], minlength=dataset.n_users)
    valid_per_user = np.bincount(split.valid["user"], minlength=dataset.n_users)
    sampled = np.unique(capped.users)
    assert np.array_equal(per_user[sampled], np.minimum(valid_per_user[sampled], 2))
    assert keys(capped.users[positive], capped.items[positive]) <= keys(
        full.users[full.labels == 1], full.items[full.labels == 1]
    )
    assert capped.negatives > 0


def test_hard_negatives_are_the_first_allowed_retrieved_candidates(
    movies: tuple[Dataset, Split, Any], movie_train_pairs: TrainPairs
) -> None:
    dataset, split, model = movies
    pairs = all_pairs(movie_train_pairs)
    users = np.unique(pairs.users)
    exclude = interaction_matrix(split.train, dataset.n_users, dataset.n_items)
    top = retrieve(model, users, MOVIES_CONFIG.candidates, exclude)  # (U, k)
    taboo = frame_keys(split.valid) | frame_keys(split.test)
    for row, user in enumerate(users.tolist()):
        expected = [i for i in top[row].tolist() if (user, i) not in taboo]
        assert pairs_of(pairs, user, HARD_NEGATIVE) == expected[: MOVIES_CONFIG.hard_negatives]


def test_random_negatives_were_never_interacted_with(
    movies: tuple[Dataset, Split, Any], movie_train_pairs: TrainPairs
) -> None:
    dataset, _, _ = movies
    pairs = all_pairs(movie_train_pairs)
    assert pairs.origin is not None
    rand = pairs.origin == RANDOM_NEGATIVE
    assert rand.sum() == MOVIES_CONFIG.random_negatives * len(np.unique(pairs.users))
    assert not keys(pairs.users[rand], pairs.items[rand]) & frame_keys(dataset.interactions)
    assert (pairs.labels[pairs.origin != POSITIVE] == 0).all()


def test_fit_and_validation_users_are_disjoint_and_share_as_configured(
    movie_train_pairs: TrainPairs,
) -> None:
    fit_users = set(movie_train_pairs.fit.users.tolist())
    validation_users = set(movie_train_pairs.validation.users.tolist())
    assert not fit_users & validation_users
    assert len(validation_users) == round(MOVIES_CONFIG.validation_share * MOVIES_CONFIG.max_users)
    assert len(fit_users | validation_users) == MOVIES_CONFIG.max_users


def test_pairs_are_fixed_by_the_seed(
    movies: tuple[Dataset, Split, Any], movie_train_pairs: TrainPairs
) -> None:
    dataset, split, model = movies
    again = build_pairs(dataset, split, model, "train", MOVIES_CONFIG)
    for old, new in (
        (movie_train_pairs.fit, again.fit),
        (movie_train_pairs.validation, again.validation),
    ):
        for name in ("users", "items", "labels", "origin"):
            np.testing.assert_array_equal(getattr(old, name), getattr(new, name))
    other_seed = PairConfig(**{**MOVIES_CONFIG.__dict__, "seed": 1})
    other = build_pairs(dataset, split, model, "train", other_seed)
    # another seed samples other users (not just another fit / validation division)
    assert not np.array_equal(
        np.unique(all_pairs(other).users), np.unique(all_pairs(movie_train_pairs).users)
    )


def test_test_stage_on_real_data(movies: tuple[Dataset, Split, Any]) -> None:
    dataset, split, model = movies
    result = build_pairs(dataset, split, model, "test", MOVIES_CONFIG)
    pairs = result.pairs
    assert result.candidates.shape == (MOVIES_CONFIG.max_users, MOVIES_CONFIG.candidates)
    assert np.array_equal(result.users, np.unique(pairs.users))
    assert set(result.users.tolist()) <= set(split.test["user"].tolist())
    seen = frame_keys(split.train) | frame_keys(split.valid)
    candidate_keys = keys(
        np.repeat(result.users, MOVIES_CONFIG.candidates), result.candidates.ravel()
    )
    assert not candidate_keys & seen  # candidates skip what the user has already seen
    assert not keys(pairs.users, pairs.items) & seen
    positive = pairs.labels == 1
    expected = split.test[split.test["user"].isin(result.users)]
    assert keys(pairs.users[positive], pairs.items[positive]) == frame_keys(expected)
