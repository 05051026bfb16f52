"""A whole fit of the default clrec model on a medium catalogue with titles, timed end to end.

Issue 18's medium case: a log of ~440k interactions from ~50k users on ~17k items, each item
with a title — the shape of most teams' own data — trained with the model's defaults on
2 cores. None of ``../shared/data`` has that shape, so the catalogue is synthetic, built so
that content and behaviour both carry signal (otherwise "converged" means "stopped at once"):

* every item has one of ``--topics`` topics and a Zipf popularity; its title is three of its
  topic's eight words plus two words common to every topic;
* every user has a topic and a Lomax activity (at least 5 draws); each interaction is an
  item of the user's topic with probability ``--focus``, else any item, drawn by
  popularity; repeats are dropped and the shortfall drawn again.

The data set is saved as a clrec dataset folder, then ``clrec train`` runs the preset
(``--config``, default ``configs/ml-latest-small.yaml``: random 8:1:1 split, the model's
defaults) on it in its own process, under ``bench/peers/measure.py`` (wall time, peak RSS).
The section printed (and appended with ``--append``) gives the fit's phases from the run's
``metrics.json``: encoding, epochs and seconds per epoch, the EASE-prior search, evaluation.

    .venv/bin/python bench/medium_catalogue.py --out /tmp/medium --threads 2
    .venv/bin/python bench/medium_catalogue.py --users 5000 --items 2000 --interactions 40000 \\
        --out /tmp/medium-smoke --set model.params.epochs=2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import commit, cpu_name, publish
from serve_load import clrec_command

from clrec.data.schema import Dataset

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMMON_WORDS = ["classic", "deluxe", "edition", "original", "premium", "series", "new", "set"]


def topic_words(topics: int) -> list[list[str]]:
    """Eight made-up words per topic, distinct across topics."""
    syllables = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze"]
    words: list[list[str]] = []
    for topic in range(topics):
        row = []
        for slot in range(8):
            code = topic * 8 + slot
            row.append("".join(syllables[(code // 10**k) % 10] for k in range(4)))
        words.append(row)
    return words


def build(
    users: int, items: int, interactions: int, topics: int, focus: float, seed: int
) -> Dataset:
    """The synthetic catalogue described in the module docstring."""
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(0, topics, items)  # (I,)
    popularity = rng.permutation(np.arange(1, items + 1, dtype=np.float64) ** -0.9)  # (I,)
    overall = np.cumsum(popularity) / popularity.sum()
    by_topic = [np.flatnonzero(item_topic == t) for t in range(topics)]
    topic_cdf = [np.cumsum(popularity[m]) / popularity[m].sum() for m in by_topic]

    activity = rng.pareto(1.5, users) + 1e-9  # (U,) Lomax
    activity = np.minimum(activity, 50 * activity.mean())
    activity /= activity.sum()
    user_topic = rng.integers(0, topics, users)  # (U,)

    def draw(owner: np.ndarray) -> pd.DataFrame:
        """One item for each entry of ``owner`` (N,): its user's topic or any, by popularity."""
        focused = rng.random(len(owner)) < focus
        drawn = np.minimum(np.searchsorted(overall, rng.random(len(owner))), items - 1)
        for topic in range(topics):
            rows = np.flatnonzero(focused & (user_topic[owner] == topic))
            picks = np.searchsorted(topic_cdf[topic], rng.random(len(rows)))
            drawn[rows] = by_topic[topic][np.minimum(picks, len(by_topic[topic]) - 1)]
        return pd.DataFrame({"user": owner, "item": drawn})

    counts = 5 + rng.multinomial(max(0, interactions - 5 * users), activity)  # (U,)
    frame = draw(np.repeat(np.arange(users), counts)).drop_duplicates()
    while len(frame) < interactions:  # repeats dropped: draw the shortfall again
        extra = draw(rng.choice(users, interactions - len(frame), p=activity))
        frame = pd.concat([frame, extra]).drop_duplicates()
    frame = frame.sort_values(["user"], kind="stable").reset_index(drop=True)
    frame["timestamp"] = 1_600_000_000 + np.arange(len(frame))

    words = topic_words(topics)
    titles = [
        " ".join(
            [*rng.choice(words[item_topic[i]], 3, replace=False), *rng.choice(COMMON_WORDS, 2)]
        )
        for i in range(items)
    ]
    content = pd.DataFrame({"id": np.arange(items), "title": titles})
    content = content[content["id"].isin(frame["item"])]
    return Dataset.from_external(
        "medium-synthetic",
        frame,
        item_content=content,
        item_fields={"title": "text"},
        source=f"bench/medium_catalogue.py seed {seed}",
    )


def section(args: argparse.Namespace, measured: dict[str, Any], run_dir: Path) -> str:
    """The Markdown section: the data, the fit's phases, the result."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = json.loads((run_dir / "model" / "model.json").read_text())
    dataset = json.loads((run_dir / "dataset" / "dataset.json").read_text())
    history = metrics["history"]
    train_s = sum(float(e["seconds"]) for e in history)
    eval_s = sum(float(e.get("eval_seconds", 0.0)) for e in history)
    fit_s = float(metrics["timing"]["fit_seconds"])
    searched = model.get("prior_search", [])
    test = metrics["test"]
    counts = dataset.get("counts", {})
    shape = ", ".join(f"{v:,} {k}" for k, v in counts.items()) or "see dataset.json"
    lines = [
        f"Machine: {cpu_name()}, {args.threads} torch thread(s); commit {commit()}. "
        f"Data: synthetic ({shape}; {args.topics} topics, focus {args.focus}, seed "
        f"{args.seed}), titles encoded by the default text encoder.  ",
        f"Command: `.venv/bin/python bench/medium_catalogue.py {' '.join(args.argv)}`",
        "",
        "| whole command | fit | epochs | train s / epoch | s / validation pass | "
        "encoding + prior search + setup | prior passes | peak RSS MB | test R@10 | "
        "test N@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {measured['wall_seconds'] / 60:.1f} min | {fit_s / 60:.1f} min | {len(history)} | "
        f"{train_s / max(1, len(history)):.1f} | {eval_s / max(1, len(history)):.1f} | "
        f"{(fit_s - train_s - eval_s) / 60:.1f} min | {len(searched)} | "
        f"{measured['peak_rss_mb']:.0f} | {test['recall@10']:.4f} | {test['ndcg@10']:.4f} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=17_000)
    parser.add_argument("--interactions", type=int, default=440_000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--focus", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(ROOT / "configs" / "ml-latest-small.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="more clrec --set overrides")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--append", type=Path, help="append the section to this Markdown file")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv

    data_dir = args.out / "data"
    if not (data_dir / "dataset.json").is_file():
        dataset = build(
            args.users, args.items, args.interactions, args.topics, args.focus, args.seed
        )
        dataset.save(data_dir)
    run_dir = args.out / "run"
    overrides = [
        f"data.name={data_dir}",
        "data.min_rating=null",
        f"model.params.num_threads={args.threads}",
        *args.set,
    ]
    command = [*clrec_command(), "train", args.config]
    for override in overrides:
        command += ["--set", override]
    command += ["--out", str(run_dir)]
    measure = args.out / "measure.json"
    subprocess.run(
        [sys.executable, str(HERE / "peers" / "measure.py"), str(measure), "--", *command],
        check=True,
    )
    measured = json.loads(measure.read_text())
    publish(section(args, measured, run_dir), args.append)


if __name__ == "__main__":
    main()
