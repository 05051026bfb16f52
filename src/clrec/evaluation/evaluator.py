"""Full-ranking evaluation in user batches, never holding more than one batch of scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.evaluation.metrics import TOPK_METRICS
from clrec.models.base import Recommender


@dataclass(frozen=True)
class EvaluationConfig:
    """What to measure: cut-offs, metrics and the user batch size (bounds memory)."""

    ks: tuple[int, ...] = (10, 20)
    metrics: tuple[str, ...] = ("recall", "ndcg", "hit", "mrr", "precision", "map")
    batch_size: int = 1024
    progress: bool = True


def evaluate(
    model: Recommender,
    dataset: Dataset,
    target: Dataset,
    *,
    exclude: Sequence[Dataset] = (),
    config: EvaluationConfig | None = None,
) -> dict[str, float]:
    """Mean top-K metrics of ``model`` on ``target``'s interactions over all catalogue items.

    Items a user has in any of ``exclude`` (typically train, and valid when testing) are
    removed from that user's ranking. Users without target interactions are skipped.
    ``dataset`` fixes the catalogue size.
    """
    config = config or EvaluationConfig()
    relevant = interaction_matrix(target.interactions, dataset.n_users, dataset.n_items)
    masked = sp.csr_matrix((dataset.n_users, dataset.n_items), dtype=np.float32)
    for part in exclude:
        masked = masked + interaction_matrix(part.interactions, dataset.n_users, dataset.n_items)
    masked = masked.tocsr()
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    max_k = max(config.ks)
    totals = {f"{m}@{k}": 0.0 for m in config.metrics for k in config.ks}
    batches = range(0, len(users), config.batch_size)
    for start in tqdm(batches, desc="evaluating", unit="batch", disable=not config.progress):
        batch = users[start : start + config.batch_size]
        top_items, _ = model.recommend(batch, max_k, exclude=masked)
        truth = relevant[batch]
        hits = np.take_along_axis(truth.toarray() > 0, top_items, axis=1)  # (B, K)
        n_relevant = np.diff(truth.indptr)
        for metric in config.metrics:
            for k in config.ks:
                totals[f"{metric}@{k}"] += float(TOPK_METRICS[metric](hits, n_relevant, k).sum())
    count = max(len(users), 1)
    results = {name: round(total / count, 6) for name, total in totals.items()}
    results["users"] = float(len(users))
    return results
