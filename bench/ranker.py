"""Benchmark of the language-model ranking stage: retrieve → rerank against retrieve alone.

For each ``--run`` (a clrec run folder; created first from ``--config`` with ``clrec train``
when it does not exist) it fine-tunes a cross-encoder on the packaged all-MiniLM-L6-v2 with
the run's model as the retriever (``clrec.ranking.pipeline.train_ranker``), then reports:
pairs, trainable share of parameters, training seconds, the test pairs' AUC / accuracy /
precision / recall / F1 (and AUC against the retriever's hard negatives alone), NDCG@10 and
Recall@10 of the retriever's top ``--depth`` re-ordered by the ranker against the retriever's
own order on the same sampled test users, and the median milliseconds to re-rank one user's
``--depth`` candidates with float32 and int8 weights. Wall time and peak RSS are measured
for the whole ranker job.

Usage::

    python bench/ranker.py --run RUN [--config CONFIG] [--run RUN --config CONFIG ...]
        [--mode lora] [--max-users 600] [--epochs 2] [--threads 2] [--append [BENCHMARKS.md]]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from machine import commit, cpu_name, publish

from clrec.config import RunConfig
from clrec.experiment import run_experiment
from clrec.ranking.cross_encoder import CrossEncoderConfig
from clrec.ranking.pairs import PairConfig
from clrec.ranking.pipeline import RankerSettings, train_ranker


def settings_from(args: argparse.Namespace) -> RankerSettings:
    return RankerSettings(
        pairs=PairConfig(
            max_users=args.max_users,
            candidates=args.depth,
            hard_negatives=args.hard_negatives,
            random_negatives=args.random_negatives,
            max_positives_per_user=args.max_positives,
            seed=args.seed,
        ),
        model=CrossEncoderConfig(
            mode=args.mode,
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_length=args.max_length,
            threads=args.threads,
            seed=args.seed,
            time_limit_minutes=args.time_limit,
            progress=False,
        ),
        rerank_depth=args.depth,
        test_users=args.test_users,
    )


def run_one(run: Path, config: Path | None, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    if not (run / "model").is_dir():
        if config is None:
            raise SystemExit(f"{run}: no run there and no --config to train one")
        print(f"[{run}] training the retriever from {config} ...", file=sys.stderr, flush=True)
        run_experiment(RunConfig.from_yaml(config), run)
    print(f"[{run}] training the ranker ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    report = train_ranker(run, out, settings_from(args))
    report["wall_seconds"] = time.perf_counter() - started
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["name"] = run.name if run.name not in ("run", "clrec-clrec") else run.parent.name
    return report


def table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| run | retriever | fit / valid pairs | trainable | epochs run | train s | wall s "
        "| test AUC (hard negs) | acc | P | R | F1 | users | NDCG@10 retrieve → rerank "
        "| NDCG@10 fused (RRF) | Recall@10 retrieve → rerank | rerank 50 ms fp32 / int8 "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        t, p, e, lat = r["training"], r["test_pairs"], r["end_to_end"], r["latency"]
        epochs = max((h.get("epoch", 0) for h in t["history"]), default=0)
        change = e.get("rerank_ndcg@10_change")
        fused = e.get("fused_ndcg@10")
        lines.append(
            f"| {r['name']} | {r.get('retriever', '?')} | {t['fit_pairs']:,} / "
            f"{t['validation_pairs']:,} | {100 * t['trainable_share']:.2f} % | {epochs} "
            f"| {t['fit_seconds']:.0f} | {r['wall_seconds']:.0f} "
            f"| {p['auc']:.3f} ({p.get('auc_hard_negatives', float('nan')):.3f}) "
            f"| {p['accuracy']:.3f} | {p['precision']:.3f} | {p['recall']:.3f} | {p['f1']:.3f} "
            f"| {e['users']} | {e['retrieve_ndcg@10']:.4f} → {e['rerank_ndcg@10']:.4f}"
            f"{'' if change is None else f' ({100 * change:+.1f} %)'} "
            f"| {'–' if fused is None else f'{fused:.4f}'} "
            f"| {e['retrieve_recall@10']:.4f} → {e['rerank_recall@10']:.4f} "
            f"| {lat['float32_median_ms']:.0f} / {lat['int8_median_ms']:.0f} "
            f"| {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def notes(args: argparse.Namespace) -> str:
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}; commit {commit()}; {datetime.now(UTC):%Y-%m-%d}. Command: "
        f"`{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`.\n"
        f"Ranker: packaged all-MiniLM-L6-v2 cross-encoder, mode `{args.mode}`, {args.epochs} "
        f"epoch(s), batch {args.batch_size}, max length {args.max_length}, {args.threads} "
        f"thread(s). Pairs: {args.max_users} sampled users, at most {args.max_positives} "
        f"positives (their validation interactions) + {args.hard_negatives} hard negatives "
        f"(top retrieved, not taken) + {args.random_negatives} random negatives each; 10 % of "
        "the users held out for early stopping on AUC. Test: the test interactions of "
        f"{args.test_users} sampled users; end to end, the retriever's top {args.depth} "
        "(train and valid items excluded) re-ordered by the ranker vs the retriever's own "
        "order, on the same users. Latency: median over 20 users of scoring one user's "
        f"{args.depth} candidates (batched)."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument(
        "--config", type=Path, action="append", default=[], help="per --run, to create it"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ranker"))
    parser.add_argument("--mode", choices=["lora", "head", "last_n"], default="lora")
    parser.add_argument("--max-users", type=int, default=600)
    parser.add_argument("--max-positives", type=int, default=4)
    parser.add_argument("--hard-negatives", type=int, default=4)
    parser.add_argument("--random-negatives", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--test-users", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=None, help="training minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--append", nargs="?", type=Path, const=Path("BENCHMARKS.md"), default=None)
    args = parser.parse_args(argv)
    if args.config and len(args.config) != len(args.run):
        parser.error("give one --config per --run (or none)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configs: list[Path | None] = list(args.config) or [None] * len(args.run)
    reports = []
    for run, config in zip(args.run, configs, strict=True):
        report = run_one(run, config, args.out / f"{run.parent.name}-{run.name}-{args.mode}", args)
        report["retriever"] = RunConfig.from_yaml(run / "config.yaml").model.name
        reports.append(report)
    text = notes(args) + "\n\n" + table(reports) + "\n"
    publish(text, args.append, "## Language-model ranking stage (bench/ranker.py)")


if __name__ == "__main__":
    main()
