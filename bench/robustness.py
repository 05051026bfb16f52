"""Noise curves: NDCG@10 of clrec, EASE, LightGCN and BPR (with and without APR) as random fake
interactions are added to the training data.

    .venv/bin/python bench/robustness.py                      # ml-latest-small, 5 / 10 / 20 %
    .venv/bin/python bench/robustness.py --models lightgcn,lightgcn-apr --rates 0.2
    .venv/bin/python bench/robustness.py --dataset ml-1m --time-cap 6 --append BENCHMARKS.md

Every model runs :func:`clrec.robustness.noise_curve` on the data set's preset
(``configs/DATASET.yaml``; ``configs/DATASET-MODEL.yaml`` where one exists, else the preset
with ``model.name=MODEL`` and the model's defaults, as ``bench/peers/run.sh`` does): one split,
a clean fit and one fit per rate with ``rate × |train|`` uniformly random fake pairs added to
the train part only (nested draws, one seed), each evaluated on the same clean valid / test
parts (valid drives early stopping). ``-apr`` variants add APR adversarial training
(``adversarial_eps`` / ``adversarial_weight``), ``clrec-denoise`` the truncated loss
(``denoise_drop_rate``). The change at the largest rate gets a 95 % interval from a paired
bootstrap over the test users (the same draws for every model, so clrec against LightGCN is a
paired comparison). A model's curve is kept in
``OUT/MODEL/robustness.json`` and reused when rerun with the same settings, so an interrupted
run resumes. Prints one Markdown table (NDCG@10 and its relative drop against the clean fit).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from machine import commit, cpu_name, publish

from clrec.config import RunConfig
from clrec.robustness import (
    RESULT_NAME,
    NoiseConfig,
    bootstrap_changes,
    noise_curve,
    parse_rates,
    run_label,
)

ROOT = Path(__file__).resolve().parent.parent
TRAINED = {"bpr", "lightgcn", "clrec"}  # models with epochs, threads and a time limit
# name → (registered model, defence: "apr" = adversarial_eps / _weight from --apr-eps /
# --apr-weight; "denoise" = the truncated loss, denoise_drop_rate from --denoise-rate)
VARIANTS: dict[str, tuple[str, str | None]] = {
    "clrec": ("clrec", None),
    "ease": ("ease", None),
    "lightgcn": ("lightgcn", None),
    "bpr": ("bpr", None),
    "lightgcn-apr": ("lightgcn", "apr"),
    "bpr-apr": ("bpr", "apr"),
    "clrec-apr": ("clrec", "apr"),
    "clrec-denoise": ("clrec", "denoise"),
}
DEFAULT_MODELS = "clrec,clrec-apr,clrec-denoise,ease,lightgcn,lightgcn-apr,bpr,bpr-apr"
RESAMPLES = 2000  # bootstrap resamples of the test users


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-latest-small", help="preset in configs/")
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--rates", default="0.05,0.1,0.2", help="fake shares of train")
    parser.add_argument("--seed", type=int, default=2020, help="seed of the fake interactions")
    parser.add_argument("--time-cap", type=float, help="minutes of training per fit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    parser.add_argument("--apr-eps", type=float, default=0.03, help="APR step per row")
    parser.add_argument("--apr-weight", type=float, default=1.0, help="APR loss weight")
    parser.add_argument(
        "--denoise-rate", type=float, default=0.2, help="truncated loss: share of pairs left out"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, help="default: runs/robustness/DATASET")
    parser.add_argument("--append", type=Path, help="append the table to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return args


def variant_config(args: argparse.Namespace, variant: str) -> RunConfig:
    """The preset for ``variant``'s model with the bench's settings on top."""
    model, defence = VARIANTS[variant]
    own = ROOT / "configs" / f"{args.dataset}-{model}.yaml"
    base = ROOT / "configs" / f"{args.dataset}.yaml"
    overrides: list[str] = []
    path = own if own.is_file() else base
    if not path.is_file():
        raise SystemExit(f"no preset {base}")
    if path == base and RunConfig.from_yaml(base).model.name != model:
        overrides += [f"model.name={model}", "model.params={}"]
    overrides += ["evaluation.progress=false", "report=false", *args.overrides]
    if model in TRAINED:
        overrides += ["model.params.progress=false", f"model.params.num_threads={args.threads}"]
        if args.time_cap is not None:
            overrides.append(f"model.params.time_limit_minutes={args.time_cap}")
    if defence == "apr":
        overrides += [
            f"model.params.adversarial_eps={args.apr_eps}",
            f"model.params.adversarial_weight={args.apr_weight}",
        ]
    if defence == "denoise":
        overrides.append(f"model.params.denoise_drop_rate={args.denoise_rate}")
    return RunConfig.from_yaml(path, overrides)


def measure(
    args: argparse.Namespace, variant: str, noise: NoiseConfig, out: Path
) -> dict[str, Any]:
    """``variant``'s noise curve, reused from ``out`` when it was measured with these settings."""
    config = variant_config(args, variant)
    saved_path = out / variant / RESULT_NAME
    if saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        same_noise = saved["noise"] == json.loads(json.dumps(asdict(noise)))
        if same_noise and saved["config"] == config.to_plain():
            print(f"== {variant}: measured already, kept ({saved_path})", flush=True)
            result: dict[str, Any] = saved
            return result
    print(f"== {variant} ({time.strftime('%H:%M:%S')})", flush=True)
    started = time.perf_counter()
    result = noise_curve(config, noise, args.data_root, out / variant)
    for run in result["runs"]:
        print(
            f"   rate {run['rate']:.2f}: ndcg@10 {run['test']['ndcg@10']:.4f} "
            f"drop {run['drop']:+.1%} (best epoch {run['best_epoch']}, "
            f"fit {run['fit_seconds']:.0f} s)",
            flush=True,
        )
    print(f"   {time.perf_counter() - started:.0f} s", flush=True)
    return result


