"""What each part of a trained clrec model scores on its run's test split.

    python bench/clrec_parts.py runs/ml1m-clrec

Re-scores the saved model three ways on the saved split (no retraining): the contrastive
embeddings alone (prior weight 0), the EASE prior alone, and the fused model as trained
(the weight chosen on validation). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.evaluation.evaluator import Evaluator
from clrec.models.clrec import ClrecRecommender
from clrec.models.registry import load_model

METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    config = RunConfig.from_yaml(args.run / "config.yaml", ["evaluation.progress=false"])
    dataset = Dataset.load(args.run / "dataset")
    split = Split.load(args.run / "split")
    model = load_model(args.run / "model")
    if not isinstance(model, ClrecRecommender):
        raise SystemExit(f"{args.run}: not a clrec run")
    evaluator = Evaluator(dataset, split.train, config.evaluation)
    chosen = model.prior_scale
    rows = []
    variants = [("embeddings alone (prior weight 0)", 0.0), (f"fused (weight {chosen:g})", chosen)]
    for label, weight in variants:
        model.prior_scale = weight
        rows.append((label, evaluator.evaluate(model, split.test, [split.train, split.valid])))
    if model.prior is not None:
        rows.append(
            (
                "EASE prior alone",
                evaluator.evaluate(model.prior, split.test, [split.train, split.valid]),
            )
        )
    print(f"`python bench/clrec_parts.py {args.run}` — test split\n")
    print("| part | " + " | ".join(METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for label, result in rows:
        print(f"| {label} | " + " | ".join(f"{result.metrics[m]:.4f}" for m in METRICS) + " |")
    (args.run / "parts.json").write_text(
        json.dumps({label: result.metrics for label, result in rows}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
