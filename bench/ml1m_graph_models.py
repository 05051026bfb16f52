"""BPR-MF / LightGCN on ML-1M under RecBole's protocol; prints one Markdown results row.

Protocol (as RecBole / RecBole-GNN report ML-1M): ratings ≥ 3 are positives, a random 8:1:1
split per user (seed 2020), every catalogue item ranked, the user's train items masked
(train and valid when testing), early stopping on validation NDCG@10, test metrics of the
best-validation state.

    .venv/bin/python bench/ml1m_graph_models.py --model lightgcn
    .venv/bin/python bench/ml1m_graph_models.py --model bpr --epochs 100

Defaults come from the model classes; every flag left out keeps the model's default.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from typing import Any

import torch

from clrec.data.filters import binarize
from clrec.data.registry import default_data_root, load
from clrec.data.splits import SplitConfig, split_dataset
from clrec.evaluation.evaluator import EvaluationConfig, evaluate
from clrec.models.base import Recommender
from clrec.models.lightgcn import LightGCN
from clrec.models.mf import BPRMF

MODELS: dict[str, type[BPRMF] | type[LightGCN]] = {"bpr": BPRMF, "lightgcn": LightGCN}
HEADER = (
    "| model | Recall@10 | Recall@20 | NDCG@10 | NDCG@20 | best epoch | epochs run "
    "| train s / epoch | fit s (with validation) | peak RSS MB | machine |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--data-root", default=None, help="staged data root (default: auto)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--reg-weight", type=float)
    parser.add_argument("--embedding-size", type=int)
    parser.add_argument("--n-layers", type=int, help="LightGCN only")
    parser.add_argument("--init-std", type=float)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--progress", action="store_true", help="show per-epoch bars")
    return parser.parse_args(argv)


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as the model's named hyper-parameters."""
    names = ["epochs", "batch_size", "lr", "reg_weight", "embedding_size", "init_std"]
    names += ["eval_every", "patience", "seed", "device"]
    if args.model == "lightgcn":
        names.append("n_layers")
    params = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.threads is not None:
        params["num_threads"] = args.threads
    params["progress"] = bool(args.progress)
    return params


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = binarize(load("ml-1m", default_data_root(args.data_root)), 3)
    split = split_dataset(data, SplitConfig(scheme="random", seed=2020))
    train = data.with_interactions(split.train)
    valid = data.with_interactions(split.valid)
    test = data.with_interactions(split.test)
    print(
        f"ml-1m ratings>=3: {data.n_users} users, {data.n_items} items, "
        f"train {len(train.interactions)}, valid {len(valid.interactions)}, "
        f"test {len(test.interactions)}",
        flush=True,
    )

    valid_config = EvaluationConfig(ks=(10,), metrics=("ndcg", "recall"), progress=False)
    started = time.perf_counter()

    def validator(model: Recommender) -> dict[str, float]:
        metrics = evaluate(model, data, valid, exclude=[train], config=valid_config)
        print(
            f"  valid after {time.perf_counter() - started:7.1f} s: "
            f"ndcg@10 {metrics['ndcg@10']:.4f} recall@10 {metrics['recall@10']:.4f}",
            flush=True,
        )
        return metrics

    model = MODELS[args.model].from_config(model_params(args))
    print(f"{args.model} params: {model.params()}", flush=True)
    model.fit(train, validator=validator)
    fit_seconds = time.perf_counter() - started
    for entry in model.history:
        print(
            f"  epoch {int(entry['epoch']):4d} loss {entry['loss']:.4f} "
            f"train {entry['seconds']:.2f} s valid ndcg@10 {entry.get('ndcg@10', float('nan')):.4f}"
        )

    metrics = evaluate(
        model,
        data,
        test,
        exclude=[train, valid],
        config=EvaluationConfig(ks=(10, 20), metrics=("recall", "ndcg"), progress=False),
    )
    last = model.history[-1]
    epochs_run = int(last["epoch"])
    per_epoch = last["train_seconds"] / max(epochs_run, 1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    machine = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} {torch.get_num_threads()} threads"
    )
    print()
    print(HEADER)
    print(
        f"| {args.model} | {metrics['recall@10']:.4f} | {metrics['recall@20']:.4f} "
        f"| {metrics['ndcg@10']:.4f} | {metrics['ndcg@20']:.4f} | {model.best_epoch} "
        f"| {epochs_run} | {per_epoch:.2f} | {fit_seconds:.0f} | {peak_mb:.0f} | {machine} |"
    )
    print(f"\ncommand: {' '.join([sys.executable.split('/')[-1], *sys.argv])}")


if __name__ == "__main__":
    main()
