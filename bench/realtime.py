"""Real-time users: does a user's next recommendation improve when the service folds in what
they just did?

For each data set (``--datasets``: ml-latest-small on a global time split, Amazon Office on its
own leave-one-out-by-time split) it trains the data set's preset clrec model, exports it with
the *training* interactions only as "seen" (so the held-out ones are new to the service), and
starts ``clrec serve`` twice: with real-time users (the default) and ``--frozen`` (a known
user's vector and prior stay as trained; events only exclude items). It then replays every
held-out interaction (valid and test parts) in time order through each live service: first
``GET /v1/users/{user}/recommendations?k=10``, scored against the interaction's item, then
``POST /v1/events`` with it. Reported per mode: next-item Hit@10 and NDCG@10 over the events
both services could answer (a user with neither a trained vector nor an earlier event gets a
404 in both), the same over the events that follow an earlier replayed event of the same user
(the only ones where the modes can differ), the difference with a 95 % interval from a paired
bootstrap over users (their events resampled together), and the per-event cost of the model's
update (``EmbeddingModel.add_event``, in process: µs per event, and for a trained user's first
event, which pools their training history once).

Usage::

    python bench/realtime.py [--datasets ml-latest-small amazon-office] [--data-root DIR]
        [--work-dir runs/bench-realtime] [--append [BENCHMARKS.md]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import commit, cpu_name, publish
from serve_load import Server, get_json
from stats import user_bootstrap

from clrec.config import RunConfig
from clrec.data.registry import default_data_root
from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.experiment import run_experiment
from clrec.serving.artifact import Artifact, export_artifact, load_artifact

K = 10
PRESETS: dict[str, tuple[str, list[str]]] = {
    # a global time cut: the held-out part is the last 20 % of the log, in time order
    "ml-latest-small": ("configs/ml-latest-small.yaml", ["split.scheme=temporal"]),
    "amazon-office": ("configs/amazon-office.yaml", []),
}
RESAMPLES = 2000


@dataclass
class Replay:
    """Per replayed event: its user, whether it follows an earlier replayed event of that
    user, and the service's Hit@10 / NDCG@10 (NaN: the service did not know the user)."""

    users: np.ndarray
    follows: np.ndarray
    hit: np.ndarray
    ndcg: np.ndarray
    seconds: float


def train(name: str, work: Path, data_root: Path | None) -> Path:
    """The preset's run folder (trained once, reused)."""
    run = work / name / "run"
    if (run / "metrics.json").is_file():
        return run
    path, overrides = PRESETS[name]
    config = RunConfig.from_yaml(path, [*overrides, "model.params.progress=false"])
    run_experiment(config, run, data_root)
    return run


def export_training_view(run: Path, out: Path) -> Path:
    """The run's artifact with only the training interactions as "seen": a copy of the run
    whose data set holds the train part (same users and items, so the model fits it)."""
    if (out / "artifact.json").is_file():
        return out
    view = out.parent / "run-train-only"
    shutil.rmtree(view, ignore_errors=True)
    shutil.copytree(run, view, ignore=shutil.ignore_patterns("dataset"))
    dataset = Dataset.load(run / "dataset")
    dataset.with_interactions(Split.load(run / "split").train).save(view / "dataset")
    return export_artifact(view, out, overwrite=True)


def held_out_events(run: Path) -> pd.DataFrame:
    """The valid and test interactions in time order (external ids)."""
    dataset = Dataset.load(run / "dataset")
    split = Split.load(run / "split")
    frame = pd.concat([split.valid.assign(part=0), split.test.assign(part=1)], ignore_index=True)
    clock = next((c for c in ("timestamp", "position") if c in frame.columns), None)
    order = ["part"] if clock is None else [clock, "part"]
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    return pd.DataFrame(
        {
            "user": dataset.users["id"].to_numpy()[frame["user"].to_numpy()],
            "item": dataset.items["id"].to_numpy()[frame["item"].to_numpy()],
        }
    )


def post_json(url: str, body: Any) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def replay(artifact: Path, events: pd.DataFrame, work: Path, frozen: bool) -> Replay:
    """Ask, score and post every event through one live service."""
    mode = "frozen" if frozen else "realtime"
    data = work / f"service-{mode}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    args = [str(artifact), "--data-dir", str(data), "--no-auth", "--rate-limit", "0"]
    args += ["--max-k", str(K), "--sync-interval", "0", "--log-level", "warning"]
    server = Server([*args, *(["--frozen"] if frozen else [])], data / "server.log", 600)
    n = len(events)
    hit, ndcg = np.full(n, np.nan), np.full(n, np.nan)
    follows = np.zeros(n, dtype=bool)
    active: set[str] = set()
    started = time.perf_counter()
    try:
        for row, (user, item) in enumerate(events[["user", "item"]].itertuples(index=False)):
            follows[row] = user in active
            path = urllib.parse.quote(str(user), safe="")
            status, body = get_json(f"{server.base}/v1/users/{path}/recommendations?k={K}")
            if status == 200:
                ranked = [entry["id"] for entry in body["items"]]
                if item in ranked:
                    rank = ranked.index(item)
                    hit[row], ndcg[row] = 1.0, 1.0 / np.log2(rank + 2)
                else:
                    hit[row], ndcg[row] = 0.0, 0.0
            elif status != 404:
                raise RuntimeError(f"{mode}: GET answered {status}: {body}")
            event = {"user": str(user), "item": str(item), "kind": "interaction"}
            post_json(f"{server.base}/v1/events", [event])
            active.add(user)
    finally:
        server.stop()
    users = events["user"].astype(str).to_numpy()
    return Replay(users, follows, hit, ndcg, time.perf_counter() - started)


