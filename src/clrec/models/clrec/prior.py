"""The clrec model's collaborative prior: a closed-form item–item model fused into its score.

After training, an EASE model (λ = ``prior_reg``) is fitted on the same history the users
pool (recency-weighted when the model weighs history by recency) and fused with the
embedding scores: ``score = sim / τ + w · prior / σ(prior)``. λ (from :data:`PRIOR_REGS`) and
``w`` (from :data:`PRIOR_WEIGHTS`) are chosen on validation NDCG@10 unless given; σ is the
spread of the prior's scores on a sample of users, so ``w`` means the same on any data set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Validator
from clrec.models.clrec.config import ClrecConfig
from clrec.models.ease import EASE

PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PRIOR_REGS = (10.0, 50.0, 250.0, 1000.0)
DEFAULT_REG = 250.0  # λ without a validator to choose one
MAX_PRIOR_ITEMS = 30_000  # EASE solves an items × items system
_SPREAD_SAMPLE = 512  # users whose prior scores give σ


def check_prior_size(n_items: int) -> None:
    """Refuse a catalogue too large for the items × items solve."""
    if n_items > MAX_PRIOR_ITEMS:
        raise ClrecError(
            f"the EASE prior solves an items × items system; {n_items:,} items is "
            f"beyond {MAX_PRIOR_ITEMS:,}: set model.params.prior=none"
        )


def prior_model(train: Dataset, history: sp.csr_matrix, reg: float) -> EASE:
    """EASE fitted on ``train``, reading each user's ``history`` ``(U, I)`` at scoring time
    (recency-weighted when the embeddings' users are)."""
    prior = EASE(reg_weight=reg).fit(train)
    prior.seen = history
    return prior


def fit_prior(
    config: ClrecConfig, train: Dataset, history: sp.csr_matrix, validator: Validator | None
) -> tuple[EASE, float, list[dict[str, float]]]:
    """The prior (λ by its own validation NDCG@10 unless ``prior_reg`` is given), ``1 / σ``
    of its scores on a sample of users, and the λ search."""
    regs = PRIOR_REGS if config.prior_reg is None else (config.prior_reg,)
    search: list[dict[str, float]] = []
    if validator is None or len(regs) == 1:
        prior = prior_model(train, history, regs[0] if len(regs) == 1 else DEFAULT_REG)
    else:
        best: tuple[float, EASE] | None = None
        for reg in regs:
            candidate = prior_model(train, history, reg)
            score = validator(candidate).get("ndcg@10", 0.0)
            search.append({"reg": reg, "ndcg@10": score})
            if best is None or score > best[0]:
                best = (score, candidate)
            # items² floats each: only the best so far outlives the next fit
            del candidate
        assert best is not None
        prior = best[1]
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(train.n_users, size=min(train.n_users, _SPREAD_SAMPLE), replace=False)
    spread = float(np.std(prior.score(np.sort(sample))))
    return prior, (1.0 / spread if spread > 0 else 1.0), search


def choose_weight(
    config: ClrecConfig, ndcg_with: Callable[[float], float] | None
) -> tuple[float, list[dict[str, float]]]:
    """The prior's weight ``w``: ``prior_weight`` when given (1 without a validator), else the
    best of :data:`PRIOR_WEIGHTS` by ``ndcg_with(w)`` (validation NDCG@10 of the fused model),
    and the search."""
    if config.prior_weight is not None or ndcg_with is None:
        return (1.0 if config.prior_weight is None else config.prior_weight), []
    scored = [(ndcg_with(weight), weight) for weight in PRIOR_WEIGHTS]
    return max(scored)[1], [{"weight": w, "ndcg@10": v} for v, w in scored]


def history_scores(
    prior: EASE, items: np.ndarray, weights: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """The prior's scores ``(C,)`` of one history — model item rows ``(H,)`` with weights
    ``(H,)`` — over ``candidates`` ``(C,)`` (rows outside the prior's catalogue score 0)."""
    assert prior.weights is not None
    n_items = prior.weights.shape[0]
    scores = np.zeros(len(candidates), dtype=np.float32)  # (C,)
    known = (candidates >= 0) & (candidates < n_items)  # (C,)
    if len(items) and known.any():
        block = prior.weights[np.ix_(items, candidates[known])]  # (H, C')
        scores[known] = weights.astype(np.float32) @ block
    return scores
