"""One experiment run: data → split → fit → evaluate → a run folder with metrics and report.

A run folder holds everything needed to re-evaluate or compare it later::

    config.yaml          the resolved RunConfig
    dataset/  split/     the filtered data set and its saved split
    model/               the fitted model (``model.json`` names its class)
    metrics.json         valid / test metrics, segments, history, timings, data summary
    per_user_valid.parquet, per_user_test.parquet   per-user metrics (significance tests)
    per_user_test_cold.parquet   cold-item splits: per-user metrics over the test cold items
    summary.md, report.html
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from clrec.config import DataConfig, RunConfig, TableConfig
from clrec.data import filters, registry
from clrec.data.describe import describe
from clrec.data.schema import Dataset
from clrec.data.splits import Split, split_dataset
from clrec.distributed import is_main
from clrec.errors import ClrecError
from clrec.evaluation.evaluator import SEGMENT_METRICS, EvaluationResult, Evaluator
from clrec.evaluation.metrics import paired_test
from clrec.models.base import Recommender, Validator
from clrec.models.embedding import EmbeddingModel
from clrec.models.registry import build_model, load_model


def prepare_data(data: DataConfig, data_root: Path | None) -> Dataset:
    """Load the configured data set and apply its filters (what ``clrec train`` and
    ``clrec data split`` both read, so the two always see the same data set)."""
    dataset = registry.load(data.name, data_root) if data.path is None else read_own(data)
    if data.min_rating is not None:
        dataset = filters.binarize(dataset, data.min_rating)
    if data.k_core > 0:
        dataset = filters.k_core(dataset, data.k_core, data.k_core)
    if data.drop_unused:
        dataset = filters.compact(dataset)
    return dataset


def read_own(data: DataConfig) -> Dataset:
    """The data set of ``data.path`` (and its ``items`` / ``users`` tables) through the
    generic reader, with the config's columns and policies."""
    from clrec.data.readers.generic import ContentSource, GenericSource, read_generic

    def table(config: TableConfig | None) -> ContentSource | None:
        if config is None:
            return None
        return ContentSource(config.path, config.id, config.fields, config.sep, data.encoding)

    assert data.path is not None
    source = GenericSource(
        data.path,
        mapping=data.columns or None,
        sep=data.sep,
        encoding=data.encoding,
        duplicates=data.duplicates,
        item_content=table(data.items),
        user_content=table(data.users),
        unknown_content=data.unknown_content,
        time_unit=data.time_unit,
    )
    return read_generic(source)


def validation_scorer(evaluator: Evaluator, split: Split) -> Validator:
    """Scores a model on the validation part only, training items masked (the test part is
    never touched); on a cold-item split every validation target is a cold item, so users
    are ranked over the cold validation items only."""

    def validator(candidate: Recommender) -> dict[str, float]:
        return evaluator.evaluate(
            candidate, split.valid, [split.train], candidates=split.valid_cold_items
        ).metrics

    return validator


def fit_model(
    config: RunConfig, dataset: Dataset, split: Split
) -> tuple[Recommender, Evaluator, float]:
    """Build the configured model and fit it on ``split.train``, early-stopping on the valid
    part through a quiet evaluator; returns the model, the evaluator for its reported passes
    and the fit's seconds."""
    model = build_model(config.model.name, config.model.params)
    evaluator = Evaluator(dataset, split.train, config.evaluation)
    quiet = Evaluator(dataset, split.train, replace(config.evaluation, progress=False))
    started = time.perf_counter()
    model.fit(dataset.with_interactions(split.train), validation_scorer(quiet, split))
    return model, evaluator, time.perf_counter() - started


def run_experiment(
    config: RunConfig, out: str | Path, data_root: Path | None = None
) -> dict[str, Any]:
    """Fit and evaluate the configured model; write the run folder and return its metrics.

    In a distributed run (see :mod:`clrec.distributed`) every rank prepares the data
    and trains; rank 0 alone writes, evaluates and returns the metrics, the others ``{}``.
    """
    run_dir = Path(out)
    main = is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_plain(), sort_keys=False))
    dataset = prepare_data(config.data, data_root)
    split = split_dataset(dataset, config.split)
    split.verify(dataset)
    if main:
        dataset.save(run_dir / "dataset")
        split.save(run_dir / "split")

    model, evaluator, fit_seconds = fit_model(config, dataset, split)
    if not main:
        return {}
    model.save(run_dir / "model")

    results = evaluate_and_write(run_dir, model, evaluator, split)
    results.update(
        {
            "model": model.name,
            "dataset": describe(dataset),
            "split": split.summary(),
            "history": model.history,
            "config": config.to_plain(),
        }
    )
    if isinstance(model, EmbeddingModel) and model.featurizer is not None:
        results["content_fields"] = model.featurizer.used_fields()  # field → modality
    results["timing"]["fit_seconds"] = round(fit_seconds, 3)
    return write_metrics(run_dir, results, config.report)


