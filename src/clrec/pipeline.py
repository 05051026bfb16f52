"""The main job the README's first command runs: describe, split, fit, evaluate, write results.

Until the content models land it fits the popularity baseline; the result folder holds the
data summary, the saved split, the model and ``metrics.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clrec.data import filters, registry
from clrec.data.describe import describe
from clrec.data.splits import SplitConfig, split_dataset
from clrec.evaluation.evaluator import EvaluationConfig, evaluate
from clrec.models.popularity import Popularity


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of the main job; defaults reproduce the README's first command."""

    dataset: str = registry.BUNDLED
    data_root: Path | None = None
    rating_threshold: float | None = None  # None: every rating counts as a positive
    split: SplitConfig = field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    out: Path = Path("runs/quickstart")


def run_quickstart(config: QuickstartConfig) -> dict[str, Any]:
    """Run the main job and return what it wrote to ``config.out/metrics.json``."""
    dataset = registry.load(config.dataset, config.data_root)
    if config.rating_threshold is not None:
        dataset = filters.binarize(dataset, config.rating_threshold)
    summary = describe(dataset)
    split = split_dataset(dataset, config.split)
    split.verify(dataset)
    out = Path(config.out)
    split.save(out / "split")
    train = dataset.with_interactions(split.train)
    model = Popularity().fit(train)
    model.save(out / "model")
    valid = dataset.with_interactions(split.valid)
    test = dataset.with_interactions(split.test)
    results: dict[str, Any] = {
        "dataset": summary,
        "split": split.summary(),
        "model": model.name,
        "valid": evaluate(model, dataset, valid, exclude=[train], config=config.evaluation),
        "test": evaluate(model, dataset, test, exclude=[train, valid], config=config.evaluation),
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    (out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
