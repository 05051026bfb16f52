"""Statistics the bench scripts share.

Bench scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
import it as ``stats``.
"""

from __future__ import annotations

import numpy as np


def user_bootstrap(
    users: np.ndarray, diff: np.ndarray, draws: int, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of the mean of ``diff`` ``(P,)`` (one value per pair) from a bootstrap
    that resamples users (``users`` ``(P,)``: a user's pairs stay together)."""
    codes, index = np.unique(users, return_inverse=True)
    sums = np.bincount(index, weights=diff, minlength=len(codes))  # (U,)
    counts = np.bincount(index, minlength=len(codes)).astype(np.float64)  # (U,)
    picks = np.random.default_rng(seed).integers(0, len(codes), size=(draws, len(codes)))
    means = sums[picks].sum(axis=1) / np.maximum(counts[picks].sum(axis=1), 1.0)  # (B,)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)
