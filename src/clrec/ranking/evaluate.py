"""The ranking stage on the test fold: against retrieval alone, the ablation and the cost.

Every test user counts. Retrieval alone is the run's model's own top-k over the whole
catalogue (train and valid items excluded, as the evaluator ranks); the stage's list is its
order of the candidates. The change of NDCG@k gets a paired bootstrap interval over users.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from clrec.evaluation.metrics import ndcg_at_k, recall_at_k
from clrec.ranking.click import classify_test_pairs
from clrec.ranking.cross_encoder import CrossEncoderRanker
from clrec.ranking.features import (
    CLICK_FEATURE,
    KNN_FEATURES,
    TAG_FEATURES,
    TEXT_FEATURES,
    feature_columns,
    retriever_features,
    user_features,
)
from clrec.ranking.folds import Content, Fold, RankerSettings, RunParts, build_fold, fit_on
from clrec.ranking.ltr import LambdaRanker
from clrec.ranking.pairs import retrieve
from clrec.robustness import bootstrap_changes

_LATENCY_USERS = 50  # users timed for the per-request cost


def evaluate_stage(
    parts: RunParts,
    ranker: LambdaRanker,
    settings: RankerSettings,
    content: Content,
    click: CrossEncoderRanker | None,
    training: Fold | None,
) -> dict[str, Any]:
    """The test fold: retrieval alone against the ranked candidates on every test user,
    the bootstrap interval, the ablation (when ``training`` is given) and the cost."""
    test = build_fold(parts, content, parts.split.valid, parts.split.test, settings, click)
    ks = settings.ks
    alone = retrieve(parts.retriever, test.users, max(ks), test.seen)  # (U, K)
    base = _metrics(alone, test.truth, ks)
    fresh = _metrics(_model_lists(test, max(ks)), test.truth, ks)
    scores = ranker.predict(test.features[:, feature_columns(test.names, ranker.features)])
    ranked = _metrics(_ranked_lists(test, scores, max(ks)), test.truth, ks)
    result: dict[str, Any] = {
        "users": len(test.users),
        "candidates_per_user": float(np.diff(test.candidates.offsets).mean()),
        "label_recall_of_candidates": label_recall(test),
    }
    for k in ks:
        for name in ("ndcg", "recall"):
            result[f"retrieve_{name}@{k}"] = float(base[f"{name}@{k}"].mean())
            result[f"retrieve_events_{name}@{k}"] = float(fresh[f"{name}@{k}"].mean())
            result[f"rerank_{name}@{k}"] = float(ranked[f"{name}@{k}"].mean())
        key = f"ndcg@{k}"
        changes = bootstrap_changes(
            {"rerank": (base[key], ranked[key])}, resamples=settings.bootstrap, seed=0
        )["rerank"]
        mean_base = float(base[key].mean())
        result[f"rerank_ndcg@{k}_change"] = (
            float(ranked[key].mean()) / mean_base - 1 if mean_base else None
        )
        finite = changes[np.isfinite(changes)]  # a resample whose base mean is 0 has none
        result[f"rerank_ndcg@{k}_change_95"] = (
            [float(v) for v in np.percentile(finite, [2.5, 97.5])] if len(finite) else None
        )
    report: dict[str, Any] = {"end_to_end": result, "latency": _latency(test, ranker, settings)}
    if click is not None and settings.click is not None:
        report["click_test_pairs"] = classify_test_pairs(
            parts.dataset, parts.split, parts.retriever, click, settings.click
        )
    if settings.ablation and training is not None:
        report["ablation"] = _ablation(training, test, settings, ks, ranked)
    return report


def _ablation(
    training: Fold,
    test: Fold,
    settings: RankerSettings,
    ks: tuple[int, ...],
    ranked: dict[str, np.ndarray],
) -> dict[str, dict[str, float]]:
    """NDCG / Recall @k of the stage refitted without each group of features, and without
    each retriever (its columns and the candidates only it proposed); "all features" is the
    stage itself (``ranked``: its per-user metrics, fitted on ``training`` with every
    column)."""
    variants: dict[str, tuple[list[str], str | None]] = {
        "without language-model features": (_without(training.names, TEXT_FEATURES), None),
        "without tag features": (_without(training.names, TAG_FEATURES), None),
    }
    if CLICK_FEATURE in training.names:
        variants["without the click model"] = (_without(training.names, (CLICK_FEATURE,)), None)
    for name in settings.candidates.retrievers:
        derived = KNN_FEATURES if name == "itemknn" else ()  # read its neighbours
        dropped = _without(training.names, [*retriever_features((name,)), *derived])
        variants[f"without retriever {name}"] = (dropped, name)
    results = {"all features": {key: float(values.mean()) for key, values in ranked.items()}}
    for label, (names, dropped_retriever) in variants.items():
        fit_fold, test_fold = training, test
        if dropped_retriever is not None:
            fit_fold = _drop_retriever(training, dropped_retriever, settings)
            test_fold = _drop_retriever(test, dropped_retriever, settings)
        model = fit_on(fit_fold, names, settings)
        scores = model.predict(test_fold.features[:, feature_columns(test_fold.names, names)])
        found = _metrics(_ranked_lists(test_fold, scores, max(ks)), test_fold.truth, ks)
        results[label] = {key: float(values.mean()) for key, values in found.items()}
    return results


def _drop_retriever(fold: Fold, name: str, settings: RankerSettings) -> Fold:
    """The fold without the candidates that only retriever ``name`` proposed."""
    position = settings.candidates.retrievers.index(name)
    proposed = fold.candidates.ranks <= settings.candidates.per_retriever  # (N, R)
    others = np.asarray(np.delete(proposed, position, axis=1).any(axis=1))  # (N,)
    return replace(
        fold,
        candidates=fold.candidates.select(others),
        features=fold.features[others],
        labels=fold.labels[others],
    )


def _latency(fold: Fold, ranker: LambdaRanker, settings: RankerSettings) -> dict[str, Any]:
    """Median milliseconds of one request's work without the click model: the cheap
    retrievers' candidates (from the model's scores) and the features + LambdaRank scores."""
    count = min(_LATENCY_USERS, len(fold.users))
    if fold.retrievers.model_scores is None or not count:
        return {"users": 0}
    model_scores = fold.retrievers.model_scores(fold.users[:count])  # (n, I)
    candidate_ms, feature_ms, sizes = [], [], []
    columns = feature_columns(fold.names, ranker.features)
    for position in range(count):
        user = int(fold.users[position])
        started = time.perf_counter()
        found = fold.retrievers.user_candidates(
            model_scores[position], fold.histories[position], fold.seen[user].indices
        )
        candidate_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        rows = user_features(
            fold.tables,
            fold.histories[position],
            found.items,
            found.scores,
            found.ranks,
            settings.candidates.per_retriever,
            None if CLICK_FEATURE not in fold.names else np.zeros(len(found.items)),
        )
        ranker.predict(rows[:, columns])
        feature_ms.append((time.perf_counter() - started) * 1000)
        sizes.append(len(found.items))
    return {
        "users": count,
        "candidates_median": float(np.median(sizes)),
        "candidates_median_ms": float(np.median(candidate_ms)),
        "features_and_rank_median_ms": float(np.median(feature_ms)),
    }


def _without(names: list[str], dropped: tuple[str, ...] | list[str]) -> list[str]:
    return [name for name in names if name not in dropped]


def _ranked_lists(fold: Fold, scores: np.ndarray, k: int) -> np.ndarray:
    """Each user's top ``k`` candidates by ``scores`` ``(N,)`` (ties: item row), padded
    with -1: ``(U, k)``."""
    lists = np.full((len(fold.users), k), -1, dtype=np.int64)
    for position in range(len(fold.users)):
        rows = fold.candidates.of(position)
        items = fold.candidates.items[rows]
        order = np.argsort(-scores[rows], kind="stable")[:k]
        lists[position, : len(order)] = items[order]
    return lists


def _model_lists(fold: Fold, k: int) -> np.ndarray:
    """Each user's top ``k`` by the model retriever alone (the run's model with the later
    interactions folded in as events), from its ranks among the candidates: ``(U, k)``."""
    position = fold.retrievers.names.index("model") if "model" in fold.retrievers.names else -1
    if position < 0:
        return np.full((len(fold.users), k), -1, dtype=np.int64)
    return _ranked_lists(fold, -fold.candidates.ranks[:, position], k)


def _metrics(
    lists: np.ndarray, truth: list[set[int]], ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per-user NDCG and Recall @k ``(U,)`` of ranked ``lists`` ``(U, K)``."""
    hits = np.array(
        [[int(i) in truth[u] for i in row] for u, row in enumerate(lists)], dtype=bool
    ).reshape(lists.shape)
    relevant = np.array([len(t) for t in truth], dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(hits, relevant, k)
        out[f"recall@{k}"] = recall_at_k(hits, relevant, k)
    return out


def label_recall(fold: Fold) -> float:
    """Share of the fold's label interactions that are among the candidates."""
    total = sum(len(t) for t in fold.truth)
    return float(fold.labels.sum() / total) if total else 0.0


__all__ = ["evaluate_stage", "label_recall"]
