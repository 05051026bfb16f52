"""The clrec model's collaborative prior: a closed-form item–item model fused into its score.

After training, an EASE model (λ = ``prior_reg``) is fitted on the same history the users
pool (recency-weighted when the model weighs history by recency) and fused with the
embedding scores: ``score = sim / τ + w · prior / σ(prior)``. λ (from :data:`PRIOR_REGS`) and
``w`` (from :data:`PRIOR_WEIGHTS`) are chosen on validation NDCG@10 unless given; σ is the
spread of the prior's scores on a sample of users, so ``w`` means the same on any data set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.models.base import Validator
from clrec.models.clrec.config import ClrecConfig
from clrec.models.ease import EASE

logger = logging.getLogger(__name__)

PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PRIOR_REGS = (10.0, 50.0, 250.0, 1000.0)
DEFAULT_REG = 250.0  # λ without a validator to choose one
MAX_PRIOR_ITEMS = 30_000  # EASE solves an items × items system
_SPREAD_SAMPLE = 512  # users whose prior scores give σ
# scoring at least 1/8 of the catalogue, reading the history's whole rows of the prior is
# cheaper than gathering their columns (the same sums; a whole-catalogue scoring at 7k items
# 3.1 → 0.74 ms, BENCHMARKS "Explanations")
_WHOLE_ROWS_SHARE = 8


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


@dataclass(frozen=True)
class SearchBudget:
    """How the prior search shows itself and when it must stop: ``deadline`` is a
    ``time.monotonic()`` reading (None: no limit), the end of the fit's time limit."""

    progress: bool = True
    deadline: float | None = None

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def fit_prior(
    config: ClrecConfig,
    train: Dataset,
    history: sp.csr_matrix,
    validator: Validator | None,
    budget: SearchBudget = SearchBudget(),
) -> tuple[EASE, float, list[dict[str, float]]] | None:
    """The prior (λ by its own validation NDCG@10 unless ``prior_reg`` is given: one
    factorisation and one validation pass per λ), ``1 / σ`` of its scores on a sample of
    users, and the λ search; None when the fit's time limit is already spent. The search
    stops at the limit, keeping the best λ it has."""
    if budget.spent():
        _say("prior skipped: the fit's time limit is spent", budget)
        return None
    regs = PRIOR_REGS if config.prior_reg is None else (config.prior_reg,)
    search: list[dict[str, float]] = []
    if validator is None or len(regs) == 1:
        prior = prior_model(train, history, regs[0] if len(regs) == 1 else DEFAULT_REG)
    else:
        best: tuple[float, EASE] | None = None
        for reg in tqdm(regs, desc="prior λ", leave=False, disable=not budget.progress):
            if best is not None and budget.spent():
                _say(f"prior λ search stopped by the time limit after {len(search)}", budget)
                break
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
    config: ClrecConfig,
    ndcg_with: Callable[[float], float] | None,
    budget: SearchBudget = SearchBudget(),
) -> tuple[float, list[dict[str, float]]]:
    """The prior's weight ``w``: ``prior_weight`` when given (1 without a validator), else the
    best of :data:`PRIOR_WEIGHTS` by ``ndcg_with(w)`` (validation NDCG@10 of the fused model:
    one pass per weight, no refit), and the search; it stops at the time limit with the best
    weight so far (1 if none was tried)."""
    if config.prior_weight is not None or ndcg_with is None:
        return (1.0 if config.prior_weight is None else config.prior_weight), []
    scored: list[tuple[float, float]] = []
    for weight in tqdm(
        PRIOR_WEIGHTS, desc="prior weight", leave=False, disable=not budget.progress
    ):
        if budget.spent():
            _say(f"prior weight search stopped by the time limit after {len(scored)}", budget)
            break
        scored.append((ndcg_with(weight), weight))
    chosen = max(scored)[1] if scored else 1.0
    return chosen, [{"weight": w, "ndcg@10": v} for v, w in scored]


def _say(line: str, budget: SearchBudget) -> None:
    logger.info(line)
    if budget.progress:
        tqdm.write(line)


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
        columns = candidates[known]  # (C',)
        if len(columns) * _WHOLE_ROWS_SHARE >= n_items:  # whole rows beat a 2-d gather
            scores[known] = (weights.astype(np.float32) @ prior.weights[items])[columns]
        else:
            block = prior.weights[np.ix_(items, columns)]  # (H, C')
            scores[known] = weights.astype(np.float32) @ block
    return scores