def _git(*command: str) -> str:
    done = subprocess.run(["git", *command], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"


def percent(share: float, signed: bool = False) -> str:
    """``0.2`` → ``20 %``; signed: ``-0.013`` → ``−1.3 %``."""
    if not signed:
        return f"{share * 100:g} %"
    return f"{share * 100:+.1f} %".replace("-", "−")


def changes_at(out: Path, variants: list[str], rate: float, metric: str) -> dict[str, np.ndarray]:
    """Bootstrap resamples of each model's relative change of ``metric`` at ``rate`` against its
    clean fit, over the test users every model shares (``bootstrap_changes``)."""
    tables = {}
    for variant in variants:
        pair = []
        for label in ("clean", run_label(rate)):
            frame = pd.read_parquet(out / variant / label / "per_user_test.parquet")
            pair.append(frame.set_index("user")[metric])
        tables[variant] = pair
    shared = sorted(set.intersection(*(set(t.index) for pair in tables.values() for t in pair)))
    pairs = {
        name: (clean.loc[shared].to_numpy(), noisy.loc[shared].to_numpy())
        for name, (clean, noisy) in tables.items()
    }
    return bootstrap_changes(pairs, resamples=RESAMPLES, seed=0)  # reproducible from the runs


def interval(values: np.ndarray) -> str:
    """``(−4.1 … −0.3 %)``: the central 95 % of bootstrap values, as percentages."""
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return f"{percent(float(low), signed=True)} … {percent(float(high), signed=True)}"


def table(
    args: argparse.Namespace, noise: NoiseConfig, results: dict[str, dict[str, Any]], out: Path
) -> str:
    """The Markdown section: settings, one row per model, and clrec against LightGCN at the
    largest rate."""
    rates = [rate for rate in noise.curve if rate > 0]
    top = max(rates, default=0.0)
    changes = changes_at(out, list(results), top, noise.metric) if top > 0 else {}
    checkout = commit()
    if _git("status", "--porcelain", "--untracked-files=no"):
        checkout += "+dirty"
    cap = f"{args.time_cap:g} min" if args.time_cap is not None else "none"
    command = " ".join([".venv/bin/python", "bench/robustness.py", *sys.argv[1:]])
    lines = [
        f"### Robustness to random fake interactions — {args.dataset}",
        "",
        f"Machine: {machine()}; {args.threads} torch thread(s) per fit; commit {checkout}; "
        f"time cap {cap} per fit; noise seed {noise.seed}; APR eps {args.apr_eps:g}, "
        f"weight {args.apr_weight:g}; {datetime.date.today().isoformat()}.  ",
        f"Command: `{command}`",
        "",
        "Test NDCG@10 of the model fitted on train + rate × |train| uniformly random fake "
        "(user, item) pairs (train part only; valid and test clean, the same for every rate), "
        "and in brackets its change against the clean fit. † = a fit stopped by the time cap.",
        "",
        "| model | clean | "
        + " | ".join(f"+{percent(rate)} noise" for rate in rates)
        + f" | change at +{percent(top)}, 95 % CI |",
        "|---|---:|" + "---:|" * len(rates) + "---:|",
    ]
    for variant, result in results.items():
        cells = []
        for run in result["runs"]:
            value = f"{run['test']['ndcg@10']:.4f}"
            if run["rate"] > 0:
                value += f" ({percent(-run['drop'], signed=True)})"
            cells.append(value + (" †" if run["stopped_by_time"] else ""))
        cells.append(interval(changes[variant]) if variant in changes else "–")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    drops = {name: result["runs"][-1]["drop"] for name, result in results.items() if top > 0}
    for name in [name for name in drops if name.startswith("clrec")]:
        if "lightgcn" not in drops:
            break
        clrec, lightgcn = drops[name], drops["lightgcn"]
        verdict = "loses less than" if clrec < lightgcn else "does not lose less than"
        lines += [
            "",
            f"At {percent(top)} noise {name}'s NDCG@10 changes by "
            f"{percent(-clrec, signed=True)}, LightGCN's by {percent(-lightgcn, signed=True)}: "
            f"{name} {verdict} LightGCN ({name}'s change minus LightGCN's, paired bootstrap "
            f"95 % CI: {interval(changes[name] - changes['lightgcn']).replace('%', 'points')}).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    noise = NoiseConfig(rates=parse_rates(args.rates), seed=args.seed)
    out = args.out or ROOT / "runs" / "robustness" / args.dataset
    results = {variant: measure(args, variant, noise, out) for variant in args.models.split(",")}
    section = table(args, noise, results, out)
    publish(section, args.append)


if __name__ == "__main__":
    main()
