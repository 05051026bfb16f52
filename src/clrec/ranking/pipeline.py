"""Retrieve → rank on a saved run: learn to rank the union of several retrievers' candidates.

:func:`train_ranker` reads a run folder (data set, split, retrieval model) and builds two
folds, each "what the retrievers may read → what they must find":

* **training** — history ``split.train``, labels ``split.valid``: the run's model was fitted
  on ``split.train`` only, so its scores of the validation items are honest; the cheap
  retrievers (:mod:`clrec.ranking.candidates`) and the feature tables
  (:mod:`clrec.ranking.features`) are fitted on the same history;
* **test** — history ``split.train`` + ``split.valid``, labels ``split.test``; the cheap
  retrievers and tables are refitted on that history (the run's model is what it is).

Test interactions never reach training (the leakage test changes them and checks the
ranker is the same). A LightGBM LambdaRank model (:mod:`clrec.ranking.ltr`) learns from the
training fold, early-stopped on a held-out group of its users; it is evaluated on **every**
test user: NDCG / Recall @k of its order of the candidates against the run's model alone
(its own top-k over the whole catalogue, as the evaluator ranks), a paired bootstrap
interval of the change, and an ablation (without the language-model features, without the
tag features, without the click model, without each retriever: its candidates and columns).

The optional click model (:mod:`clrec.ranking.click`) is trained first and becomes the
``click`` feature; its own classification metrics go into the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from clrec.errors import ClrecError
from clrec.ranking.click import train_click_model
from clrec.ranking.cross_encoder import CrossEncoderRanker
from clrec.ranking.evaluate import evaluate_stage, label_recall
from clrec.ranking.folds import Content, RankerSettings, RunParts, build_fold, fit_on
from clrec.ranking.ltr import LambdaRanker

RANKER_DIR = "ranker"
CLICK_DIR = "click"
REPORT_FILE = "report.json"
SETTINGS_FILE = "rank.json"


def train_ranker(run_dir: str | Path, out: str | Path, settings: RankerSettings) -> dict[str, Any]:
    """Fit the ranking stage on the run and evaluate it; writes ``out/ranker/``,
    ``out/rank.json`` (the run and the settings) and ``out/report.json``; returns the report."""
    parts = RunParts.load(run_dir)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"run": str(parts.root.resolve())}
    click = None
    if settings.click is not None:
        click, report["click_training"] = train_click_model(
            parts.dataset, parts.split, parts.retriever, settings.click
        )
        click.save(out_dir / CLICK_DIR)
    started = time.perf_counter()
    content = Content.encode(parts.dataset, settings)
    fold = build_fold(parts, content, None, parts.split.valid, settings, click)
    features_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ranker = fit_on(fold, fold.names, settings)
    report["training"] = {
        "label_users": len(fold.users),
        "candidates_per_user": float(np.diff(fold.candidates.offsets).mean()),
        "label_recall_of_candidates": label_recall(fold),
        "features_seconds": round(features_seconds, 2),
        "fit_seconds": round(time.perf_counter() - started, 2),
        **ranker.history,
        "importance": ranker.importances(),
    }
    ranker.save(out_dir / RANKER_DIR)
    (out_dir / SETTINGS_FILE).write_text(
        json.dumps({"run": str(parts.root.resolve()), "settings": settings.to_plain()}, indent=2)
        + "\n"
    )
    report.update(evaluate_stage(parts, ranker, settings, content, click, fold))
    _write_json(out_dir / REPORT_FILE, report)
    return report


def evaluate_ranker(ranker_dir: str | Path) -> dict[str, Any]:
    """Evaluate a ranker written by :func:`train_ranker` again on its run's test data (the
    ablation is not repeated); ``ranker_dir/report.json`` is updated and returned."""
    root = Path(ranker_dir)
    saved_path = root / SETTINGS_FILE
    if not saved_path.is_file():
        raise ClrecError(f"{root}: not a ranker folder (no {SETTINGS_FILE}); see clrec rank train")
    saved = json.loads(saved_path.read_text())
    settings = replace(RankerSettings.from_plain(saved["settings"]), ablation=False)
    parts = RunParts.load(saved["run"])
    ranker = LambdaRanker.load(root / RANKER_DIR)
    click = CrossEncoderRanker.load(root / CLICK_DIR) if settings.click is not None else None
    report_path = root / REPORT_FILE
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    content = Content.encode(parts.dataset, settings)
    report.update(evaluate_stage(parts, ranker, settings, content, click, None))
    _write_json(report_path, report)
    return report


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


__all__ = ["RANKER_DIR", "SETTINGS_FILE", "evaluate_ranker", "train_ranker"]
