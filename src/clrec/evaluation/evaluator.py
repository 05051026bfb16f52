"""Full-ranking evaluation in user batches, never holding more than one batch of scores.

For each batch of users the model scores every catalogue item (``(B, n_items)``), the user's
training items (and validation items when testing) are masked, and one top-K pass serves
every K. Per-user results are kept, so the same pass yields segments (item popularity
buckets incl. cold items, cold users, user activity buckets), beyond-accuracy measures and
paired significance tests between runs.

Restricted to a candidate set (``candidates=``), every item outside it is masked too: the
cold-start protocol of DropoutNet / CLCRec, where users are ranked over the held-out cold
items only.

Sampled-negative evaluation (rank each user's held-out items among N sampled items they never
interacted with) is available as an option and is labelled as such in every result; it
overstates quality and exists only to compare with papers that use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.evaluation import metrics as measures
from clrec.models.base import Recommender

SEGMENT_METRICS = ("recall", "ndcg", "hit")


@dataclass(frozen=True)
class EvaluationConfig:
    """What to measure: cut-offs, metrics, the user batch size (bounds memory), protocol."""

    ks: tuple[int, ...] = (10, 20)
    metrics: tuple[str, ...] = ("recall", "ndcg", "hit", "mrr", "precision", "map")
    batch_size: int = 1024
    # Score cells per batch (users × items) at most: a 1M-item catalogue gets batches of 32
    # users instead of 1024, so one batch of float32 scores stays near 128 MB.
    max_batch_cells: int = 2**25
    sampled_negatives: int | None = None  # None: full ranking over all items
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in measures.TOPK_METRICS]
        if unknown:
            raise ClrecError(f"unknown metric(s) {unknown}; known: {sorted(measures.TOPK_METRICS)}")
        if not self.ks or min(self.ks) < 1:
            raise ClrecError(f"evaluation ks must be positive integers, got {self.ks}")
        if self.batch_size < 1:
            raise ClrecError(f"evaluation batch_size must be >= 1, got {self.batch_size}")
        if self.sampled_negatives is not None and self.sampled_negatives < 1:
            raise ClrecError("sampled_negatives must be >= 1 (or None for full ranking)")

    @property
    def protocol(self) -> str:
        if self.sampled_negatives is None:
            return "full ranking over all items; seen items masked"
        return (
            f"SAMPLED: held-out items ranked among {self.sampled_negatives} sampled negatives "
            "(not comparable with full-ranking numbers)"
        )


@dataclass
class EvaluationResult:
    """Mean metrics, per-user values, segments and beyond-accuracy measures of one pass."""

    protocol: str
    metrics: dict[str, float]
    per_user: pd.DataFrame
    segments: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, **self.metrics}


class Evaluator:
    """Evaluates models against a fixed catalogue and training set.

    ``train`` fixes what counts as popular, cold or active; pass it once and evaluate as many
    models and targets as needed.
    """

    def __init__(
        self, dataset: Dataset, train: pd.DataFrame, config: EvaluationConfig | None = None
    ) -> None:
        self.dataset = dataset
        self.config = config or EvaluationConfig()
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.train_matrix = interaction_matrix(train, self.n_users, self.n_items)
        self.item_counts = np.asarray(self.train_matrix.sum(axis=0)).ravel()  # (I,)
        self.user_counts = np.diff(self.train_matrix.indptr)  # (U,)
        self.item_buckets = measures.popularity_buckets(self.item_counts)  # (I,) head / tail / cold
        self.bucket_names = ("head", "tail", "cold")
        self.bucket_codes = np.zeros(self.n_items, dtype=np.int64)  # (I,) index into names
        for code, bucket in enumerate(self.bucket_names):
            self.bucket_codes[self.item_buckets == bucket] = code

    def evaluate(
        self,
        model: Recommender,
        target: pd.DataFrame,
        exclude: Sequence[pd.DataFrame] = (),
        *,
        candidates: np.ndarray | None = None,
        candidate_label: str = "",
    ) -> EvaluationResult:
        """Rank for every user with target interactions; mask items in ``exclude`` frames.

        ``candidates`` (internal item ids) restricts the ranking to those items: every other
        item's score is masked, held-out interactions with a non-candidate item are dropped
        from ``target`` and users left without any are skipped. Cut-offs may exceed the
        candidate count (the slots past it hold no hits). Coverage and Gini are then measured
        over the candidate set; average popularity and tail share are left out (on a cold
        candidate set they are constant). ``candidate_label`` names the set in the protocol.
        """
        config = self.config
        outside: torch.Tensor | None = None  # (I,) True for items outside the candidate set
        candidate_ids: np.ndarray | None = None  # (C,) sorted unique candidate ids
        protocol = config.protocol
        if candidates is not None:
            candidate_ids = self._check_candidates(candidates)
            inside = np.zeros(self.n_items, dtype=bool)  # (I,)
            inside[candidate_ids] = True
            outside = torch.from_numpy(~inside)
            target = target[inside[target["item"].to_numpy(dtype=np.int64)]]
            protocol = self._candidate_protocol(len(candidate_ids), candidate_label)
        relevant = interaction_matrix(target, self.n_users, self.n_items)
        masked = sp.csr_matrix((self.n_users, self.n_items), dtype=np.float32)
        for part in exclude:
            masked = masked + interaction_matrix(part, self.n_users, self.n_items)
        masked = masked.tocsr()
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        max_k = max(config.ks)
        if max_k > self.n_items:
            raise ClrecError(f"evaluation k={max_k} exceeds the catalogue of {self.n_items} items")
        names = [f"{m}@{k}" for m in config.metrics for k in config.ks]
        per_user = np.zeros((len(users), len(names)), dtype=np.float64)
        top_lists = np.zeros((len(users), max_k), dtype=np.int64)
        bucket_names = self.bucket_names
        segment_sums = np.zeros((len(bucket_names), len(SEGMENT_METRICS) * len(config.ks)))
        segment_users = np.zeros(len(bucket_names), dtype=np.int64)
        generator = torch.Generator().manual_seed(config.seed)

        batch_size = max(1, min(config.batch_size, config.max_batch_cells // self.n_items))
        batches = range(0, len(users), batch_size)
        for start in tqdm(batches, desc="evaluating", unit="batch", disable=not config.progress):
            batch = users[start : start + batch_size]
            rows = np.arange(len(batch))
            raw = np.asarray(model.score(batch), dtype=np.float32)
            # masking writes into the scores: copy only what the model does not let us write
            scores = torch.from_numpy(raw if raw.flags.writeable else raw.copy())  # (B, I)
            if scores.shape != (len(batch), self.n_items):
                raise ClrecError(
                    f"{model.name}.score returned shape {tuple(scores.shape)}, "
                    f"expected {(len(batch), self.n_items)}"
                )
            seen = masked[batch].tocoo()
            scores[torch.from_numpy(seen.row), torch.from_numpy(seen.col)] = -torch.inf
            if outside is not None:
                scores.masked_fill_(outside, -torch.inf)  # (I,) mask broadcast over (B, I)
            truth_rows = relevant[batch]  # (B, I) sparse
            if config.sampled_negatives is not None:
                scores = self._keep_sampled(scores, truth_rows, seen, generator, outside)
            top = torch.topk(scores, k=max_k, dim=1).indices.numpy()  # (B, K)
            top_lists[start : start + len(batch)] = top
            n_relevant = np.diff(truth_rows.indptr)  # (B,)
            row_of = np.repeat(rows, n_relevant)  # batch row of each relevant entry
            # membership of each ranked item in its user's relevant set, via (row, item) keys
            relevant_keys = row_of * self.n_items + truth_rows.indices  # (nnz,)
            hits = np.isin(rows[:, None] * self.n_items + top, relevant_keys)  # (B, K)
            per_user[start : start + len(batch)] = self._metric_columns(hits, n_relevant)
            # relevant items per (user, bucket): (B, n_buckets)
            bucket_relevant = np.zeros((len(batch), len(bucket_names)), dtype=np.int64)
            np.add.at(bucket_relevant, (row_of, self.bucket_codes[truth_rows.indices]), 1)
            top_codes = self.bucket_codes[top]  # (B, K)
            for code in range(len(bucket_names)):
                users_in = bucket_relevant[:, code] > 0
                if not users_in.any():
                    continue
                bucket_hits = hits[users_in] & (top_codes[users_in] == code)
                values = self._metric_columns(
                    bucket_hits, bucket_relevant[users_in, code], metrics=SEGMENT_METRICS
                )
                segment_sums[code] += values.sum(axis=0)
                segment_users[code] += int(users_in.sum())

        table = pd.DataFrame(per_user, columns=names)
        table.insert(0, "user", users)
        table.insert(1, "train_interactions", self.user_counts[users])
        means = {name: round(float(table[name].mean()), 6) if len(users) else 0.0 for name in names}
        means["users"] = float(len(users))
        if candidate_ids is None:
            means.update(self._beyond_accuracy(top_lists))
        else:
            means.update(self._candidate_beyond_accuracy(top_lists, candidate_ids))
        segments = {
            "item_popularity": {
                bucket: self._segment_row(segment_sums[code], int(segment_users[code]))
                for code, bucket in enumerate(bucket_names)
                if segment_users[code]
            },
            **self._user_segments(table),
        }
        return EvaluationResult(protocol, means, table, segments)

    # ------------------------------------------------------------------ pieces
    def _check_candidates(self, candidates: np.ndarray) -> np.ndarray:
        """Sorted unique candidate ids ``(C,)``; raises on an empty set or unknown ids."""
        ids = np.asarray(candidates)
        if ids.ndim != 1 or not (ids.size == 0 or np.issubdtype(ids.dtype, np.integer)):
            raise ClrecError(
                f"candidates must be a 1-D array of item ids, got {ids.dtype} {ids.shape}"
            )
        if ids.size == 0:
            raise ClrecError("candidates is empty: there is no item to rank")
        if ids.min() < 0 or ids.max() >= self.n_items:
            raise ClrecError(f"candidate item ids must lie in [0, {self.n_items})")
        return np.unique(ids.astype(np.int64))

    def _candidate_protocol(self, n_candidates: int, label: str) -> str:
        described = f" ({label})" if label else ""
        if self.config.sampled_negatives is None:
            return (
                f"ranking over {n_candidates} candidate items{described}; seen items masked; "
                "held-out items outside the candidates dropped"
            )
        return (
            f"SAMPLED: held-out items ranked among {self.config.sampled_negatives} sampled "
            f"negatives from {n_candidates} candidate items{described} "
            "(not comparable with full-ranking numbers)"
        )

    def _keep_sampled(
        self,
        scores: torch.Tensor,
        truth: sp.csr_matrix,
        seen: sp.coo_matrix,
        generator: torch.Generator,
        outside: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Keep each user's relevant items and N random never-interacted items; drop the rest.

        ``outside`` ``(I,)`` marks non-candidate items, which are never sampled nor kept.
        """
        count = self.config.sampled_negatives or 0
        positives = torch.from_numpy(truth.toarray() > 0)  # (B, I)
        seen_mask = torch.zeros_like(positives)
        seen_mask[torch.from_numpy(seen.row), torch.from_numpy(seen.col)] = True
        if outside is not None:
            seen_mask |= outside  # (B, I): non-candidates count as seen
        noise = torch.rand(scores.shape, generator=generator)  # (B, I)
        noise[positives | seen_mask] = -1.0  # never sample a positive or a seen item
        negatives = torch.topk(noise, k=min(count, scores.shape[1]), dim=1).indices  # (B, N)
        keep = positives.clone()
        keep.scatter_(1, negatives, True)
        keep &= ~seen_mask
        return scores.masked_fill(~keep, -torch.inf)

    def _metric_columns(
        self,
        hits: np.ndarray,
        n_relevant: np.ndarray,
        metrics: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Per-user values ``(B, len(metrics) * len(ks))`` in metric-major order."""
        columns = [
            measures.TOPK_METRICS[metric](hits, n_relevant, k)
            for metric in (metrics or self.config.metrics)
            for k in self.config.ks
        ]
        return np.stack(columns, axis=1)

    def _segment_row(self, sums: np.ndarray, users: int) -> dict[str, float]:
        names = [f"{m}@{k}" for m in SEGMENT_METRICS for k in self.config.ks]
        row = {name: round(float(v) / users, 6) for name, v in zip(names, sums, strict=True)}
        row["users"] = float(users)
        return row

    def _user_segments(self, table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
        """Cold users (no training interactions) and activity tertiles of the rest."""
        columns = [f"{m}@{k}" for m in SEGMENT_METRICS for k in self.config.ks]
        columns = [c for c in columns if c in table.columns]

        def row(part: pd.DataFrame) -> dict[str, float]:
            values = {c: round(float(part[c].mean()), 6) for c in columns}
            values["users"] = float(len(part))
            return values

        counts = table["train_interactions"]
        result: dict[str, dict[str, dict[str, float]]] = {"user_activity": {}}
        cold = table[counts == 0]
        if len(cold):
            result["cold_users"] = {"cold": row(cold)}
        warm = table[counts > 0]
        if len(warm):
            edges = np.unique(np.quantile(warm["train_interactions"], [1 / 3, 2 / 3]).astype(int))
            low = 1
            for edge in [*edges.tolist(), int(warm["train_interactions"].max())]:
                part = warm[
                    (warm["train_interactions"] >= low) & (warm["train_interactions"] <= edge)
                ]
                if len(part):
                    label = f"{low}-{edge}" if edge > low else f"{low}"
                    result["user_activity"][label] = row(part)
                low = edge + 1
        return result

    def _beyond_accuracy(self, top_lists: np.ndarray) -> dict[str, float]:
        """Coverage, average popularity, Gini index and tail share of the top-K lists."""
        values: dict[str, float] = {}
        if not len(top_lists):
            return values
        tail = self.item_buckets != "head"
        for k in self.config.ks:
            values[f"coverage@{k}"] = round(
                float(measures.coverage_at_k(top_lists, self.n_items, k)), 6
            )
            values[f"average_popularity@{k}"] = round(
                float(measures.average_popularity_at_k(top_lists, self.item_counts, k)), 4
            )
            values[f"gini@{k}"] = round(
                float(measures.gini_index_at_k(top_lists, self.n_items, k)), 6
            )
            values[f"tail_share@{k}"] = round(
                float(measures.tail_share_at_k(top_lists, tail, k)), 6
            )
        return values

    def _candidate_beyond_accuracy(
        self, top_lists: np.ndarray, candidate_ids: np.ndarray
    ) -> dict[str, float]:
        """Coverage and Gini of the top-K lists over the candidate set only.

        Slots holding a non-candidate (cut-offs past the candidate count) are not counted.
        """
        values: dict[str, float] = {}
        if not len(top_lists):
            return values
        n = len(candidate_ids)
        position = np.searchsorted(candidate_ids, top_lists)  # (U, K) index into candidates
        position = np.minimum(position, n - 1)
        is_candidate = candidate_ids[position] == top_lists  # (U, K)
        for k in self.config.ks:
            picked = position[:, :k][is_candidate[:, :k]]  # (slots,) candidate positions
            counts = np.bincount(picked, minlength=n).astype(np.float64)  # (C,)
            values[f"coverage@{k}"] = round(float((counts > 0).sum() / n), 6)
            ordered = np.sort(counts)  # (C,) ascending
            index = np.arange(1, n + 1)
            gini = (
                ((2 * index - n - 1) * ordered).sum() / (n * ordered.sum())
                if picked.size
                else float("nan")
            )
            values[f"gini@{k}"] = round(float(gini), 6)
        return values


def evaluate(
    model: Recommender,
    dataset: Dataset,
    target: Dataset,
    *,
    exclude: Sequence[Dataset] = (),
    config: EvaluationConfig | None = None,
) -> dict[str, float]:
    """Mean metrics of ``model`` on ``target``; the first of ``exclude`` is the training set.

    A shortcut over :class:`Evaluator` for one pass; items users have in any ``exclude``
    data set are masked.
    """
    train = exclude[0].interactions if exclude else target.interactions.iloc[:0]
    evaluator = Evaluator(dataset, train, config)
    result = evaluator.evaluate(model, target.interactions, [part.interactions for part in exclude])
    return result.metrics