def update_cost(
    artifact: Artifact, events: pd.DataFrame, samples: int = 2000
) -> tuple[float, float]:
    """(µs per ``add_event`` folding one more item into a user, µs for a trained user's first
    event, which also pools their training history once), medians over ``samples`` replayed
    events, in process."""
    model = artifact.model
    history = model.history_vectors()  # (I, D)
    known = events["user"].isin(artifact.user_index) & events["item"].isin(artifact.item_index)
    first, later = [], []
    for user, item in events[known].head(samples).itertuples(index=False):
        row = artifact.item_index[item]
        state = model.user_state(artifact.user_index[user])
        started = time.perf_counter()
        model.add_event(state, row, history[row])
        first.append(time.perf_counter() - started)
        fresh = model.user_state(None)  # a user who has one item so far
        model.add_event(fresh, (row + 1) % artifact.n_items, history[(row + 1) % artifact.n_items])
        started = time.perf_counter()
        model.add_event(fresh, row, history[row])
        later.append(time.perf_counter() - started)
    return float(np.median(later)) * 1e6, float(np.median(first)) * 1e6


def measure(name: str, work: Path, data_root: Path | None) -> dict[str, Any]:
    run = train(name, work, data_root)
    artifact_path = export_training_view(run, work / name / "artifact")
    events = held_out_events(run)
    live = replay(artifact_path, events, work / name, frozen=False)
    frozen = replay(artifact_path, events, work / name, frozen=True)
    answered = ~np.isnan(live.hit) & ~np.isnan(frozen.hit)
    result: dict[str, Any] = {
        "dataset": name,
        "events": len(events),
        "answered": int(answered.sum()),
        "users": len(np.unique(live.users[answered])),
        "replay_seconds": round(live.seconds + frozen.seconds, 1),
        "test_ndcg@10": json.loads((run / "metrics.json").read_text())["test"]["ndcg@10"],
    }
    for subset, mask in (("all", answered), ("after", answered & live.follows)):
        result[f"{subset}_events"] = int(mask.sum())
        for metric in ("hit", "ndcg"):
            a, b = getattr(live, metric)[mask], getattr(frozen, metric)[mask]
            low, high = user_bootstrap(live.users[mask], a - b, RESAMPLES)
            result[f"{subset}_{metric}"] = (float(a.mean()), float(b.mean()), low, high)
    later, first = update_cost(load_artifact(artifact_path, verify=False), events)
    result["add_event_us"], result["first_event_us"] = later, first
    return result


def report(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"commit {commit()}; {datetime.now(UTC):%Y-%m-%d}. Command: `{command}`.",
        "",
        "| data set | events (answered / all) | users | subset | Hit@10 real-time | Hit@10 "
        "frozen | Δ Hit@10 [95 % CI] | NDCG@10 real-time | NDCG@10 frozen | Δ NDCG@10 [95 % CI] |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        for subset, label in (("all", "every answered event"), ("after", "after an own event")):
            hit, ndcg = r[f"{subset}_hit"], r[f"{subset}_ndcg"]
            lines.append(
                f"| {r['dataset']} | {r[f'{subset}_events']:,} / {r['events']:,} | {r['users']:,} "
                f"| {label} | {hit[0]:.4f} | {hit[1]:.4f} | {hit[0] - hit[1]:+.4f} "
                f"[{hit[2]:+.4f}, {hit[3]:+.4f}] | {ndcg[0]:.4f} | {ndcg[1]:.4f} | "
                f"{ndcg[0] - ndcg[1]:+.4f} [{ndcg[2]:+.4f}, {ndcg[3]:+.4f}] |"
            )
    lines += [
        "",
        "| data set | add_event µs (a further event) | first event of a trained user µs "
        "| replay s (both modes) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['dataset']} | {r['add_event_us']:.1f} | {r['first_event_us']:.1f} "
        f"| {r['replay_seconds']:.0f} |"
        for r in results
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument(
        "--data-root", type=Path, default=None, help="default: $CLREC_DATA or ../shared/data"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-realtime"))
    parser.add_argument("--append", nargs="?", const=Path("BENCHMARKS.md"), type=Path, default=None)
    args = parser.parse_args(argv)
    data_root = args.data_root or default_data_root(os.environ.get("CLREC_DATA"))
    results = []
    for name in args.datasets:
        print(f"[{name}] training, exporting and replaying ...", file=sys.stderr, flush=True)
        results.append(measure(name, args.work_dir, data_root))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    command = "python bench/realtime.py " + " ".join(argv if argv is not None else sys.argv[1:])
    publish(report(results, command.strip()), args.append, "## Real-time users (bench/realtime.py)")


if __name__ == "__main__":
    main()
