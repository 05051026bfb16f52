"""The ranking stage's per-request cost in its serving form.

Loads an artifact exported with a ranking stage (``clrec export RUN --ranker RANKER``) and,
for ``--users`` of its trained users, times what ``rerank=true`` adds to a request:
:meth:`clrec.ranking.stage.RerankStage.rank` — the cheap retrievers' candidates, the feature
rows and the LambdaRank scores — given the model's own scores of the exported catalogue
(computed before the clock starts, as the service computes them for retrieval anyway).
Prints the median and p95 milliseconds and the median number of candidates.

    python bench/rerank_latency.py ARTIFACT [--users 50] [--append [BENCHMARKS.md]]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from machine import commit, cpu_name, publish

from clrec.serving.artifact import load_artifact


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--append", nargs="?", type=Path, const=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)

    artifact = load_artifact(args.artifact)
    stage = artifact.rerank_stage()
    model = artifact.model
    rows = np.arange(stage.n_items, dtype=np.int64)
    vectors = model.item_vectors()[rows]  # (I, D) the exported catalogue
    step = max(1, len(artifact.user_ids) // args.users)
    times, sizes = [], []
    for user in range(0, len(artifact.user_ids), step)[: args.users]:
        scores = model.score_user(model.user_state(user), vectors, rows)  # (I,)
        history = stage.history(artifact.user_ids[user], np.zeros(0, dtype=np.int64))
        seen = artifact.seen_items(user)
        started = time.perf_counter()
        items, _ = stage.rank(scores, history, seen)
        times.append((time.perf_counter() - started) * 1000)
        sizes.append(len(items))
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    text = (
        f"Machine: {cpu_name()}; commit {commit()}. Command: `{command}`.\n\n"
        "| artifact | users | candidates (median) | median ms | p95 ms |\n"
        "|---|---|---|---|---|\n"
        f"| {args.artifact.name} | {len(times)} | {np.median(sizes):.0f} "
        f"| {np.median(times):.2f} | {np.percentile(times, 95):.2f} |\n"
    )
    publish(text, args.append, "## Ranking stage: per-request cost (bench/rerank_latency.py)")


if __name__ == "__main__":
    main()
