"""User content matrix X (U × F): each user's training history pooled over item vectors.

A user's history vector is a weighted mean of the content vectors of the items they
interacted with (items whose vector is missing — a NaN row — are skipped):

* ``mean``: every interaction weighs 1 (repeated (user, item) rows count repeatedly);
* ``recency``: weight ``0.5 ** ((t_ref - t) / half_life)``, where ``t_ref`` is the user's
  latest interaction time (over all of their interactions, with or without an item vector).
  Because the vector is a weighted *mean*, any per-user reference time gives the same result;
  the latest one keeps every weight in (0, 1] so nothing overflows, and an incremental update
  that moves ``t_ref`` forward only has to rescale the stored sums by one factor.

The user's own profile text vector (when given) is then concatenated (``concat``: F = D + D',
zeros for a missing part), averaged with the history (``mean``: needs D = D'; a user with only
one part gets that part) or ignored (``none``).

:class:`UserProfiles` keeps the sufficient statistics (weighted sums, weight totals, reference
times), so :meth:`UserProfiles.update` folds new interactions in for the touched users only and
gives what a full rebuild on all interactions would, up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from clrec.errors import ClrecError, DataError

Pooling = Literal["mean", "recency"]
ProfileText = Literal["concat", "mean", "none"]
SECONDS_PER_DAY = 86_400.0
# Column block for sparse × dense products, so a float64 copy of the item table is never
# materialised at once (I × 256 × 8 bytes at a time).
_COLUMN_BLOCK = 256


@dataclass(frozen=True)
class UserProfileConfig:
    """How history is pooled and how the user's own profile text joins it.

    ``half_life_days``: under ``recency``, an interaction this much older than the user's
    latest one counts half. ``normalize`` L2-normalises each non-zero row of the final matrix.
    """

    pooling: Pooling = "mean"
    half_life_days: float = 30.0
    include_profile_text: ProfileText = "concat"
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "recency"):
            raise ClrecError(f"pooling must be 'mean' or 'recency', got {self.pooling!r}")
        if self.include_profile_text not in ("concat", "mean", "none"):
            raise ClrecError(
                "include_profile_text must be 'concat', 'mean' or 'none', "
                f"got {self.include_profile_text!r}"
            )
        if not self.half_life_days > 0:
            raise ClrecError(f"half_life_days must be positive, got {self.half_life_days}")


@dataclass
class UserProfiles:
    """The user matrix and the statistics that let it grow without a full rebuild.

    ``matrix`` is ``(U, F)`` float32; ``has_history`` / ``has_text`` say which users have a
    usable history / a profile text vector, ``has_profile`` is either. Users with neither
    have a zero row.
    """

    config: UserProfileConfig
    item_vectors: np.ndarray  # (I, D) float32 with NaN rows; referenced, not copied
    user_text_vectors: np.ndarray | None  # (U, D') with NaN rows
    weighted_sum: np.ndarray  # (U, D) float64: Σ w · item vector, weights relative to t_ref
    weight_total: np.ndarray  # (U,) float64: Σ w over interactions with an item vector
    reference_time: np.ndarray  # (U,) float64: latest interaction time; NaN = none / mean
    n_history: np.ndarray  # (U,) int64: interactions with a usable item vector
    matrix: np.ndarray  # (U, F) float32

    @property
    def n_users(self) -> int:
        return int(self.weight_total.shape[0])

    @property
    def has_history(self) -> np.ndarray:
        return self.weight_total > 0  # (U,) bool

    @property
    def has_text(self) -> np.ndarray:
        if self.user_text_vectors is None or self.config.include_profile_text == "none":
            return np.zeros(self.n_users, dtype=bool)
        present: np.ndarray = np.isfinite(self.user_text_vectors).all(axis=1)  # (U,) bool
        return present

    @property
    def has_profile(self) -> np.ndarray:
        either: np.ndarray = self.has_history | self.has_text  # (U,) bool
        return either

    def update(
        self, new_interactions: pd.DataFrame, *, item_vectors: np.ndarray | None = None
    ) -> np.ndarray:
        """Fold ``new_interactions`` in place; return the ids of the users whose rows changed.

        Users beyond the current ``n_users`` are added (without profile text). ``item_vectors``
        replaces the item table for these and later interactions (e.g. after new items were
        encoded); vectors already pooled are not revisited — a changed old item vector needs a
        rebuild.
        """
        if item_vectors is not None:
            self.item_vectors = _check_item_vectors(item_vectors, self.item_vectors.shape[1])
        users, items, times = _columns(new_interactions, self.item_vectors.shape[0], self.config)
        if len(users) == 0:
            return np.zeros(0, dtype=np.int64)
        self._grow(int(users.max()) + 1)
        touched = np.unique(users)  # (T,)

        if self.config.pooling == "recency":
            assert times is not None
            latest = np.full(self.n_users, -np.inf)
            np.maximum.at(latest, users, times)
            old = self.reference_time[touched]  # (T,)
            new = np.fmax(old, latest[touched])  # NaN (no earlier interaction) → new time
            # Re-express the stored sums relative to the later reference time.
            scale = np.where(np.isnan(old), 1.0, _decay(new - old, self.config))  # (T,)
            self.weighted_sum[touched] *= scale[:, None]
            self.weight_total[touched] *= scale
            self.reference_time[touched] = new

        # Pool the new interactions over the touched users only (local ids 0..T-1).
        local = np.searchsorted(touched, users)  # (N,)
        sums, totals, counts = _pool(
            local,
            items,
            times,
            self.item_vectors,
            self.reference_time[touched],
            len(touched),
            self.config,
        )
        self.weighted_sum[touched] += sums
        self.weight_total[touched] += totals
        self.n_history[touched] += counts
        self.matrix[touched] = self._rows(touched)
        return touched

    def _grow(self, n_users: int) -> None:
        extra = n_users - self.n_users
        if extra <= 0:
            return
        dim = self.weighted_sum.shape[1]
        self.weighted_sum = np.vstack([self.weighted_sum, np.zeros((extra, dim))])
        self.weight_total = np.concatenate([self.weight_total, np.zeros(extra)])
        self.reference_time = np.concatenate([self.reference_time, np.full(extra, np.nan)])
        self.n_history = np.concatenate([self.n_history, np.zeros(extra, dtype=np.int64)])
        if self.user_text_vectors is not None:
            text = self.user_text_vectors
            pad = np.full((extra, text.shape[1]), np.nan, dtype=text.dtype)
            self.user_text_vectors = np.vstack([text, pad])
        self.matrix = np.vstack(
            [self.matrix, np.zeros((extra, self.matrix.shape[1]), dtype=np.float32)]
        )

    def _rows(self, users: np.ndarray) -> np.ndarray:
        """Matrix rows for ``users`` from the statistics: ``(len(users), F)`` float32."""
        totals = self.weight_total[users]  # (n,)
        history = np.zeros((len(users), self.weighted_sum.shape[1]))  # (n, D)
        used = totals > 0
        history[used] = self.weighted_sum[users[used]] / totals[used, None]
        mode = self.config.include_profile_text
        text = None if self.user_text_vectors is None else self.user_text_vectors[users]
        if text is None or mode == "none":
            rows = history
        else:
            has_text = np.isfinite(text).all(axis=1)  # (n,)
            text = np.where(has_text[:, None], text, 0.0)  # (n, D')
            if mode == "concat":
                rows = np.hstack([history, text])  # (n, D + D')
            else:
                parts = used.astype(np.float64) + has_text  # (n,) 0, 1 or 2
                rows = (history + text) / np.maximum(parts, 1.0)[:, None]  # (n, D)
        if self.config.normalize:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
        return rows.astype(np.float32)


def build_user_profiles(
    interactions: pd.DataFrame,
    item_vectors: np.ndarray,
    n_users: int,
    config: UserProfileConfig | None = None,
    user_text_vectors: np.ndarray | None = None,
) -> UserProfiles:
    """Pool each user's history (``user``, ``item`` and, for recency, ``timestamp`` columns).

    ``item_vectors`` is ``(I, D)`` with NaN rows for items without content; ``n_users`` sets
    U (users with no interactions get zero rows); ``user_text_vectors`` is ``(U, D')`` with NaN
    rows, or None when users have no profile text.
    """
    config = config or UserProfileConfig()
    item_vectors = _check_item_vectors(item_vectors, None)
    if user_text_vectors is not None:
        if user_text_vectors.ndim != 2 or user_text_vectors.shape[0] != n_users:
            raise ClrecError(
                f"user text vectors have shape {user_text_vectors.shape}, expected ({n_users}, d)"
            )
        if (
            config.include_profile_text == "mean"
            and user_text_vectors.shape[1] != item_vectors.shape[1]
        ):
            raise ClrecError(
                "include_profile_text='mean' needs user text and item vectors of one width, got "
                f"{user_text_vectors.shape[1]} and {item_vectors.shape[1]}; use 'concat'"
            )
    users, items, times = _columns(interactions, item_vectors.shape[0], config)
    if len(users) and users.max() >= n_users:
        raise DataError(f"interactions name user {int(users.max())}, but n_users is {n_users}")

    reference = np.full(n_users, np.nan)  # (U,)
    if config.pooling == "recency" and len(users):
        assert times is not None
        latest = np.full(n_users, -np.inf)
        np.maximum.at(latest, users, times)
        reference = np.where(np.isfinite(latest), latest, np.nan)
    sums, totals, counts = _pool(users, items, times, item_vectors, reference, n_users, config)
    profiles = UserProfiles(
        config=config,
        item_vectors=item_vectors,
        user_text_vectors=user_text_vectors,
        weighted_sum=sums,
        weight_total=totals,
        reference_time=reference,
        n_history=counts,
        matrix=np.zeros((0, 0), dtype=np.float32),
    )
    profiles.matrix = profiles._rows(np.arange(n_users))
    return profiles


# --------------------------------------------------------------------------- helpers


def _check_item_vectors(item_vectors: np.ndarray, width: int | None) -> np.ndarray:
    if item_vectors.ndim != 2:
        raise ClrecError(f"item vectors must be (items, d), got shape {item_vectors.shape}")
    if width is not None and item_vectors.shape[1] != width:
        raise ClrecError(f"item vectors changed width from {width} to {item_vectors.shape[1]}")
    return item_vectors


def _columns(
    frame: pd.DataFrame, n_items: int, config: UserProfileConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated ``(user, item, time-or-None)`` arrays from an interaction frame."""
    for column in ("user", "item"):
        if column not in frame.columns:
            raise DataError(f"interactions have no {column!r} column")
    users = frame["user"].to_numpy(dtype=np.int64)  # (N,)
    items = frame["item"].to_numpy(dtype=np.int64)  # (N,)
    if len(users) and (users.min() < 0 or items.min() < 0 or items.max() >= n_items):
        raise DataError(
            f"interactions name items outside 0..{n_items - 1} or negative user ids; "
            "encode vectors for new items and pass item_vectors"
        )
    if config.pooling != "recency":
        return users, items, None
    if "timestamp" not in frame.columns:
        raise ClrecError(
            "recency pooling needs a 'timestamp' column and these interactions have none "
            "(ML-1M as staged has no timestamps); use pooling='mean'"
        )
    times = frame["timestamp"].to_numpy(dtype=np.float64)  # (N,) Unix seconds
    if not np.isfinite(times).all():
        raise DataError("recency pooling needs a timestamp on every interaction")
    return users, items, times


def _decay(age_seconds: np.ndarray, config: UserProfileConfig) -> np.ndarray:
    """``0.5 ** (age / half_life)`` elementwise."""
    half_life = config.half_life_days * SECONDS_PER_DAY
    return np.exp2(-age_seconds / half_life)


def _pool(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray | None,
    item_vectors: np.ndarray,
    reference: np.ndarray,
    n_users: int,
    config: UserProfileConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user weighted sums ``(U, D)``, weight totals ``(U,)`` and counts ``(U,)``.

    ``users`` index ``reference`` and the outputs (0..n_users-1). One sparse
    (users × distinct items) weight matrix times those items' vectors; duplicate (user, item)
    rows add up inside the sparse matrix, so no Python loop runs per interaction, and only
    the items that occur are read from the item table.
    """
    from scipy import sparse

    usable = np.isfinite(item_vectors).all(axis=1)  # (I,)
    keep = usable[items]  # (N,)
    users, items = users[keep], items[keep]
    if times is None:
        weights = np.ones(len(users))  # (n,)
    else:
        weights = _decay(reference[users] - times[keep], config)  # (n,) in (0, 1]
    distinct, local = np.unique(items, return_inverse=True)  # (J,), (n,)
    table = sparse.csr_matrix((weights, (users, local)), shape=(n_users, len(distinct)))  # (U, J)
    dim = item_vectors.shape[1]
    sums = np.zeros((n_users, dim))  # (U, D) float64
    for start in range(0, dim, _COLUMN_BLOCK):
        stop = start + _COLUMN_BLOCK
        block = item_vectors[distinct, start:stop].astype(np.float64)  # (J, b)
        sums[:, start:stop] = table @ block
    totals = np.bincount(users, weights=weights, minlength=n_users).astype(np.float64)  # (U,)
    counts = np.bincount(users, minlength=n_users).astype(np.int64)  # (U,)
    return sums, totals, counts
