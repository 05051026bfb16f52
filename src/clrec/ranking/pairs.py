"""Labelled (user, item) pairs for training and testing a ranker on a retriever's candidates.

A ranker re-scores the top candidates of a retriever that was fitted on ``split.train`` only.
Its pairs come from interactions the retriever never saw, and training pairs never touch a
test interaction. Per stage:

* ``"train"`` — positives are the user's ``split.valid`` interactions. Candidates are the
  retriever's top ``candidates`` with the user's train items excluded. Hard negatives are the
  first ``hard_negatives`` candidates that are neither valid nor *test* items of the user (a
  test item must not be taught as a negative either). Users: those with ≥ 1 valid
  interaction, sampled down to ``max_users``, then divided *by user* into fit and validation
  pairs (``validation_share``), so early stopping is judged on unseen users.
* ``"test"`` — positives are ``split.test``; candidates exclude train and valid items; hard
  negatives are candidates that are not test items of the user. Users: those with ≥ 1 test
  interaction, sampled down to ``max_users``. The candidate matrix comes back too, so the
  caller can measure retrieve → rerank on the same users.

In both stages random negatives are uniform over the items the user has no interaction with
in any part of the split (and that are not already one of their hard negatives). Duplicate
pairs are dropped and a positive is never also a negative. One seeded generator draws the
users, the fit / validation division and the random negatives in that order, so a seed
fixes the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, overload

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.errors import ClrecError

Stage = Literal["train", "test"]
STAGES: tuple[str, str] = ("train", "test")

# RankPairs.origin codes: why a pair is in the set
POSITIVE, HARD_NEGATIVE, RANDOM_NEGATIVE = 0, 1, 2
RETRIEVE_BATCH_USERS = 1024  # users scored per recommend call: bounds the (B, n_items) scores
NO_ITEM = -1  # pads a candidate row when fewer than k items are left to recommend
# Random negatives are drawn with replacement, this many times the count plus a margin, and
# filtered; the few users left short (almost every item seen) get an exact draw instead.
_OVERSAMPLE, _OVERSAMPLE_MARGIN = 4, 8


class Retriever(Protocol):
    """What pair building needs from a first stage: any fitted ``Recommender`` has it."""

    def recommend(
        self, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class PairConfig:
    """How many users and pairs, and how the negatives are chosen (module docstring).

    ``candidates`` is how many items the retriever returns per user (hard negatives come from
    these, and at test time the ranker re-scores them); ``hard_negatives`` and
    ``random_negatives`` are counts per user. ``validation_share`` of the training users go
    to the validation pairs used for early stopping. ``max_positives_per_user`` keeps a seeded
    sample of a heavy user's positives (None: all), so a few users do not dominate the pairs.
    """

    max_users: int = 2000
    candidates: int = 50
    hard_negatives: int = 4
    random_negatives: int = 2
    validation_share: float = 0.1
    seed: int = 0
    max_positives_per_user: int | None = None

    def __post_init__(self) -> None:
        cap = self.max_positives_per_user
        if cap is not None and (not _is_int(cap) or cap < 1):
            raise ClrecError(f"max_positives_per_user must be None or an integer ≥ 1, got {cap!r}")
        for name, minimum in (
            ("max_users", 1),
            ("candidates", 1),
            ("hard_negatives", 0),
            ("random_negatives", 0),
            ("seed", 0),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ClrecError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
        if self.hard_negatives > self.candidates:
            raise ClrecError(
                f"hard_negatives ({self.hard_negatives}) cannot exceed candidates "
                f"({self.candidates}): they are drawn from the candidates"
            )
        if self.hard_negatives + self.random_negatives == 0:
            raise ClrecError("hard_negatives and random_negatives are both 0: no negatives")
        share = self.validation_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            raise ClrecError(f"validation_share must be in [0, 1), got {share!r}")


@dataclass(frozen=True)
class RankPairs:
    """Labelled (user, item) pairs, grouped by user: positives, hard, then random negatives.

    ``origin`` (optional) says why each pair is there: :data:`POSITIVE`,
    :data:`HARD_NEGATIVE` or :data:`RANDOM_NEGATIVE`.
    """

    users: np.ndarray  # (N,) int64 internal user ids
    items: np.ndarray  # (N,) int64 internal item ids
    labels: np.ndarray  # (N,) int8, 1 = positive, 0 = negative
    origin: np.ndarray | None = None  # (N,) int8

    def __post_init__(self) -> None:
        arrays = {"users": self.users, "items": self.items, "labels": self.labels}
        if self.origin is not None:
            arrays["origin"] = self.origin
        n = len(self.users)
        for name, array in arrays.items():
            if np.ndim(array) != 1 or len(array) != n:
                raise ClrecError(f"RankPairs.{name} must be 1-d with {n} entries")
        # normalise dtypes on a frozen instance
        object.__setattr__(self, "users", np.asarray(self.users, dtype=np.int64))
        object.__setattr__(self, "items", np.asarray(self.items, dtype=np.int64))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int8))
        if self.origin is not None:
            object.__setattr__(self, "origin", np.asarray(self.origin, dtype=np.int8))
        if not np.isin(self.labels, (0, 1)).all():
            raise ClrecError("RankPairs.labels must be 0 or 1")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def positives(self) -> int:
        """Pairs labelled 1."""
        return int(self.labels.sum())

    @property
    def negatives(self) -> int:
        """Pairs labelled 0."""
        return len(self) - self.positives

    @property
    def pos_weight(self) -> float:
        """negatives / positives: the BCE weight on positives that balances the two classes."""
        if self.positives == 0:
            raise ClrecError("no positive pairs: the class balance is undefined")
        return self.negatives / self.positives

    def subset(self, selection: np.ndarray) -> RankPairs:
        """The pairs picked by a boolean mask of length N or an array of positions."""
        return RankPairs(
            users=self.users[selection],
            items=self.items[selection],
            labels=self.labels[selection],
            origin=None if self.origin is None else self.origin[selection],
        )


@dataclass(frozen=True)
class TrainPairs:
    """The ``"train"`` stage: pairs to fit on and pairs of other users to stop early on."""

    fit: RankPairs
    validation: RankPairs


@dataclass(frozen=True)
class TestPairs:
    """The ``"test"`` stage: labelled pairs, and what the retriever gave the same users.

    ``candidates[j]`` are the retriever's top items for ``users[j]`` (train and valid items
    excluded), best first, padded with :data:`NO_ITEM`; re-rank them and score against
    ``split.test`` to measure the two stages together.
    """

    __test__ = False  # not a pytest test class, whatever its name

    pairs: RankPairs
    users: np.ndarray  # (U,) int64, sorted
    candidates: np.ndarray  # (U, k) int64


def retrieve(
    model: Retriever,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    batch_users: int = RETRIEVE_BATCH_USERS,
) -> np.ndarray:
    """Top-``k`` items per user, ``(len(users), k)`` int64, skipping ``exclude[u]``.

    Calls ``model.recommend`` on ``batch_users`` users at a time. Where fewer than ``k``
    items are left (a small catalogue, a heavy user) the row ends in :data:`NO_ITEM`.
    """
    if not _is_int(k) or k < 1:
        raise ClrecError(f"k must be an integer ≥ 1, got {k!r}")
    users = np.asarray(users, dtype=np.int64)
    out = np.full((len(users), k), NO_ITEM, dtype=np.int64)  # (U, k)
    for start in range(0, len(users), batch_users):
        batch = users[start : start + batch_users]  # (B,)
        items, scores = model.recommend(batch, k, exclude)  # (B, k') each, k' ≤ k
        items = np.asarray(items, dtype=np.int64)
        # recommend fills a short row with excluded items scored -inf: not candidates
        items = np.where(np.isneginf(np.asarray(scores, dtype=np.float64)), NO_ITEM, items)
        out[start : start + len(batch), : items.shape[1]] = items
    return out


@overload
def build_pairs(
    dataset: Dataset,
    split: Split,
    model: Retriever,
    stage: Literal["train"],
    config: PairConfig | None = None,
) -> TrainPairs: ...


@overload
def build_pairs(
    dataset: Dataset,
    split: Split,
    model: Retriever,
    stage: Literal["test"],
    config: PairConfig | None = None,
) -> TestPairs: ...


def build_pairs(
    dataset: Dataset,
    split: Split,
    model: Retriever,
    stage: Stage,
    config: PairConfig | None = None,
) -> TrainPairs | TestPairs:
    """Ranker pairs for ``stage`` from ``split`` and ``model`` (fitted on ``split.train``).

    See the module docstring for the protocol. ``"train"`` gives :class:`TrainPairs`,
    ``"test"`` gives :class:`TestPairs`.
    """
    if stage not in STAGES:
        raise ClrecError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    config = config or PairConfig()
    n_users, n_items = dataset.n_users, dataset.n_items
    for part, frame in split.parts().items():
        _check_frame(frame, part, n_users, n_items)
    rng = np.random.default_rng(config.seed)

    if stage == "train":
        target, seen = split.valid, split.train
        blocked_hard = pd.concat([split.valid, split.test])  # never a hard negative
    else:
        target, seen = split.test, pd.concat([split.train, split.valid])
        blocked_hard = split.test
    everything = pd.concat([split.train, split.valid, split.test])  # never a random negative

    users = _sample_users(target, config.max_users, rng)  # (U,) sorted
    candidates = retrieve(
        model, users, config.candidates, interaction_matrix(seen, n_users, n_items)
    )  # (U, k)
    pairs = _assemble(
        users,
        target,
        candidates,
        _pair_keys(blocked_hard, n_items),
        _pair_keys(everything, n_items),
        n_items,
        config,
        rng,
    )
    if stage == "test":
        return TestPairs(pairs=pairs, users=users, candidates=candidates)

    validation_users = _validation_users(users, config.validation_share, rng)
    in_validation = np.isin(pairs.users, validation_users)  # (N,)
    return TrainPairs(fit=pairs.subset(~in_validation), validation=pairs.subset(in_validation))


# --------------------------------------------------------------------------- steps


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_frame(frame: pd.DataFrame, part: str, n_users: int, n_items: int) -> None:
    for column, bound in (("user", n_users), ("item", n_items)):
        if column not in frame.columns:
            raise ClrecError(f"split.{part} has no {column!r} column")
        ids = frame[column].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() >= bound):
            raise ClrecError(f"split.{part} has {column} ids outside [0, {bound}): wrong data set?")


def _pair_keys(frame: pd.DataFrame, n_items: int) -> np.ndarray:
    """Sorted distinct ``user * n_items + item`` keys of a frame's pairs (one int per pair)."""
    users = frame["user"].to_numpy(dtype=np.int64)
    items = frame["item"].to_numpy(dtype=np.int64)
    return np.unique(users * n_items + items)