def reevaluate(run_dir: str | Path) -> dict[str, Any]:
    """Evaluate a saved run again from its folder (model, data and split as saved)."""
    root = Path(run_dir)
    metrics_path = root / "metrics.json"
    if not metrics_path.is_file():
        raise ClrecError(f"{root}: not a clrec run folder (no metrics.json)")
    config = RunConfig.from_yaml(root / "config.yaml")
    dataset = Dataset.load(root / "dataset")
    split = Split.load(root / "split")
    model = load_model(root / "model")
    previous = json.loads(metrics_path.read_text())
    results = evaluate_and_write(
        root, model, Evaluator(dataset, split.train, config.evaluation), split
    )
    previous.update({k: v for k, v in results.items() if k != "timing"})
    previous.setdefault("timing", {}).update(results["timing"])
    return write_metrics(root, previous, config.report)


def compare_runs(run_a: str | Path, run_b: str | Path, metric: str = "ndcg@10") -> dict[str, Any]:
    """Paired per-user test of ``metric`` on the test users two runs share."""
    frames = []
    for run in (run_a, run_b):
        path = Path(run) / "per_user_test.parquet"
        if not path.is_file():
            raise ClrecError(f"{run}: no per_user_test.parquet (not a clrec run folder?)")
        frame = pd.read_parquet(path)
        if metric not in frame.columns:
            known = [c for c in frame.columns if "@" in c]
            raise ClrecError(f"{path}: no metric {metric!r}; known: {', '.join(known)}")
        frames.append(frame.set_index("user")[metric])
    joined = pd.concat(frames, axis=1, join="inner", keys=["a", "b"])
    if joined.empty:
        raise ClrecError("the two runs share no test users; were they made on the same split?")
    result = paired_test(joined["a"].to_numpy(), joined["b"].to_numpy())
    return {"metric": metric, "run_a": str(run_a), "run_b": str(run_b), **result}


def evaluate_and_write(
    run_dir: Path, model: Recommender, evaluator: Evaluator, split: Split
) -> dict[str, Any]:
    """Evaluate ``model`` on the valid and test parts (and, on a cold-item split, over each
    part's cold items), write the per-user tables to ``run_dir`` and return the metrics,
    segments and timings."""
    started = time.perf_counter()
    valid = evaluator.evaluate(model, split.valid, [split.train])
    valid_seconds = time.perf_counter() - started
    started = time.perf_counter()
    test = evaluator.evaluate(model, split.test, [split.train, split.valid])
    test_seconds = time.perf_counter() - started
    valid.per_user.to_parquet(run_dir / "per_user_valid.parquet", index=False)
    test.per_user.to_parquet(run_dir / "per_user_test.parquet", index=False)
    segments: dict[str, dict[str, Any]] = {"valid": valid.segments, "test": test.segments}
    timing = {
        "valid_evaluate_seconds": round(valid_seconds, 3),
        "test_evaluate_seconds": round(test_seconds, 3),
    }
    # cold-item split: also rank each part's users over that part's cold items only
    cold_parts = (
        ("valid", split.valid, [split.train], split.valid_cold_items),
        ("test", split.test, [split.train, split.valid], split.test_cold_items),
    )
    for part, target, exclude, cold in cold_parts:
        if cold is None or not len(cold):
            continue
        started = time.perf_counter()
        result = evaluator.evaluate(
            model, target, exclude, candidates=cold, candidate_label="cold items of this part"
        )
        timing[f"{part}_cold_evaluate_seconds"] = round(time.perf_counter() - started, 3)
        segments[part]["cold_items"] = _cold_segment(result, evaluator.config.ks)
        if part == "test":
            result.per_user.to_parquet(run_dir / "per_user_test_cold.parquet", index=False)
    return {
        "protocol": test.protocol,
        "valid": valid.metrics,
        "test": test.metrics,
        "segments": segments,
        "timing": timing,
    }


def _cold_segment(result: EvaluationResult, ks: tuple[int, ...]) -> dict[str, Any]:
    """A cold-only pass as one flat segment: the segment metrics at every K, users, protocol.

    Only the metrics every other segment carries (recall, ndcg, hit), so the report's segment
    table and bars stay comparable; the full per-user table is written beside it.
    """
    keys = [f"{m}@{k}" for m in SEGMENT_METRICS for k in ks]
    row: dict[str, Any] = {key: result.metrics[key] for key in keys if key in result.metrics}
    row["users"] = result.metrics["users"]
    row["protocol"] = result.protocol
    return row


def write_metrics(run_dir: Path, results: dict[str, Any], report: bool) -> dict[str, Any]:
    """Write ``metrics.json`` (and with ``report`` ``summary.md`` / ``report.html``)."""
    (run_dir / "metrics.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if report:
        from clrec.evaluation.report import write_report

        write_report(results, run_dir)
    return results
