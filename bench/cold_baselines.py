"""Content baselines for a cold-item run, scored on the run's own split and candidates.

    python bench/cold_baselines.py runs/ml1m-cold

* genre popularity — a cold item scores the summed training popularity of its genres;
* content k-NN — MiniLM text vectors (the data set's template, from the embedding cache):
  a user is the mean of their training items' vectors; a cold item scores its cosine.

Both are ranked over the test part's cold items exactly as ``clrec train`` ranks them
(``segments.test.cold_items``), so the table compares like with like.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Self

import numpy as np

from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.encoders.modalities import TextModality, encode_dataset
from clrec.encoders.text import TextEncoderConfig
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.models.base import Recommender, Validator


class FixedScores(Recommender):
    """Scores ``users @ items.T`` of given matrices (a baseline computed outside a model)."""

    name = "fixed"

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users, self.items = users, items

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        result: np.ndarray = (self.users[users] @ self.items.T).astype(np.float32)
        return result

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        raise NotImplementedError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/clrec/embeddings"))
    args = parser.parse_args()
    dataset = Dataset.load(args.run / "dataset")
    split = Split.load(args.run / "split")
    assert split.test_cold_items is not None, "not a cold-item run"
    train = split.train
    n_users = dataset.n_users

    counts = np.bincount(train["item"], minlength=dataset.n_items).astype(np.float32)
    genres = dataset.items["genres"].fillna("").str.get_dummies(sep="|").to_numpy(np.float32)
    genre_popularity = genres.T @ counts  # (G,)
    popularity = FixedScores(
        np.ones((n_users, 1), np.float32), (genres @ genre_popularity)[:, None]
    )

    config = TextEncoderConfig(backend="onnx-int8")
    vectors, _ = encode_dataset(dataset, [TextModality(encoder=config)], args.cache.expanduser())
    text = np.nan_to_num(vectors["text"])  # (I, 384) unit rows; 0 where no text
    users = np.zeros((n_users, text.shape[1]), np.float32)
    np.add.at(users, train["user"].to_numpy(), text[train["item"].to_numpy()])
    users /= np.maximum(np.linalg.norm(users, axis=1, keepdims=True), 1e-12)
    knn = FixedScores(users, text)

    evaluator = Evaluator(dataset, train, EvaluationConfig(ks=(10, 20), progress=False))
    print(f"`python bench/cold_baselines.py {args.run}` — test cold items")
    print("\n| baseline | Recall@20 | NDCG@20 |\n|---|---:|---:|")
    for label, model in (("genre popularity", popularity), ("content k-NN (MiniLM)", knn)):
        result = evaluator.evaluate(
            model, split.test, [split.train, split.valid], candidates=split.test_cold_items
        )
        print(f"| {label} | {result.metrics['recall@20']:.4f} | {result.metrics['ndcg@20']:.4f} |")


if __name__ == "__main__":
    main()
