"""Retrieve → rank on a saved run: train a cross-encoder on the run's retriever, evaluate it.

:func:`train_ranker` reads a run folder (its data set, split and retrieval model), builds the
ranker's pairs from interactions the retriever never trained on (:mod:`clrec.ranking.pairs`),
fine-tunes a :class:`~clrec.ranking.cross_encoder.CrossEncoderRanker` on (user context, item
text) pairs and writes it with a report. :func:`evaluate_ranker` measures a saved ranker on the
run's test interactions, two ways:

* as a click classifier on the test pairs: AUC, accuracy, precision, recall and F1 (the
  founding document's metrics), overall and on hard negatives alone;
* end to end on the same sampled test users: NDCG@k and Recall@k of the retriever's top
  ``rerank_depth`` candidates re-ordered by the ranker, against the retriever's own order —
  retrieve-only and retrieve → rerank share the candidates, so only the order differs — and
  of the two orders fused (reciprocal rank fusion), which keeps the retriever's
  collaborative signal that a text-only ranker cannot see.

It also times re-ranking ``rerank_depth`` candidates for one user (the service's budget), with
float32 and int8 weights. User contexts are built from what precedes the labels: training
pairs (positives from ``split.valid``) see ``split.train``; test pairs see train + valid.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.errors import ClrecError
from clrec.evaluation.metrics import auc, classification_report, ndcg_at_k, recall_at_k
from clrec.models.base import Recommender
from clrec.models.registry import load_model
from clrec.ranking.cross_encoder import CrossEncoderConfig, CrossEncoderRanker
from clrec.ranking.pairs import HARD_NEGATIVE, NO_ITEM, PairConfig, RankPairs, build_pairs
from clrec.ranking.texts import UserContextConfig, item_texts, user_contexts

logger = logging.getLogger(__name__)

RANKER_DIR = "ranker"
REPORT_FILE = "report.json"
SETTINGS_FILE = "rank.json"
RRF_OFFSET = 60  # reciprocal rank fusion's usual constant (Cormack et al., 2009)
_LATENCY_USERS = 20  # users timed for the per-request re-rank latency


@dataclass(frozen=True)
class RankerSettings:
    """Everything :func:`train_ranker` needs besides the run: pairs, texts, model, and the
    evaluation (``test_users`` sampled test users, ``rerank_depth`` candidates re-ranked each,
    metrics at ``ks``)."""

    pairs: PairConfig = field(default_factory=PairConfig)
    context: UserContextConfig = field(default_factory=UserContextConfig)
    model: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)
    rerank_depth: int = 50
    ks: tuple[int, ...] = (10,)
    test_users: int = 300

    def __post_init__(self) -> None:
        if isinstance(self.test_users, bool) or self.test_users < 1:
            raise ClrecError(f"test_users must be a positive integer, got {self.test_users}")
        if isinstance(self.rerank_depth, bool) or self.rerank_depth < 1:
            raise ClrecError(f"rerank_depth must be a positive integer, got {self.rerank_depth}")
        if not self.ks or any(k < 1 or k > self.rerank_depth for k in self.ks):
            raise ClrecError(f"ks must lie in 1..rerank_depth ({self.rerank_depth}), got {self.ks}")

    def to_plain(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> RankerSettings:
        """Inverse of :meth:`to_plain` (tuples restored from JSON lists)."""
        model = dict(data["model"])
        if "lora_targets" in model:
            model["lora_targets"] = tuple(model["lora_targets"])
        return cls(
            pairs=PairConfig(**data["pairs"]),
            context=UserContextConfig(**data["context"]),
            model=CrossEncoderConfig(**model),
            rerank_depth=int(data["rerank_depth"]),
            ks=tuple(int(k) for k in data["ks"]),
            test_users=int(data.get("test_users", cls.test_users)),
        )


@dataclass
class RunParts:
    """A run folder's data set, split and retrieval model."""

    root: Path
    dataset: Dataset
    split: Split
    retriever: Recommender

    @classmethod
    def load(cls, run_dir: str | Path) -> RunParts:
        root = Path(run_dir)
        for part in ("dataset", "split", "model"):
            if not (root / part).is_dir():
                raise ClrecError(
                    f"{root}: not a clrec run folder (no {part}/); train one with clrec train"
                )
        return cls(
            root,
            Dataset.load(root / "dataset"),
            Split.load(root / "split"),
            load_model(root / "model"),
        )


