"""Positive pairs for the contrastive terms, drawn from the training interactions.

* Intra-user pairs: two *different* items of the same user
  (:func:`clrec.losses.intra_user.intra_user_loss`).
* Cross-user pairs: two *different* users of the same item
  (:func:`clrec.losses.cross_user.cross_user_loss`).
* Friend pairs: a user and one of their friends (:func:`clrec.losses.social.social_loss`).

Each side is a CSR adjacency (``indptr`` / ``indices``) of the *distinct* pairs, so a repeated
interaction does not make an item more likely. A pair is two uniform draws of offsets into a
row, the second from the row's other entries (draw from ``degree − 1`` and skip the first),
for all rows at once: there is no Python loop over interactions. Rows without enough
neighbours (a user with one item, an item with one user, a user with no friends) are dropped.
A seeded numpy generator makes the pairs reproducible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from clrec.errors import ClrecError


def _as_ids(values: np.ndarray, bound: int, name: str) -> np.ndarray:
    """``values`` as a 1-d int64 array, after checking every id is in ``[0, bound)``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ClrecError(f"{name} must be a 1-d array, got shape {array.shape}")
    if len(array) and not np.issubdtype(array.dtype, np.integer):
        raise ClrecError(f"{name} must hold integer ids, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if len(array) and (array.min() < 0 or array.max() >= bound):
        raise ClrecError(f"{name} has ids outside [0, {bound})")
    return array


class _Adjacency:
    """CSR neighbour lists of the distinct ``(rows[k], cols[k])`` pairs, sorted per row."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> None:
        matrix = sp.csr_array(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_cols)
        )
        matrix.sum_duplicates()  # one entry per distinct pair, indices sorted
        self.indptr = matrix.indptr.astype(np.int64)  # (n_rows + 1,)
        self.indices = matrix.indices.astype(np.int64)  # (P,)
        self.degree = np.diff(self.indptr)  # (n_rows,)

    def one(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, neighbour)`` for the rows with ≥ 1 neighbour, one uniform neighbour each."""
        rows = rows[self.degree[rows] >= 1]  # (n,)
        offset = rng.integers(0, self.degree[rows])  # (n,)
        return rows, self.indices[self.indptr[rows] + offset]

    def two(
        self, rows: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, first, second)`` for rows with ≥ 2 neighbours; two distinct uniform ones."""
        rows = rows[self.degree[rows] >= 2]  # (n,)
        degree = self.degree[rows]  # (n,)
        first = rng.integers(0, degree)  # (n,) in [0, d)
        second = rng.integers(0, degree - 1)  # (n,) in [0, d − 1)
        second += second >= first  # skip the first: uniform over the other d − 1
        start = self.indptr[rows]  # (n,)
        return rows, self.indices[start + first], self.indices[start + second]


class ContrastivePairSampler:
    """Seeded sampler of intra-user and cross-user positive pairs from training pairs.

    ``users`` / ``items`` are the training interactions (duplicates are fine), ids in
    ``[0, n_users)`` and ``[0, n_items)``.
    """

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        n_users: int,
        n_items: int,
        seed: int = 0,
    ) -> None:
        if n_users < 1 or n_items < 1:
            raise ClrecError(f"need n_users ≥ 1 and n_items ≥ 1, got {n_users} and {n_items}")
        users = _as_ids(users, n_users, "users")
        items = _as_ids(items, n_items, "items")
        if users.shape != items.shape:
            raise ClrecError(
                f"users and items must have equal length, got {len(users)} and {len(items)}"
            )
        self.n_users = n_users
        self.n_items = n_items
        self.by_user = _Adjacency(users, items, n_users, n_items)  # user → items
        self.by_item = _Adjacency(items, users, n_items, n_users)  # item → users
        self.rng = np.random.default_rng(seed)

    def intra_user(self, batch_users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(users, first_item, second_item)``: two distinct items of each eligible user.

        Users of ``batch_users`` with fewer than 2 distinct items are dropped; order and
        repeats of the others are kept.
        """
        return self.by_user.two(_as_ids(batch_users, self.n_users, "batch_users"), self.rng)

    def cross_user(self, batch_items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(items, first_user, second_user)``: two distinct users of each eligible item.

        Items of ``batch_items`` with fewer than 2 distinct users are dropped; order and
        repeats of the others are kept.
        """
        return self.by_item.two(_as_ids(batch_items, self.n_items, "batch_items"), self.rng)


class FriendPairs:
    """Seeded sampler of ``(user, friend)`` pairs from a friend graph's edges.

    Edges ``sources[k] → targets[k]`` (duplicates are fine) are read both ways when
    ``undirected`` (friendship is mutual; Last.fm lists it once per direction, other data
    once per pair). Self-loops are dropped: a user is not their own positive.
    """

    def __init__(
        self,
        sources: np.ndarray,
        targets: np.ndarray,
        n_users: int,
        seed: int = 0,
        *,
        undirected: bool = True,
    ) -> None:
        if n_users < 1:
            raise ClrecError(f"need n_users ≥ 1, got {n_users}")
        sources = _as_ids(sources, n_users, "sources")
        targets = _as_ids(targets, n_users, "targets")
        if sources.shape != targets.shape:
            raise ClrecError(
                f"sources and targets must have equal length, got {len(sources)} and {len(targets)}"
            )
        keep = sources != targets  # (E,)
        sources, targets = sources[keep], targets[keep]
        if undirected:
            sources, targets = (
                np.concatenate([sources, targets]),
                np.concatenate([targets, sources]),
            )
        self.n_users = n_users
        self.friends = _Adjacency(sources, targets, n_users, n_users)  # user → friends
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(users, friend)``: one uniform friend for each user of ``batch_users`` with any."""
        return self.friends.one(_as_ids(batch_users, self.n_users, "batch_users"), self.rng)
