"""Time and peak memory of one full-ranking evaluation pass.

Cases (each in its own process, so peak RSS belongs to that case alone):

* ``ml1m-embedding``: all ML-1M test users (RecBole protocol split) against all items, scored
  by a 64-d dot-product model (what MF / LightGCN / clrec cost to score).
* ``ml1m-ease``: the same pass scored by a fitted EASE (an items × items matmul per batch).
* ``synthetic-1m``: 2,000 users against a synthetic catalogue of 1,000,000 items with
  power-law popularity, 64-d dot-product scores; memory must stay bounded by the batch.
* ``synthetic-ease-17k``: 50,000 users, 17,000 items, ~440k power-law interactions (the
  medium catalogue of issue 18), scored by a fitted EASE (λ 250): the pass should cost what
  its arithmetic does (~440k history non-zeros × 17k columns), not a copy of the weights.

Usage: ``python bench/eval_speed.py [--case NAME ...] [--threads N]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from clrec.data.registry import default_data_root
from clrec.data.schema import Dataset
from clrec.data.splits import SplitConfig, split_dataset
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.models.base import Recommender, Validator

CASES = ("ml1m-embedding", "ml1m-ease", "synthetic-1m", "synthetic-ease-17k")


class RandomEmbeddings(Recommender):
    """Dot products of fixed random user and item vectors: the cost of an embedding model."""

    name = "random-embeddings"

    def __init__(self, n_users: int, n_items: int, dim: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.users = torch.randn(n_users, dim, generator=generator)  # (U, D)
        self.items = torch.randn(n_items, dim, generator=generator)  # (I, D)

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self.users[torch.from_numpy(users)] @ self.items.T).numpy()  # (B, I)

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        raise NotImplementedError


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ml1m() -> tuple[Dataset, Any]:
    from clrec.data import filters, registry

    dataset = filters.compact(filters.binarize(registry.load("ml-1m", default_data_root()), 3))
    return dataset, split_dataset(dataset, SplitConfig(seed=2020))


def _synthetic(name: str, n_users: int = 2000, n_items: int = 1_000_000, per_user: int = 50) -> Any:
    rng = np.random.default_rng(0)
    items = (rng.zipf(1.3, n_users * per_user * 2) - 1) % n_items
    users = np.repeat(np.arange(n_users), per_user * 2)
    frame = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    frame = frame.groupby("user").head(per_user)
    catalogue = pd.DataFrame({"id": np.arange(n_items).astype(str)})
    dataset = Dataset.from_external(name, frame, item_content=catalogue)
    return dataset, split_dataset(dataset, SplitConfig(seed=0))


def run_case(case: str, threads: int, queue: Any) -> None:
    torch.set_num_threads(threads)
    if case == "synthetic-1m":
        dataset, split = _synthetic(case)
    elif case == "synthetic-ease-17k":
        dataset, split = _synthetic(case, n_users=50_000, n_items=17_000, per_user=9)
    else:
        dataset, split = _ml1m()
    model: Recommender
    if case.endswith("ease") or case.startswith("synthetic-ease"):
        from clrec.models.ease import EASE

        reg = 500.0 if case == "ml1m-ease" else 250.0
        model = EASE(reg_weight=reg).fit(dataset.with_interactions(split.train))
    else:
        model = RandomEmbeddings(dataset.n_users, dataset.n_items)
    evaluator = Evaluator(dataset, split.train, EvaluationConfig(progress=False))
    before = _rss_mb()
    started = time.perf_counter()
    result = evaluator.evaluate(model, split.test, [split.train, split.valid])
    seconds = time.perf_counter() - started
    queue.put(
        {
            "case": case,
            "users": int(result.metrics["users"]),
            "items": dataset.n_items,
            "seconds": round(seconds, 2),
            "rss_before_mb": round(before, 0),
            "peak_rss_mb": round(_rss_mb(), 0),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", action="append", choices=CASES)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for case in args.case or CASES:
        queue = context.Queue()
        process = context.Process(target=run_case, args=(case, args.threads, queue))
        process.start()
        rows.append(queue.get())
        process.join()
    print(
        f"machine: {platform.machine()}, {multiprocessing.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {args.threads} threads; ks 10,20, 6 metrics, segments on\n"
    )
    print("| case | users | items | seconds per full pass | RSS before (MB) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['case']} | {row['users']:,} | {row['items']:,} | {row['seconds']} | "
            f"{row['rss_before_mb']:.0f} | {row['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