def train_ranker(run_dir: str | Path, out: str | Path, settings: RankerSettings) -> dict[str, Any]:
    """Fit a ranker on the run's retriever and evaluate it; writes ``out/ranker/``,
    ``out/rank.json`` (the run and the settings) and ``out/report.json``; returns the report."""
    parts = RunParts.load(run_dir)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train = build_pairs(parts.dataset, parts.split, parts.retriever, "train", settings.pairs)
    texts = item_texts(parts.dataset)
    users = np.union1d(train.fit.users, train.validation.users)
    contexts = _contexts(parts, users, parts.split.train, settings.context)
    fit_q, fit_i = _pair_texts(train.fit, texts, contexts)
    val_q, val_i = _pair_texts(train.validation, texts, contexts)
    pairs_seconds = time.perf_counter() - started

    ranker = CrossEncoderRanker(settings.model)
    started = time.perf_counter()
    both_classes = 0 < train.validation.positives < len(train.validation)
    if not both_classes:  # AUC needs clicks and non-clicks: train without early stopping
        logger.warning("the validation pairs hold one class only; no early stopping")
    ranker.fit(
        fit_q,
        fit_i,
        train.fit.labels,
        val_q if both_classes else None,
        val_i if both_classes else None,
        train.validation.labels if both_classes else None,
        pos_weight=train.fit.pos_weight,
    )
    fit_seconds = time.perf_counter() - started
    ranker.save(out_dir / RANKER_DIR)
    (out_dir / SETTINGS_FILE).write_text(
        json.dumps({"run": str(parts.root.resolve()), "settings": settings.to_plain()}, indent=2)
        + "\n"
    )
    trainable, total = ranker.trainable_parameters()
    report: dict[str, Any] = {
        "run": str(parts.root.resolve()),
        "training": {
            "fit_pairs": len(train.fit),
            "fit_positives": train.fit.positives,
            "validation_pairs": len(train.validation),
            "pos_weight": round(train.fit.pos_weight, 4),
            "pairs_seconds": round(pairs_seconds, 2),
            "fit_seconds": round(fit_seconds, 2),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_share": trainable / total if total else 0.0,
            "history": ranker.history,
        },
    }
    report.update(_evaluate(parts, ranker, settings, texts))
    _write_json(out_dir / REPORT_FILE, report)
    return report


def evaluate_ranker(ranker_dir: str | Path) -> dict[str, Any]:
    """Evaluate a ranker written by :func:`train_ranker` again on its run's test data; the
    report in ``ranker_dir/report.json`` is updated and returned."""
    root = Path(ranker_dir)
    saved_path = root / SETTINGS_FILE
    if not saved_path.is_file():
        raise ClrecError(f"{root}: not a ranker folder (no {SETTINGS_FILE}); see clrec rank train")
    saved = json.loads(saved_path.read_text())
    settings = RankerSettings.from_plain(saved["settings"])
    parts = RunParts.load(saved["run"])
    ranker = CrossEncoderRanker.load(root / RANKER_DIR)
    report_path = root / REPORT_FILE
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report.update(_evaluate(parts, ranker, settings, item_texts(parts.dataset)))
    _write_json(report_path, report)
    return report


# ---------------------------------------------------------------------- evaluation


def _evaluate(
    parts: RunParts, ranker: CrossEncoderRanker, settings: RankerSettings, texts: list[str]
) -> dict[str, Any]:
    """Classification metrics on the test pairs and retrieve → rerank on the same users."""
    pair_settings = replace(
        settings.pairs, candidates=settings.rerank_depth, max_users=settings.test_users
    )
    test = build_pairs(parts.dataset, parts.split, parts.retriever, "test", pair_settings)
    seen_before_test = pd.concat([parts.split.train, parts.split.valid], ignore_index=True)
    by_user = _contexts(parts, test.users, seen_before_test, settings.context)
    queries, items = _pair_texts(test.pairs, texts, by_user)
    started = time.perf_counter()
    probabilities = ranker.predict(queries, items)  # (N,)
    predict_seconds = time.perf_counter() - started
    labels = test.pairs.labels
    classification = {
        "pairs": len(test.pairs),
        "positives": test.pairs.positives,
        "auc": auc(labels, probabilities),
        **classification_report(labels, probabilities),
        "pairs_per_second": len(test.pairs) / max(predict_seconds, 1e-9),
    }
    if test.pairs.origin is not None:  # AUC against the retriever's own hard negatives
        hard = (test.pairs.origin == HARD_NEGATIVE) | (labels == 1)
        classification["auc_hard_negatives"] = auc(labels[hard], probabilities[hard])

    contexts = [by_user[int(u)] for u in test.users]  # the pairs' users are test.users
    rerank = _rerank_end_to_end(
        parts, ranker, test.users, test.candidates, contexts, texts, settings
    )
    latency = _rerank_latency(ranker, test.candidates, contexts, texts)
    return {"test_pairs": classification, "end_to_end": rerank, "latency": latency}