def _sample_users(target: pd.DataFrame, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct users of ``target``, a seeded sample of ``limit`` of them when more, sorted."""
    users = np.unique(target["user"].to_numpy(dtype=np.int64))  # (U,)
    if len(users) > limit:
        users = np.sort(rng.choice(users, size=limit, replace=False))
    return users


def _validation_users(users: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded ``share`` of ``users`` (at least one when share > 0, never all of them)."""
    if share == 0 or len(users) < 2:
        return np.empty(0, dtype=np.int64)
    count = min(max(1, round(share * len(users))), len(users) - 1)
    return np.sort(rng.choice(users, size=count, replace=False))


def _assemble(
    users: np.ndarray,
    target: pd.DataFrame,
    candidates: np.ndarray,
    blocked_hard: np.ndarray,
    blocked_random: np.ndarray,
    n_items: int,
    config: PairConfig,
    rng: np.random.Generator,
) -> RankPairs:
    """Positives, hard and random negatives of ``users`` as one de-duplicated RankPairs."""
    # positives: every target interaction of the sampled users
    chosen = target["user"].isin(users).to_numpy()
    positive_users = target["user"].to_numpy(dtype=np.int64)[chosen]  # (P,)
    positive_items = target["item"].to_numpy(dtype=np.int64)[chosen]  # (P,)
    if config.max_positives_per_user is not None:  # a seeded sample of each user's positives
        order = rng.permutation(len(positive_users))  # (P,)
        shuffled = positive_users[order]
        rank = pd.Series(shuffled).groupby(shuffled).cumcount().to_numpy()  # (P,)
        keep = np.sort(order[rank < config.max_positives_per_user])
        positive_users, positive_items = positive_users[keep], positive_items[keep]

    # hard negatives: the first `hard_negatives` candidates of each row that are allowed
    keys = users[:, None] * n_items + candidates  # (U, k)
    allowed = (candidates != NO_ITEM) & ~np.isin(keys, blocked_hard)  # (U, k)
    first = allowed & (np.cumsum(allowed, axis=1) <= config.hard_negatives)  # (U, k)
    rows, columns = np.nonzero(first)  # row-major: per user, in rank order
    hard_users = users[rows]  # (H,)
    hard_items = candidates[rows, columns]  # (H,)

    blocked = np.union1d(blocked_random, hard_users * n_items + hard_items)
    random_users, random_items = _random_negatives(
        users, blocked, n_items, config.random_negatives, rng
    )  # (R,) each

    frame = pd.DataFrame(
        {
            "user": np.concatenate([positive_users, hard_users, random_users]),
            "item": np.concatenate([positive_items, hard_items, random_items]),
            "origin": np.concatenate(
                [
                    np.full(len(positive_users), POSITIVE),
                    np.full(len(hard_users), HARD_NEGATIVE),
                    np.full(len(random_users), RANDOM_NEGATIVE),
                ]
            ).astype(np.int8),
        }
    )
    # keep the first of a repeated pair: positives come first, so one is never a negative
    frame = frame.drop_duplicates(["user", "item"], keep="first")
    frame = frame.sort_values(["user", "origin"], kind="stable")
    origin = frame["origin"].to_numpy()
    return RankPairs(
        users=frame["user"].to_numpy(),
        items=frame["item"].to_numpy(),
        labels=(origin == POSITIVE).astype(np.int8),
        origin=origin,
    )


def _random_negatives(
    users: np.ndarray,
    blocked: np.ndarray,
    n_items: int,
    count: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` distinct uniform items per user whose (user, item) key is not blocked.

    Draws with replacement in one block and keeps each row's first ``count`` distinct
    unblocked items: that is a uniform draw without replacement from the allowed items.
    """
    if count == 0 or not len(users):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    width = count * _OVERSAMPLE + _OVERSAMPLE_MARGIN
    draws = rng.integers(0, n_items, size=(len(users), width))  # (U, W)
    owners = np.repeat(users, width)  # (U·W,) row-major like draws.ravel()
    frame = pd.DataFrame({"user": owners, "item": draws.ravel()})
    frame = frame[~np.isin(frame["user"].to_numpy() * n_items + frame["item"].to_numpy(), blocked)]
    frame = frame.drop_duplicates(["user", "item"]).groupby("user", sort=False).head(count)

    # users left short by the block draw: draw exactly from what they have left
    got = frame.groupby("user").size().reindex(users, fill_value=0).to_numpy()  # (U,)
    extra_users: list[np.ndarray] = []
    extra_items: list[np.ndarray] = []
    for user, have in zip(users[got < count].tolist(), got[got < count].tolist(), strict=True):
        taken = frame.loc[frame["user"] == user, "item"].to_numpy()
        keys = np.arange(n_items, dtype=np.int64) + user * n_items  # (I,)
        left = np.flatnonzero(~np.isin(keys, blocked))  # (L,) items never blocked
        left = np.setdiff1d(left, taken)
        more = rng.choice(left, size=min(count - have, len(left)), replace=False)
        extra_users.append(np.full(len(more), user, dtype=np.int64))
        extra_items.append(more.astype(np.int64))
    return (
        np.concatenate([frame["user"].to_numpy(dtype=np.int64), *extra_users]),
        np.concatenate([frame["item"].to_numpy(dtype=np.int64), *extra_items]),
    )
