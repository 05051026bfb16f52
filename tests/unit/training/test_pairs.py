"""Contrastive pairs come from real interactions / friendships, are distinct and seeded."""

import numpy as np
import pytest

from clrec.errors import ClrecError
from clrec.training.pairs import ContrastivePairSampler, FriendPairs


def _interactions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs with repeats; user 0 has one item (seen 3 times), user 1 has none."""
    rng = np.random.default_rng(seed)
    users = rng.integers(2, 30, size=400)
    items = rng.integers(0, 25, size=400)
    users = np.concatenate([users, [0, 0, 0]])
    items = np.concatenate([items, [7, 7, 7]])
    return users, items


def test_intra_user_pairs_are_two_distinct_items_of_the_user() -> None:
    users, items = _interactions(0)
    seen = set(zip(users.tolist(), items.tolist(), strict=True))
    sampler = ContrastivePairSampler(users, items, n_users=30, n_items=25, seed=1)
    batch = np.repeat(np.arange(30), 20)
    pair_users, first, second = sampler.intra_user(batch)
    assert len(pair_users) == len(first) == len(second)
    assert all((u, i) in seen for u, i in zip(pair_users.tolist(), first.tolist(), strict=True))
    assert all((u, i) in seen for u, i in zip(pair_users.tolist(), second.tolist(), strict=True))
    assert (first != second).all()
    distinct = {u: len({i for v, i in seen if v == u}) for u in range(30)}
    eligible = [u for u in batch.tolist() if distinct.get(u, 0) >= 2]
    np.testing.assert_array_equal(pair_users, eligible)  # order and repeats kept
    assert 0 not in pair_users and 1 not in pair_users  # one (repeated) item, no items


def test_cross_user_pairs_are_two_distinct_users_of_the_item() -> None:
    users, items = _interactions(2)
    seen = set(zip(users.tolist(), items.tolist(), strict=True))
    sampler = ContrastivePairSampler(users, items, n_users=30, n_items=26, seed=3)
    batch = np.arange(26)
    pair_items, first, second = sampler.cross_user(batch)
    assert all((u, i) in seen for u, i in zip(first.tolist(), pair_items.tolist(), strict=True))
    assert all((u, i) in seen for u, i in zip(second.tolist(), pair_items.tolist(), strict=True))
    assert (first != second).all()
    assert 25 not in pair_items  # an item nobody touched


def test_single_user_items_are_dropped() -> None:
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 1, 1, 2])  # item 0: user 0; item 1: users 0, 1; item 2: user 2
    sampler = ContrastivePairSampler(users, items, n_users=3, n_items=3)
    pair_items, first, second = sampler.cross_user(np.array([0, 1, 2, 1]))
    np.testing.assert_array_equal(pair_items, [1, 1])
    assert sorted([first[0], second[0]]) == [0, 1]
    pair_users, _, _ = sampler.intra_user(np.array([0, 1, 2]))
    np.testing.assert_array_equal(pair_users, [0])  # user 1 has item 1 twice: one distinct


def test_pairs_are_uniform_over_ordered_distinct_pairs() -> None:
    users = np.array([0, 0, 0, 0])
    items = np.array([4, 5, 6, 6])  # item 6 repeated: must not be drawn more often
    sampler = ContrastivePairSampler(users, items, n_users=1, n_items=7, seed=0)
    _, first, second = sampler.intra_user(np.zeros(60_000, dtype=np.int64))
    pairs, counts = np.unique(first * 10 + second, return_counts=True)
    assert pairs.tolist() == [45, 46, 54, 56, 64, 65]
    assert np.abs(counts / 60_000 - 1 / 6).max() < 0.01


def test_seeded() -> None:
    users, items = _interactions(4)
    batch = np.arange(30)
    first = ContrastivePairSampler(users, items, 30, 25, seed=7)
    second = ContrastivePairSampler(users, items, 30, 25, seed=7)
    other = ContrastivePairSampler(users, items, 30, 25, seed=8)
    for a, b in zip(first.intra_user(batch), second.intra_user(batch), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first.cross_user(batch[:25]), second.cross_user(batch[:25]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.intra_user(batch)[1], other.intra_user(batch)[1])


def test_empty_batches_and_bad_arguments() -> None:
    sampler = ContrastivePairSampler(np.array([0, 0]), np.array([0, 1]), 2, 2)
    assert all(len(a) == 0 for a in sampler.intra_user(np.zeros(0, dtype=np.int64)))
    with pytest.raises(ClrecError, match="batch_users"):
        sampler.intra_user(np.array([2]))
    with pytest.raises(ClrecError, match="batch_items"):
        sampler.cross_user(np.array([-1]))
    with pytest.raises(ClrecError, match="integer"):
        sampler.intra_user(np.array([0.5]))
    with pytest.raises(ClrecError, match="items"):
        ContrastivePairSampler(np.array([0]), np.array([5]), 2, 2)
    with pytest.raises(ClrecError, match="equal length"):
        ContrastivePairSampler(np.array([0, 1]), np.array([0]), 2, 2)


def test_friend_pairs_are_real_edges_either_way() -> None:
    rng = np.random.default_rng(0)
    sources = rng.integers(0, 40, size=120)
    targets = rng.integers(0, 40, size=120)
    sources = np.concatenate([sources, [45, 46]])  # 46 → 46: a self-loop only
    targets = np.concatenate([targets, [47, 46]])
    edges = set(zip(sources.tolist(), targets.tolist(), strict=True))
    friends = FriendPairs(sources, targets, n_users=50, seed=1)
    users, friend = friends.sample(np.repeat(np.arange(50), 5))
    pairs = list(zip(users.tolist(), friend.tolist(), strict=True))
    assert all((u, f) in edges or (f, u) in edges for u, f in pairs)
    assert all(u != f for u, f in pairs)
    assert 47 in users.tolist()  # 45 → 47 read backwards
    assert 46 not in users.tolist() and 49 not in users.tolist()


def test_directed_friend_pairs_and_seeding() -> None:
    sources = np.array([0, 0, 1])
    targets = np.array([1, 2, 2])
    directed = FriendPairs(sources, targets, n_users=3, seed=0, undirected=False)
    users, friend = directed.sample(np.array([0, 1, 2, 0]))
    np.testing.assert_array_equal(users, [0, 1, 0])
    assert friend[1] == 2 and set(friend[[0, 2]].tolist()) <= {1, 2}
    batch = np.repeat(np.arange(3), 50)
    first = FriendPairs(sources, targets, 3, seed=5).sample(batch)
    second = FriendPairs(sources, targets, 3, seed=5).sample(batch)
    np.testing.assert_array_equal(first[1], second[1])
    with pytest.raises(ClrecError, match="targets"):
        FriendPairs(sources, np.array([0, 1, 3]), 3)
