"""Benchmark of the ranking stage: LambdaRank over several retrievers against retrieval alone.

For each ``--run`` (a clrec run folder; trained first from its ``--config`` when it does not
exist, with ``--set`` overrides such as a random split) it trains the ranking stage with
``clrec.ranking.pipeline.train_ranker`` (the run's model, ItemKNN, popular and recent items
as retrievers; retrieval, behaviour, language-model and tag features; LightGBM LambdaRank
boosted from the model's score) and reports, on **every** test user: NDCG@10 / Recall@10 of
the run's model alone (its own evaluation), of the model with the validation interactions
folded in as events (what the stage's model feature sees), and of the stage; the change with
a paired bootstrap 95 % interval; how many candidates a user gets and the share of the test
interactions among them; the ablation (NDCG@10 without each feature group and each
retriever); the largest feature importances; the per-request cost (candidates; features and
trees). With ``--click-model MODE`` the cross-encoder click model is trained first and
becomes a feature, and its own classification metrics are reported.

Usage::

    python bench/ranker.py --run RUN --config CONFIG [--set KEY=VALUE ...] \\
        [--run RUN --config CONFIG ...] [--click-model head] [--from-zero] [--no-ablation]
        [--append [BENCHMARKS.md]]
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

from machine import commit, cpu_name, publish
from run_folders import ensure_run

from clrec.ranking.click import ClickSettings
from clrec.ranking.cross_encoder import CrossEncoderConfig
from clrec.ranking.folds import RankerSettings
from clrec.ranking.ltr import LambdaRankConfig
from clrec.ranking.pairs import PairConfig
from clrec.ranking.pipeline import train_ranker


def settings_from(args: argparse.Namespace) -> RankerSettings:
    click = None
    if args.click_model != "off":
        click = ClickSettings(
            pairs=PairConfig(max_users=args.max_users, max_positives_per_user=4, seed=args.seed),
            model=CrossEncoderConfig(
                mode=args.click_model,
                epochs=args.epochs,
                threads=args.threads,
                seed=args.seed,
                time_limit_minutes=args.time_limit,
                progress=False,
            ),
        )
    base = None if args.from_zero else LambdaRankConfig.base_feature
    return RankerSettings(
        lambdarank=LambdaRankConfig(seed=args.seed, base_feature=base),
        click=click,
        ablation=not args.no_ablation,
        progress=False,
    )


def run_one(
    run: Path, config: Path | None, overrides: list[str], out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    ensure_run(run, config, overrides)
    print(f"[{run}] training the ranking stage ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    report = train_ranker(run, out, settings_from(args))
    report["wall_seconds"] = time.perf_counter() - started
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["name"] = run.name
    return report


def main_table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| run | users | candidates / user (test items among them) | NDCG@10 model alone "
        "| + valid events | stage | change [95 %] | Recall@10 model → stage | features + fit s "
        "| rounds | wall s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        e, t = r["end_to_end"], r["training"]
        low, high = e["rerank_ndcg@10_change_95"] or (float("nan"), float("nan"))
        lines.append(
            f"| {r['name']} | {e['users']:,} | {e['candidates_per_user']:.0f} "
            f"({100 * e['label_recall_of_candidates']:.0f} %) | {e['retrieve_ndcg@10']:.4f} "
            f"| {e['retrieve_events_ndcg@10']:.4f} | {e['rerank_ndcg@10']:.4f} "
            f"| {100 * e['rerank_ndcg@10_change']:+.1f} % [{100 * low:+.1f}, {100 * high:+.1f}] "
            f"| {e['retrieve_recall@10']:.4f} → {e['rerank_recall@10']:.4f} "
            f"| {t['features_seconds']:.0f} + {t['fit_seconds']:.0f} | {t['best_round']} "
            f"| {r['wall_seconds']:.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def ablation_table(reports: list[dict[str, Any]]) -> str:
    variants = list(reports[0].get("ablation", {}))
    if not variants:
        return ""
    names = " | ".join(r["name"] for r in reports)
    lines = [f"| NDCG@10 | {names} |", "|---|" + "---|" * len(reports)]
    for variant in variants:
        cells = []
        for r in reports:
            value = r.get("ablation", {}).get(variant, {}).get("ndcg@10")
            full = r["end_to_end"]["rerank_ndcg@10"]
            cells.append(
                "–" if value is None else f"{value:.4f} ({100 * (value / full - 1):+.1f} %)"
            )
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    return "\n".join(lines)


def detail_lines(reports: list[dict[str, Any]]) -> str:
    lines = []
    for r in reports:
        top = list(r["training"]["importance"].items())[:6]
        shares = ", ".join(f"{name} {100 * share:.0f} %" for name, share in top)
        lat = r["latency"]
        lines.append(
            f"- **{r['name']}**: largest gain shares {shares}. One request: candidates "
            f"{lat.get('candidates_median_ms', float('nan')):.1f} ms, features + trees "
            f"{lat.get('features_and_rank_median_ms', float('nan')):.2f} ms (median of "
            f"{lat.get('users', 0)} users, {lat.get('candidates_median', 0):.0f} candidates)."
        )
        click = r.get("click_test_pairs")
        if click:
            lines.append(
                f"  Click model on the test pairs: AUC {click['auc']:.3f} (against hard "
                f"negatives {click.get('auc_hard_negatives', float('nan')):.3f}), accuracy "
                f"{click['accuracy']:.3f}, precision {click['precision']:.3f}, recall "
                f"{click['recall']:.3f}, F1 {click['f1']:.3f} ({click['pairs']:,} pairs)."
            )
    return "\n".join(lines)


def notes(args: argparse.Namespace) -> str:
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"commit {commit()}; {datetime.now(UTC):%Y-%m-%d}. Command: "
        f"`{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`.\n"
        "Stage: candidates = the union of each retriever's top 50 unseen items (the run's "
        "model, ItemKNN with 100 neighbours, popular, recent = the newest 10 % of the log's "
        "time span); features = each retriever's score / rank / proposed flag, item "
        "popularity, recent popularity and age, user activity, ItemKNN similarity with the "
        "user's latest items (last, mean of 5, max of 20), MiniLM cosine of the "
        "candidate's title with the user's 20 most recent items (mean, max, last), tag "
        "overlap; LightGBM LambdaRank (7 leaves, learning rate 0.05, early stopping on 20 % "
        "of the label users) boosted from the model's score. Training fold: history = "
        "train, labels = valid; test fold: history = train + valid (valid folded into the "
        "model as events), labels = test, every test user. "
        f"Click model: {args.click_model}."
        + (" Trees from zero (not boosted from the model's score)." if args.from_zero else "")
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument(
        "--config", type=Path, action="append", default=[], help="per --run, to create it"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="config overrides for every run created"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ranker"))
    parser.add_argument("--click-model", choices=["off", "lora", "head", "last_n"], default="off")
    parser.add_argument("--max-users", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=None, help="click model minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--from-zero", action="store_true", help="trees from zero, not boosted from the model"
    )
    parser.add_argument("--no-ablation", action="store_true")
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
        variant = "-from-zero" if args.from_zero else ""
        out = args.out / f"{run.name}-{args.click_model}{variant}"
        reports.append(run_one(run, config, args.set, out, args))
    parts = (notes(args), main_table(reports), ablation_table(reports), detail_lines(reports))
    text = "\n\n".join(part for part in parts if part)
    publish(text + "\n", args.append, "## Ranking stage: learning to rank (bench/ranker.py)")


if __name__ == "__main__":
    main()
