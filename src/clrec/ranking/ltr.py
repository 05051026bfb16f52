"""LightGBM LambdaRank over the ranking stage's feature rows.

One query group per user (their candidates), graded labels (1: a held-out interaction,
0: not), NDCG@``eval_at`` as the early-stopping metric on a held-out group of users.

The trees boost from the retriever's own score: ``base_feature`` (the run's model's score)
divided by its standard deviation over the training rows is every row's initial score, and
the trees learn corrections to it. Without that start a few hundred trees quantise the
model's fine ordering into a handful of levels and lose to it (ml-latest-small, clrec
preset: NDCG@10 0.191 from zero, 0.203 boosted from the score, 0.197 the model alone;
BENCHMARKS.md, "Ranking stage: learning to rank").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clrec.errors import ClrecError


@dataclass(frozen=True)
class LambdaRankConfig:
    """LightGBM settings (``objective: lambdarank``); ``rounds`` at most, stopping after
    ``early_stopping`` rounds without a better held-out NDCG@``eval_at``;
    ``validation_share`` of the label users held out for it; ``base_feature``: the column
    the trees start from (module docstring; None, or a column not given: from zero).
    ``threads``: LightGBM's OpenMP threads; 1 by default, as its threads spin-wait and slow
    down fifty-fold when another process holds the cores."""

    rounds: int = 500
    learning_rate: float = 0.05
    num_leaves: int = 7
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping: int = 50
    eval_at: int = 10
    validation_share: float = 0.2
    threads: int = 1
    seed: int = 0
    base_feature: str | None = "model_score"

    def __post_init__(self) -> None:
        for name in ("rounds", "num_leaves", "min_data_in_leaf", "early_stopping", "eval_at"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ClrecError(f"lambdarank {name} must be an integer ≥ 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ClrecError(f"lambdarank learning_rate must be positive, got {self.learning_rate}")
        for name in ("feature_fraction", "bagging_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ClrecError(f"lambdarank {name} must be in (0, 1]")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ClrecError(f"lambdarank threads must be an integer ≥ 1, got {self.threads!r}")
        if not 0 < self.validation_share < 1:
            raise ClrecError("lambdarank validation_share must be in (0, 1)")

    def params(self) -> dict[str, Any]:
        """LightGBM's parameter dict."""
        params: dict[str, Any] = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }
        params["num_threads"] = self.threads
        return params


class LambdaRanker:
    """A fitted LightGBM LambdaRank booster and the names of its feature columns."""

    MODEL_FILE = "lambdarank.txt"
    META_FILE = "lambdarank.json"

    def __init__(
        self,
        booster: Any,
        features: list[str],
        history: dict[str, Any],
        base: tuple[int, float] | None = None,
    ) -> None:
        self.booster = booster
        self.features = features
        self.history = history
        self.base = base  # (column, scale) of the initial score, None: from zero

    def base_scores(self, features: np.ndarray) -> np.ndarray:
        """The rows' initial scores ``(N,)``: the base column times its scale, or zeros."""
        if self.base is None:
            return np.zeros(len(features), dtype=np.float64)
        column, scale = self.base
        return np.nan_to_num(features[:, column].astype(np.float64) * scale)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray,
        names: list[str],
        config: LambdaRankConfig,
    ) -> LambdaRanker:
        """Train on rows ``features`` ``(N, F)`` with ``labels`` ``(N,)``, grouped by user
        ``groups`` ``(G,)`` (row counts, in row order); a seeded ``validation_share`` of the
        groups judges early stopping."""
        import lightgbm as lgb

        if features.shape[1] != len(names):
            raise ClrecError(f"{features.shape[1]} feature columns but {len(names)} names")
        if int(groups.sum()) != len(features):
            raise ClrecError("the groups do not cover the feature rows")
        rng = np.random.default_rng(config.seed)
        held = rng.random(len(groups)) < config.validation_share  # (G,)
        if held.all() or not held.any():
            held[:] = False
            held[: max(1, len(groups) // 5)] = True
        row_held = np.repeat(held, groups)  # (N,)
        base = None
        if config.base_feature in names:
            column = names.index(config.base_feature)
            spread = float(np.nanstd(features[~row_held, column]))
            base = (column, 1.0 / spread if spread > 0 else 0.0)
        start = cls(None, list(names), {}, base).base_scores(features)  # (N,)
        train = lgb.Dataset(
            features[~row_held],
            labels[~row_held],
            group=groups[~held],
            init_score=start[~row_held],
            feature_name=names,
            free_raw_data=False,
        )
        valid = lgb.Dataset(
            features[row_held],
            labels[row_held],
            group=groups[held],
            init_score=start[row_held],
            reference=train,
        )
        evals: dict[str, Any] = {}
        booster = lgb.train(
            config.params(),
            train,
            num_boost_round=config.rounds,
            valid_sets=[valid],
            valid_names=["held_out"],
            callbacks=[
                lgb.early_stopping(config.early_stopping, verbose=False),
                lgb.record_evaluation(evals),
            ],
        )
        curve = evals.get("held_out", {}).get(f"ndcg@{config.eval_at}", [])
        history = {
            "rounds": len(curve),
            "best_round": int(booster.best_iteration or booster.num_trees()),
            f"held_out_ndcg@{config.eval_at}": float(max(curve)) if curve else None,
            "fit_users": int((~held).sum()),
            "held_out_users": int(held.sum()),
            "rows": len(features),
        }
        return cls(booster, list(names), history, base)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores ``(N,)`` of feature rows ``(N, F)`` (higher ranks first)."""
        if features.shape[1] != len(self.features):
            raise ClrecError(
                f"the ranker reads {len(self.features)} features, got {features.shape[1]}"
            )
        if not len(features):
            return np.zeros(0, dtype=np.float64)
        best = self.booster.best_iteration or None
        trees = self.booster.predict(features, num_iteration=best, num_threads=1)
        return np.asarray(trees, dtype=np.float64) + self.base_scores(features)

    def importances(self) -> dict[str, float]:
        """Each feature's share of the total gain, largest first."""
        gains = np.asarray(self.booster.feature_importance("gain"), dtype=np.float64)
        total = gains.sum() or 1.0
        pairs = sorted(zip(self.features, gains / total, strict=True), key=lambda p: -p[1])
        return {name: round(float(share), 4) for name, share in pairs}

    def save(self, directory: str | Path) -> Path:
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(root / self.MODEL_FILE))
        meta = {"features": self.features, "history": self.history, "base": self.base}
        (root / self.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return root

    @classmethod
    def load(cls, directory: str | Path) -> LambdaRanker:
        """Load :meth:`save`'s folder; a missing or damaged file is a clear error."""
        import lightgbm as lgb

        root = Path(directory)
        try:
            meta = json.loads((root / cls.META_FILE).read_text())
            booster = lgb.Booster(model_file=str(root / cls.MODEL_FILE))
        except (OSError, ValueError, lgb.basic.LightGBMError) as error:
            raise ClrecError(f"{root}: unreadable LambdaRank ranker: {error}") from error
        features = [str(name) for name in meta.get("features", [])]
        if booster.num_feature() != len(features):
            raise ClrecError(
                f"{root}: the ranker file reads {booster.num_feature()} features but its "
                f"metadata names {len(features)}"
            )
        base = meta.get("base")
        return cls(
            booster,
            features,
            dict(meta.get("history", {})),
            None if base is None else (int(base[0]), float(base[1])),
        )


__all__ = ["LambdaRankConfig", "LambdaRanker"]
