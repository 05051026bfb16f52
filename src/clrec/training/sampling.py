"""Uniform negative sampling and shuffled (user, positive, negative) batches for BPR.

A negative for user ``u`` is an item drawn uniformly from the items ``u`` has *not* interacted
with in training. Sampling is vectorised rejection sampling: draw for every row at once, look
all draws up in the sorted array of training pairs (one ``searchsorted``), redraw only the
rows that hit a positive. Each round shrinks the redraw set by the user's share of unseen
items, so a few rounds suffice; there is no Python loop over interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clrec.errors import ClrecError

_MAX_ROUNDS = 64  # rejection rounds before the (rare) per-user fallback


@dataclass(frozen=True)
class TripletBatch:
    """One epoch's or one batch's BPR triples, aligned index arrays of equal length."""

    users: np.ndarray  # (n,) int64
    positives: np.ndarray  # (n,) int64
    negatives: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.users)


class NegativeSampler:
    """Seeded uniform sampler of items outside each user's training positives.

    ``users`` / ``items`` are the training pairs (duplicates are fine). Raises
    :class:`ClrecError` when some user has interacted with every item (no negative exists).
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int, seed: int = 0) -> None:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ClrecError("NegativeSampler needs two 1-d arrays of equal length")
        if n_items < 2:
            raise ClrecError(f"negative sampling needs at least 2 items, got {n_items}")
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise ClrecError("NegativeSampler got item ids outside [0, n_items)")
        self.n_items = n_items
        self.keys = np.unique(users * n_items + items)  # (P,) sorted, one per distinct pair
        self.users = users
        self.items = items
        pair_users = self.keys // n_items
        counts = np.bincount(pair_users) if len(pair_users) else np.zeros(0, dtype=np.int64)
        full = np.flatnonzero(counts >= n_items)
        if len(full):
            raise ClrecError(
                f"user {int(full[0])} has interacted with all {n_items} items, so no negative "
                "item can be sampled for them; drop such users before training"
            )
        self.rng = np.random.default_rng(seed)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean mask: is ``(users[k], items[k])`` a training pair?"""
        query = np.asarray(users, dtype=np.int64) * self.n_items + items  # (n,)
        if len(self.keys) == 0:
            return np.zeros(len(query), dtype=bool)
        at = np.searchsorted(self.keys, query)  # (n,)
        at = np.minimum(at, len(self.keys) - 1)
        return np.asarray(self.keys[at] == query)

    def sample(self, users: np.ndarray) -> np.ndarray:
        """One uniform negative item per entry of ``users``, ``(n,)`` int64."""
        users = np.asarray(users, dtype=np.int64)
        negatives = self.rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        redo = np.flatnonzero(self.is_positive(users, negatives))  # rows to redraw
        for _ in range(_MAX_ROUNDS):
            if len(redo) == 0:
                return negatives
            negatives[redo] = self.rng.integers(0, self.n_items, size=len(redo), dtype=np.int64)
            redo = redo[self.is_positive(users[redo], negatives[redo])]
        # Users with almost every item as a positive: draw from their explicit complement.
        for row in redo:
            seen = self.keys[self.keys // self.n_items == users[row]] % self.n_items
            unseen = np.setdiff1d(np.arange(self.n_items), seen)
            negatives[row] = unseen[self.rng.integers(0, len(unseen))]
        return negatives

    def epoch(self) -> TripletBatch:
        """Every training pair once, in a fresh random order, each with a fresh negative."""
        order = self.rng.permutation(len(self.users))  # (n,)
        users = self.users[order]
        return TripletBatch(users, self.items[order], self.sample(users))


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    if batch_size < 1:
        raise ClrecError(f"batch_size must be at least 1, got {batch_size}")
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
