"""Score a peer's saved scores with clrec's evaluator on a clrec run's split.

    python bench/peers/score.py RUN_DIR SCORES.npz --label "LightFM WARP hybrid"

SCORES.npz holds ``scores`` ``(users, items)`` in the run's internal ids (what the exporters
keep). The ranking protocol is the run's: full ranking with seen items masked, and on a
cold-item split also the cold-item candidates only (``cold_items``), so the peer's figures
sit beside clrec's in one table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Self

import numpy as np

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.evaluation.evaluator import Evaluator
from clrec.models.base import Recommender, Validator


class SavedScores(Recommender):
    """A peer's precomputed ``(users, items)`` score matrix behind the Recommender contract."""

    name = "saved-scores"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.array(self.scores[users], dtype=np.float32)

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError("saved scores are not a model")

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        raise NotImplementedError("saved scores are not a model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("scores", type=Path)
    parser.add_argument("--label", default="peer")
    args = parser.parse_args()
    config = RunConfig.from_yaml(args.run / "config.yaml", ["evaluation.progress=false"])
    dataset = Dataset.load(args.run / "dataset")
    split = Split.load(args.run / "split")
    saved = np.load(args.scores)
    model = SavedScores(saved["scores"])
    evaluator = Evaluator(dataset, split.train, config.evaluation)
    seen = [split.train, split.valid]
    full = evaluator.evaluate(model, split.test, seen).metrics
    line = f"| {args.label} | {full['recall@10']:.4f} | {full['ndcg@10']:.4f} |"
    if split.test_cold_items is not None:
        cold = evaluator.evaluate(model, split.test, seen, candidates=split.test_cold_items)
        line += f" {cold.metrics['recall@20']:.4f} | {cold.metrics['ndcg@20']:.4f} |"
    line += f" {float(saved['fit_seconds']):.1f} |"
    print("| model | Recall@10 | NDCG@10 | cold Recall@20 | cold NDCG@20 | fit s |")
    print(line)


if __name__ == "__main__":
    main()