def _rerank_end_to_end(
    parts: RunParts,
    ranker: CrossEncoderRanker,
    users: np.ndarray,
    candidates: np.ndarray,
    contexts: list[str],
    texts: list[str],
    settings: RankerSettings,
) -> dict[str, Any]:
    """NDCG@k / Recall@k of the retriever's order and of the ranker's re-order of the same
    candidates ``(U, C)``, against each user's test items."""
    truth = parts.split.test.groupby("user")["item"].agg(lambda s: set(s.tolist()))
    relevant = [truth.get(int(u), set()) for u in users]
    n_relevant = np.array([len(r) for r in relevant], dtype=np.int64)  # (U,)
    valid = candidates != NO_ITEM  # (U, C)
    rows, cols = np.nonzero(valid)
    queries = [contexts[r] for r in rows]
    items = [texts[int(candidates[r, c])] for r, c in zip(rows, cols, strict=True)]
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)  # (U, C)
    scores[rows, cols] = ranker.predict(queries, items)
    order = np.argsort(-scores, axis=1, kind="stable")  # (U, C)
    reranked = np.take_along_axis(candidates, order, axis=1)  # (U, C)
    fused = np.take_along_axis(candidates, _rank_fusion(order), axis=1)  # (U, C)

    def hits(lists: np.ndarray) -> np.ndarray:
        return np.array(
            [[int(i) in relevant[u] for i in row] for u, row in enumerate(lists)], dtype=bool
        )  # (U, C)

    result: dict[str, Any] = {"users": len(users), "depth": int(candidates.shape[1])}
    for name, lists in (("retrieve", candidates), ("rerank", reranked), ("fused", fused)):
        found = hits(lists)
        for k in settings.ks:
            result[f"{name}_ndcg@{k}"] = float(ndcg_at_k(found, n_relevant, k).mean())
            result[f"{name}_recall@{k}"] = float(recall_at_k(found, n_relevant, k).mean())
    for k in settings.ks:
        base = result[f"retrieve_ndcg@{k}"]
        for name in ("rerank", "fused"):
            change = (result[f"{name}_ndcg@{k}"] - base) / base if base else None
            result[f"{name}_ndcg@{k}_change"] = change
    return result


def _rank_fusion(ranker_order: np.ndarray, offset: int = RRF_OFFSET) -> np.ndarray:
    """Reciprocal rank fusion of the retriever's order (the candidates' own order) and the
    ranker's (``ranker_order[u]``: candidate positions best first): each candidate scores
    ``1 / (offset + its retriever rank) + 1 / (offset + its ranker rank)``. Returns the fused
    order as candidate positions ``(U, C)``, best first (ties keep the retriever's order)."""
    n_users, depth = ranker_order.shape
    ranker_rank = np.empty_like(ranker_order)  # (U, C) rank of each candidate position
    np.put_along_axis(ranker_rank, ranker_order, np.arange(depth)[None, :], axis=1)
    retriever_rank = np.broadcast_to(np.arange(depth)[None, :], (n_users, depth))
    fused = 1.0 / (offset + retriever_rank + 1) + 1.0 / (offset + ranker_rank + 1)  # (U, C)
    return np.argsort(-fused, axis=1, kind="stable")


def _rerank_latency(
    ranker: CrossEncoderRanker, candidates: np.ndarray, contexts: list[str], texts: list[str]
) -> dict[str, Any]:
    """Median milliseconds to score one user's candidates, float32 and int8 weights."""
    users = min(_LATENCY_USERS, len(contexts))
    result: dict[str, Any] = {"candidates": int(candidates.shape[1]), "users": users}
    for name, model in (("float32", ranker), ("int8", ranker.quantized())):
        times = []
        for u in range(users):
            row = [int(i) for i in candidates[u] if i != NO_ITEM]
            started = time.perf_counter()
            model.predict([contexts[u]] * len(row), [texts[i] for i in row])
            times.append(time.perf_counter() - started)
        result[f"{name}_median_ms"] = float(np.median(times) * 1000) if times else None
    return result


# ---------------------------------------------------------------------- helpers


def _contexts(
    parts: RunParts, users: np.ndarray, history: pd.DataFrame, config: UserContextConfig
) -> dict[int, str]:
    """Each of ``users``' context text from ``history``, built once per user."""
    unique = np.unique(users)
    built = user_contexts(parts.dataset, history, unique, config)
    return dict(zip(unique.tolist(), built, strict=True))


def _pair_texts(
    pairs: RankPairs, texts: list[str], contexts: dict[int, str]
) -> tuple[list[str], list[str]]:
    """(query, item) texts of ``pairs``: the user's context and the item's text."""
    return [contexts[int(u)] for u in pairs.users], [texts[int(i)] for i in pairs.items]


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


__all__ = [
    "RANKER_DIR",
    "RankerSettings",
    "RunParts",
    "evaluate_ranker",
    "train_ranker",
]
