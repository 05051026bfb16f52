"""The click model: the founding document's BERT example, now one feature of the ranking stage.

A cross-encoder (:mod:`clrec.ranking.cross_encoder`) fine-tuned on click / no-click pairs
(:mod:`clrec.ranking.pairs`: positives from ``split.valid``, hard negatives from the
retriever's top, random negatives) reading (user context, item text). It is judged on its
own as a classifier on the test pairs — AUC, accuracy, precision, recall, F1, overall and
against hard negatives alone — and its probability becomes the ``click`` feature of the
LambdaRank stage when asked for (it costs one transformer pass per candidate).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.evaluation.metrics import auc, classification_report
from clrec.models.base import Recommender
from clrec.ranking.cross_encoder import CrossEncoderConfig, CrossEncoderRanker
from clrec.ranking.pairs import HARD_NEGATIVE, PairConfig, RankPairs, build_pairs
from clrec.ranking.texts import UserContextConfig, item_texts, user_contexts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClickSettings:
    """The click model's pairs, user contexts and cross-encoder settings."""

    pairs: PairConfig = field(default_factory=PairConfig)
    context: UserContextConfig = field(default_factory=UserContextConfig)
    model: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)


def train_click_model(
    dataset: Dataset, split: Split, retriever: Recommender, settings: ClickSettings
) -> tuple[CrossEncoderRanker, dict[str, Any]]:
    """Fine-tune the click model on the training pairs; returns it and its training report."""
    started = time.perf_counter()
    train = build_pairs(dataset, split, retriever, "train", settings.pairs)
    texts = item_texts(dataset)
    users = np.union1d(train.fit.users, train.validation.users)
    contexts = contexts_by_user(dataset, users, split.train, settings.context)
    fit_q, fit_i = pair_texts(train.fit, texts, contexts)
    val_q, val_i = pair_texts(train.validation, texts, contexts)
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
    trainable, total = ranker.trainable_parameters()
    report = {
        "fit_pairs": len(train.fit),
        "fit_positives": train.fit.positives,
        "validation_pairs": len(train.validation),
        "pos_weight": round(train.fit.pos_weight, 4),
        "pairs_seconds": round(pairs_seconds, 2),
        "fit_seconds": round(time.perf_counter() - started, 2),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_share": trainable / total if total else 0.0,
        "history": ranker.history,
    }
    return ranker, report


def classify_test_pairs(
    dataset: Dataset,
    split: Split,
    retriever: Recommender,
    ranker: CrossEncoderRanker,
    settings: ClickSettings,
) -> dict[str, Any]:
    """The click model as a classifier on the test pairs (built like the training pairs,
    from ``split.test``; contexts see train + valid): AUC (overall, and against the
    retriever's hard negatives alone), accuracy, precision, recall, F1."""
    test = build_pairs(dataset, split, retriever, "test", settings.pairs)
    seen_before_test = pd.concat([split.train, split.valid], ignore_index=True)
    by_user = contexts_by_user(dataset, test.users, seen_before_test, settings.context)
    queries, items = pair_texts(test.pairs, item_texts(dataset), by_user)
    started = time.perf_counter()
    probabilities = ranker.predict(queries, items)  # (N,)
    seconds = time.perf_counter() - started
    labels = test.pairs.labels
    report: dict[str, Any] = {
        "pairs": len(test.pairs),
        "positives": test.pairs.positives,
        "auc": auc(labels, probabilities),
        **classification_report(labels, probabilities),
        "pairs_per_second": len(test.pairs) / max(seconds, 1e-9),
    }
    if test.pairs.origin is not None:
        hard = (test.pairs.origin == HARD_NEGATIVE) | (labels == 1)
        report["auc_hard_negatives"] = auc(labels[hard], probabilities[hard])
    return report


def click_probabilities(
    ranker: CrossEncoderRanker,
    dataset: Dataset,
    history: pd.DataFrame,
    users: np.ndarray,
    offsets: np.ndarray,
    items: np.ndarray,
    context: UserContextConfig,
) -> np.ndarray:
    """The click model's probability ``(N,)`` of every candidate ``items`` ``(N,)``, the
    ``u``-th user's in ``offsets[u]:offsets[u+1]``, contexts built from ``history``."""
    by_user = contexts_by_user(dataset, users, history, context)
    owners = np.repeat(users, np.diff(offsets))  # (N,)
    texts = item_texts(dataset)
    queries = [by_user[int(u)] for u in owners]
    return np.asarray(
        ranker.predict(queries, [texts[int(i)] for i in items], progress=False), np.float32
    )


def contexts_by_user(
    dataset: Dataset, users: np.ndarray, history: pd.DataFrame, config: UserContextConfig
) -> dict[int, str]:
    """Each of ``users``' context text from ``history``, built once per user."""
    unique = np.unique(users)
    built = user_contexts(dataset, history, unique, config)
    return dict(zip(unique.tolist(), built, strict=True))


def pair_texts(
    pairs: RankPairs, texts: list[str], contexts: dict[int, str]
) -> tuple[list[str], list[str]]:
    """(query, item) texts of ``pairs``: the user's context and the item's text."""
    return [contexts[int(u)] for u in pairs.users], [texts[int(i)] for i in pairs.items]


__all__ = [
    "ClickSettings",
    "classify_test_pairs",
    "click_probabilities",
    "contexts_by_user",
    "train_click_model",
]
