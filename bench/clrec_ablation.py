"""Ablation of the clrec model: the same config and split with one component off at a time.

    python bench/clrec_ablation.py configs/amazon-scientific.yaml --seeds 3 --out runs/abl-sci

Variants: the full config; each contrastive term off in turn (intra-user: α = 0; cross-user:
α = 1; both: contrastive weight 0; alignment; augmentation; social) — only terms the config
switches on; content off (a pure collaborative model); and the EASE prior off. Every variant
is a full ``run_experiment`` (early stopping on validation NDCG@10), so the test figures
compare like with like; ``--seeds N`` repeats each variant with N model seeds (same split)
because single-seed differences of a few per cent are noise on the small sets. Prints one
Markdown table (mean ± std of the test metrics, the change of mean NDCG@10 against the full
model, and cold-item metrics where the split has them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from clrec.config import RunConfig
from clrec.data.registry import default_data_root
from clrec.experiment import run_experiment
from clrec.models.clrec import ClrecConfig


def variants(params: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(label, --set overrides) for the full model and each component switched off."""
    config = ClrecConfig.from_params(params)  # the effective values, defaults included
    weights = config.weights
    result: list[tuple[str, list[str]]] = [("full", [])]
    if weights.contrastive > 0:
        result += [
            ("- intra-user (α = 0)", ["model.params.weights.alpha=0.0"]),
            ("- cross-user (α = 1)", ["model.params.weights.alpha=1.0"]),
            ("- intra and cross-user", ["model.params.weights.contrastive=0.0"]),
        ]
    for term in ("alignment", "augmentation", "social"):
        if getattr(weights, term) > 0:
            result.append((f"- {term}", [f"model.params.weights.{term}=0.0"]))
    if config.content.modalities:
        result.append(("- content (ID only)", ["model.params.content.modalities=[]"]))
    if config.prior != "none":
        result.append(("- EASE prior", ["model.params.prior=none"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--only", action="append", default=None, help="run these labels only")
    parser.add_argument("--seeds", type=int, default=1, help="model seeds per variant")
    args = parser.parse_args()

    data_root = args.data_root or default_data_root(os.environ.get("CLREC_DATA"))
    base = RunConfig.from_yaml(args.config, args.overrides)
    first_seed = ClrecConfig.from_params(base.model.params).seed
    rows: list[dict[str, Any]] = []
    for label, extra in variants(base.model.params):
        if args.only and label not in args.only:
            continue
        runs = []
        for seed in range(first_seed, first_seed + args.seeds):
            overrides = [*args.overrides, *extra, f"model.params.seed={seed}"]
            config = RunConfig.from_yaml(
                args.config, [*overrides, "report=false", "evaluation.progress=false"]
            )
            name = label.replace(" ", "_").replace("(", "").replace(")", "").replace("=", "")
            started = time.perf_counter()
            results = run_experiment(config, args.out / f"{name}-seed{seed}", data_root)
            runs.append((results, time.perf_counter() - started))
            print(f"{label} seed {seed}: test ndcg@10 {results['test']['ndcg@10']:.4f}", flush=True)
        rows.append(_summarise(label, extra, runs))

    print(f"\n`python bench/clrec_ablation.py {args.config} --seeds {args.seeds}` — ", end="")
    print(f"{platform.machine()}, Python {platform.python_version()}; mean ± std over seeds\n")
    print(_table(rows))
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))


METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
COLD = ("recall@20", "ndcg@20")


def _summarise(
    label: str, extra: list[str], runs: list[tuple[dict[str, Any], float]]
) -> dict[str, Any]:
    """Mean and std of the test (and cold-item) metrics over one variant's seeds."""
    row: dict[str, Any] = {"variant": label, "overrides": extra, "seeds": len(runs)}
    for name in METRICS:
        values = np.array([r["test"][name] for r, _ in runs])
        row[name] = (float(values.mean()), float(values.std()))
    colds = [r["segments"]["test"].get("cold_items") for r, _ in runs]
    if all(colds):
        for name in COLD:
            values = np.array([c[name] for c in colds if c])
            row[f"cold {name}"] = (float(values.mean()), float(values.std()))
    epochs = [max(r["history"], key=lambda e: e.get("ndcg@10", -1.0))["epoch"] for r, _ in runs]
    row["best epoch"] = float(np.mean(epochs))
    row["minutes"] = float(np.mean([seconds for _, seconds in runs]) / 60)
    return row


def _table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table; Δ is the change of the mean key metric against the full model
    (NDCG@10, or cold-item NDCG@20 on a cold-item split)."""
    cold = [f"cold {name}" for name in COLD if all(f"cold {name}" in r for r in rows)]
    key = "cold ndcg@20" if cold else "ndcg@10"
    full = rows[0][key][0] if rows and rows[0]["variant"] == "full" else None
    columns = cold or list(METRICS)  # a cold-item split holds no warm test item
    lines = [
        "| variant | " + " | ".join(columns) + f" | Δ {key} | best epoch | minutes / run |",
        "|---|" + "---:|" * (len(columns) + 3),
    ]
    for row in rows:
        cells = [f"{row[c][0]:.4f} ± {row[c][1]:.4f}" for c in columns]
        mean = row[key][0]
        delta = f"{(mean - full) / full:+.1%}" if full else "–"
        lines.append(
            f"| {row['variant']} | "
            + " | ".join(cells)
            + f" | {delta} | {row['best epoch']:.0f} | {row['minutes']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
