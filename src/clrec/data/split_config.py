"""How to split a data set: the scheme, the train / valid / test ratios and the seed.

:class:`SplitConfig` names one of six schemes; :func:`ratio_counts` turns ratios into part
sizes with RecBole's rounding rule, which both the schemes and the checks of a finished
:class:`~clrec.data.split_result.Split` apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
from numpy.typing import ArrayLike

from clrec.errors import ClrecError

Scheme = Literal["random", "loo", "temporal", "cold-item", "cold-user", "predefined"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
PARTS: tuple[str, str, str] = ("train", "valid", "test")

# Part codes: the part of a row (as int8) and the column of a per-part count.
TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True)
class SplitConfig:
    """How to split: the scheme, the train/valid/test ratios and the random seed.

    * ``random`` — per user, shuffle and cut by ``ratios`` with RecBole's rounding rule
      (:func:`ratio_counts`).
    * ``loo`` — leave one out by time: per user the latest interaction is test, the second
      latest valid; users with fewer than 3 interactions stay wholly in train.
    * ``temporal`` — one global time cut at the ``ratios`` quantiles.
    * ``cold-item`` / ``cold-user`` — items (users) are dealt into train / valid / test by
      ``ratios``; each carries all its interactions into its part.
    * ``predefined`` — the data set's own ``split`` column.

    ``ratios`` are normalised to sum to 1; ``loo`` and ``predefined`` ignore them. Ties in
    time (``loo``, ``temporal``) are broken by a seeded random order.
    """

    scheme: Scheme = "random"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 2020

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ClrecError(f"unknown split scheme {self.scheme!r}; known: {', '.join(SCHEMES)}")
        ratios = tuple(float(r) for r in self.ratios)
        if len(ratios) != 3:
            raise ClrecError(f"split ratios need 3 numbers (train, valid, test), got {ratios}")
        if not all(math.isfinite(r) and r >= 0 for r in ratios) or ratios[0] <= 0:
            raise ClrecError(
                f"split ratios must be finite and ≥ 0 with a positive train ratio, got {ratios}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ClrecError(f"split seed must be an integer ≥ 0, got {self.seed!r}")
        object.__setattr__(self, "ratios", ratios)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {"scheme": self.scheme, "ratios": list(self.ratios), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitConfig:
        """Inverse of :meth:`to_dict`."""
        ratios = tuple(float(r) for r in data["ratios"])
        if len(ratios) != 3:
            raise ClrecError(f"split ratios need 3 numbers (train, valid, test), got {ratios}")
        return cls(
            scheme=cast(Scheme, data["scheme"]),
            ratios=(ratios[0], ratios[1], ratios[2]),
            seed=int(data["seed"]),
        )


def ratio_counts(totals: ArrayLike, ratios: Sequence[float]) -> np.ndarray:
    """Part sizes for groups of ``totals`` rows, by RecBole's ``_calcu_split_ids`` rule.

    Ratios are normalised; every part but the first gets ``int(ratio * n)`` rows and the
    first (train) the rest. Then, from the last part backwards, a part whose ``ratio * n``
    lies strictly between 0 and 1 takes one row from train, as long as train keeps more than
    one. E.g. with (0.8, 0.1, 0.1): n=10 → 8/1/1, n=5 → 3/1/1, n=2 → 1/0/1, n=1 → 1/0/0.

    Returns an ``(len(totals), len(ratios))`` int64 array.
    """
    tot = np.asarray(totals, dtype=np.int64).reshape(-1)  # (m,)
    total_ratio = sum(float(r) for r in ratios)  # summed as RecBole does, left to right
    norm = np.array([float(r) / total_ratio for r in ratios], dtype=np.float64)  # (k,)
    exact = tot[:, None].astype(np.float64) * norm[None, :]  # (m, k)
    counts = np.floor(exact).astype(np.int64)
    counts[:, 0] = tot - counts[:, 1:].sum(axis=1)
    for part in range(len(norm) - 1, 0, -1):
        bump = (counts[:, 0] > 1) & (exact[:, part] > 0) & (exact[:, part] < 1)
        counts[:, part] += bump
        counts[:, 0] -= bump
    return counts
