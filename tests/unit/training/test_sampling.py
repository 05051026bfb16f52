"""Negative sampling never returns a positive, is seeded, and covers each pair once an epoch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clrec.errors import ClrecError
from clrec.training.sampling import NegativeSampler, batch_slices


def _random_pairs(seed: int, n_users: int, n_items: int, density: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = False  # one negative each
    users, items = np.nonzero(mask)
    return np.stack([users, items])


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_items=st.integers(2, 30),
    density=st.floats(0.0, 0.97),
)
def test_never_returns_a_positive(seed: int, n_items: int, density: float) -> None:
    users, items = _random_pairs(seed, 12, n_items, density)
    sampler = NegativeSampler(users, items, n_items, seed=seed)
    query = np.repeat(np.arange(12), 50)
    negatives = sampler.sample(query)
    positive = {(int(u), int(i)) for u, i in zip(users, items, strict=True)}
    assert all((int(u), int(i)) not in positive for u, i in zip(query, negatives, strict=True))
    assert negatives.min() >= 0 and negatives.max() < n_items


def test_nearly_full_user_gets_the_only_negative() -> None:
    n_items = 200
    users = np.zeros(n_items - 1, dtype=np.int64)
    items = np.delete(np.arange(n_items), 123)  # user 0 has every item but 123
    sampler = NegativeSampler(users, items, n_items, seed=0)
    assert (sampler.sample(np.zeros(500, dtype=np.int64)) == 123).all()


def test_seeded() -> None:
    users, items = _random_pairs(1, 50, 40, 0.3)
    first = NegativeSampler(users, items, 40, seed=7).epoch()
    second = NegativeSampler(users, items, 40, seed=7).epoch()
    other = NegativeSampler(users, items, 40, seed=8).epoch()
    np.testing.assert_array_equal(first.users, second.users)
    np.testing.assert_array_equal(first.negatives, second.negatives)
    assert not np.array_equal(first.negatives, other.negatives)


def test_epoch_covers_every_pair_once() -> None:
    users, items = _random_pairs(2, 30, 25, 0.4)
    epoch = NegativeSampler(users, items, 25, seed=3).epoch()
    assert len(epoch) == len(users)
    got = sorted(zip(epoch.users.tolist(), epoch.positives.tolist(), strict=True))
    assert got == sorted(zip(users.tolist(), items.tolist(), strict=True))


def test_is_positive() -> None:
    sampler = NegativeSampler(np.array([0, 0, 2]), np.array([1, 3, 0]), 4)
    mask = sampler.is_positive(np.array([0, 0, 1, 2, 2]), np.array([1, 2, 1, 0, 3]))
    assert mask.tolist() == [True, False, False, True, False]


def test_user_with_every_item_is_refused() -> None:
    with pytest.raises(ClrecError, match="all 3 items"):
        NegativeSampler(np.array([5, 5, 5]), np.array([0, 1, 2]), 3)


def test_batch_slices() -> None:
    assert batch_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batch_slices(0, 3) == []
    with pytest.raises(ClrecError):
        batch_slices(3, 0)
