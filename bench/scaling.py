"""How one training epoch, a full-ranking evaluation and peak memory grow with the data.

Models: ``bpr``, ``lightgcn`` and the content-free ``clrec`` model with their defaults, and
large-catalogue variants: ``bpr-sparse`` (``sparse_updates: true``), ``clrec-sampled``
(``supervised: sampled_softmax``), ``clrec-sparse`` (that with ``sparse_updates: true`` and
``history_cap: 32``: a step reads and updates only its own rows, a heavy user costs 32 items),
``clrec-linear`` (that step with the cosine contrastive loss and without the pair-contrast
terms) and ``clrec-linear-b256`` (that with 256 users a step: the Gowalla preset's model).

Synthetic implicit-feedback data with power-law item popularity and power-law user activity,
at several sizes (interactions:items); for every size and model, in its own fresh process
(so its peak RSS is its own): build the data, hold out one random interaction per user, fit
one epoch without validation, then rank all items for a seeded sample of users.

Usage::

    .venv/bin/python bench/scaling.py                                  # 1M:100k 3M:300k 10M:1M
    .venv/bin/python bench/scaling.py --models bpr,lightgcn --case-timeout 1800
    .venv/bin/python bench/scaling.py --sizes 20k:2k 60k:6k --eval-users 500 --threads 1 \\
        --out /tmp/scaling-smoke
    .venv/bin/python bench/scaling.py --append BENCHMARKS.md

The data: ``users = interactions // --per-user``; each user's number of interactions is
``2 + Multinomial(interactions - 2·users, w)`` with ``w`` Lomax (Pareto II) draws of shape
``--user-alpha``, clipped at ``--max-user-factor`` × their mean (most users light, a few
heavy); each interaction's item is drawn with probability ∝ ``(rank + 1) ^ -alpha`` (ranks
shuffled over item ids). Repeated (user, item) pairs are dropped and redrawn until every user
has their count (a few rounds), then items never drawn are left out of the catalogue. Seeded,
numpy only; the :class:`~clrec.data.schema.Dataset` is built directly from the integer ids
(``from_external`` would turn 10M ids into strings and sort them).

A finished case is kept in ``OUT/MODEL-SIZE.json`` and reused when rerun with the same
settings, so an interrupted run resumes; a case past ``--case-timeout`` is killed and shown as
"> timeout" (kept too, and reused unless the timeout is raised) and that model's larger sizes
are skipped (``--run-after-timeout`` runs them). Prints one Markdown section."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import platform
import resource
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from machine import commit, cpu_name, publish

from clrec.data.schema import Dataset
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.models.registry import build_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = ("1M:100k", "3M:300k", "10M:1M")
# the registered models that train in epochs
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "bpr": {},
    "lightgcn": {},
    "clrec": {"prior": "none", "content": {"modalities": []}},  # content-free defaults
    # a variant is MODEL-NAME: the registered MODEL with its own parameters
    "bpr-sparse": {"sparse_updates": True},
    "clrec-sampled": {
        "prior": "none",
        "content": {"modalities": []},
        "supervised": "sampled_softmax",
    },
    # the linear step: sampled softmax, sparse ID tables updated lazily, at most 32 pooled
    # history items a user in a step
    "clrec-sparse": {
        "prior": "none",
        "content": {"modalities": []},
        "supervised": "sampled_softmax",
        "sparse_updates": True,
        "history_cap": 32,
    },
    # the linear step with SimpleX's cosine contrastive loss over 8,192 samples, no
    # pair-contrast terms (no other users pulled into a step), no ID dropout (there is no
    # content path to train), 128 users a step
    "clrec-linear": {
        "prior": "none",
        "content": {"modalities": []},
        "supervised": "cosine_contrastive",
        "softmax_samples": 8192,
        "sparse_updates": True,
        "history_cap": 32,
        "id_dropout": 0.0,
        "weights": {"contrastive": 0.0},
    },
}
# the same with 256 users a step (half the steps): the Gowalla preset's model
# (configs/gowalla.yaml)
MODEL_PARAMS["clrec-linear-b256"] = {**MODEL_PARAMS["clrec-linear"], "batch_size": 256}
SUFFIXES = {"k": 1_000, "m": 1_000_000}
VERSION = 1  # of what a case measures: saved cases of another version are measured again


# ---------------------------------------------------------------------- sizes
def parse_count(text: str) -> int:
    """``"20000"``, ``"300k"``, ``"1.5M"`` → an integer count."""
    value = text.strip().lower()
    scale = SUFFIXES.get(value[-1:], 1)
    number = float(value[:-1] if scale > 1 else value)
    count = round(number * scale)
    if count < 1 or not math.isclose(count, number * scale):
        raise argparse.ArgumentTypeError(f"not a positive whole count: {text!r}")
    return count


def parse_size(text: str) -> tuple[int, int]:
    """``"1M:100k"`` → ``(1_000_000, 100_000)`` (interactions, items)."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"a size is INTERACTIONS:ITEMS, got {text!r}")
    interactions, items = parse_count(parts[0]), parse_count(parts[1])
    if items < 4:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 4 items")
    return interactions, items


def short(count: int) -> str:
    """``1_000_000`` → ``"1M"``, ``300_000`` → ``"300k"``, ``2_500`` → ``"2500"``."""
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataSpec:
    """The synthetic data of one size."""

    interactions: int  # wanted (user, item) pairs; users = interactions // per_user
    items: int  # catalogue size before never-drawn items are left out
    per_user: int = 20
    alpha: float = 0.9  # item popularity exponent
    user_alpha: float = 2.0  # Lomax shape of user activity (smaller: heavier tail)
    max_user_factor: float = 100.0  # activity weights clipped at this multiple of their mean
    seed: int = 0


def synthetic_pairs(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Distinct (user, item) pairs sorted by user then item; ``(users, items, n_users,
    n_items)`` with dense ids (items never drawn are left out)."""
    rng = np.random.default_rng(spec.seed)
    n_users = max(1, spec.interactions // spec.per_user)
    n_items = spec.items
    popularity = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -spec.alpha)
    popularity /= popularity[-1]  # (I,) CDF over popularity ranks
    item_of_rank = rng.permutation(n_items)  # (I,) so that popularity is not id order

    def draw_items(count: int) -> np.ndarray:
        ranks = np.searchsorted(popularity, rng.random(count), side="right")
        return item_of_rank[np.minimum(ranks, n_items - 1)]

    weights = rng.pareto(spec.user_alpha, n_users) + 1e-12  # (U,) Lomax activity
    weights = np.minimum(weights, spec.max_user_factor * weights.mean())
    extra = max(0, spec.interactions - 2 * n_users)
    quota = 2 + rng.multinomial(extra, weights / weights.sum())  # (U,)
    quota = np.minimum(quota, max(2, n_items // 2))  # reachable without endless redraws
    everyone = np.arange(n_users, dtype=np.int64)
    keys = np.repeat(everyone, quota) * n_items + draw_items(int(quota.sum()))  # (user, item)
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # sorted, distinct
    have = np.bincount(keys // n_items, minlength=n_users)  # (U,)
    chunks = [keys]  # each sorted and distinct; no key in two
    for _ in range(100):  # redraw what the duplicates cost each user (heavy users: a few rounds)
        deficit = quota - have
        if not deficit.any():
            break
        fresh = np.unique(np.repeat(everyone, deficit) * n_items + draw_items(int(deficit.sum())))
        for chunk in chunks:
            at = np.minimum(np.searchsorted(chunk, fresh), len(chunk) - 1)
            fresh = fresh[chunk[at] != fresh]
        if len(fresh):
            chunks.append(fresh)
        have += np.bincount(fresh // n_items, minlength=n_users)
    keys = np.sort(np.concatenate(chunks), kind="stable")  # nearly sorted already
    del chunks
    users, items = np.divmod(keys, n_items)
    del keys
    if have.min() < 2:
        raise RuntimeError("a user kept fewer than 2 interactions; raise the item count")
    drawn = np.bincount(items, minlength=n_items) > 0  # (I,)
    items = (np.cumsum(drawn) - 1)[items]  # dense ids, in item id order
    return users, items, n_users, int(drawn.sum())


def id_table(count: int) -> pd.DataFrame:
    """The id map of internal ids ``0..count-1`` whose external ids are the same numbers."""
    return pd.DataFrame({"id": pd.array(np.arange(count).astype(str), dtype="string")})


def build_dataset(spec: DataSpec) -> Dataset:
    """The synthetic :class:`Dataset`, built directly from its integer ids."""
    users, items, n_users, n_items = synthetic_pairs(spec)
    interactions = pd.DataFrame({"user": users, "item": items})  # int64, no duplicates
    name = f"synthetic-{short(spec.interactions)}-{short(spec.items)}"
    return Dataset(name, interactions, items=id_table(n_items), users=id_table(n_users))


def hold_out_one(dataset: Dataset, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): one uniformly drawn interaction per user goes to test.

    Needs interactions grouped by user (as :func:`build_dataset` makes them)."""
    users = dataset.interactions["user"].to_numpy()
    counts = np.bincount(users, minlength=dataset.n_users)  # (U,)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # (U,) first row of each user
    rng = np.random.default_rng(seed)
    picked = starts + np.floor(rng.random(dataset.n_users) * counts).astype(np.int64)
    test = np.zeros(len(users), dtype=bool)
    test[picked[counts > 0]] = True
    inter = dataset.interactions
    return inter[~test].reset_index(drop=True), inter[test].reset_index(drop=True)


# ---------------------------------------------------------------------- one case
def rss_now_mb() -> float:
    """The resident set size of this process now (MB); the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_peak_mb()


def rss_peak_mb() -> float:
    """The peak resident set size of this process so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=1) + "\n")


def run_case(settings: dict[str, Any], partial_path: str) -> None:
    """One (size, model) case, in a fresh process; writes its record to ``partial_path`` after
    each stage (so a killed case still tells how far it got), ``status: "done"`` at the end."""
    threads = int(settings["threads"])
    torch.set_num_threads(threads)
    # the first optimiser imports torch._dynamo (seconds, once per process): not the fit's cost
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    path = Path(partial_path)
    record: dict[str, Any] = {"settings": settings, "status": "data", "rss_start_mb": rss_now_mb()}
    spec = DataSpec(**settings["data"])

    started = time.perf_counter()
    dataset = build_dataset(spec)
    record["build_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    train, test = hold_out_one(dataset, spec.seed)
    train_set = dataset.with_interactions(train)
    del dataset, train  # train_set holds its own copy; the evaluator needs only the sizes
    record["split_seconds"] = time.perf_counter() - started
    record.update(
        interactions=train_set.n_interactions + len(test),
        users=train_set.n_users,
        items=train_set.n_items,
        rss_after_data_mb=rss_now_mb(),
        status="fit",
    )
    _write(path, record)

    params = {**settings["params"], "epochs": 1, "progress": False, "num_threads": threads}
    model = build_model(settings["model"].split("-")[0], params)
    started = time.perf_counter()
    model.fit(train_set)
    record["fit_seconds"] = time.perf_counter() - started
    history = model.history
    if history and "seconds" in history[0]:
        record["epoch_seconds"], record["epoch_source"] = float(history[0]["seconds"]), "history"
    else:
        record["epoch_seconds"], record["epoch_source"] = record["fit_seconds"], "fit wall clock"
    record.update(rss_after_fit_mb=rss_now_mb(), status="eval")
    _write(path, record)

    rng = np.random.default_rng(spec.seed + 1)
    wanted = min(int(settings["eval_users"]), train_set.n_users)
    sample = rng.choice(train_set.n_users, wanted, replace=False)
    chosen = np.zeros(train_set.n_users, dtype=bool)
    chosen[sample] = True
    target = test[chosen[test["user"].to_numpy()]]
    started = time.perf_counter()
    evaluator = Evaluator(train_set, train_set.interactions, EvaluationConfig(progress=False))
    result = evaluator.evaluate(model, target, [train_set.interactions])
    record.update(
        eval_seconds=time.perf_counter() - started,
        eval_users=int(result.metrics["users"]),
        ndcg10=float(result.metrics["ndcg@10"]),
        peak_rss_mb=rss_peak_mb(),
        status="done",
    )
    _write(path, record)


def case_settings(args: argparse.Namespace, size: tuple[int, int], model: str) -> dict[str, Any]:
    """What decides a case's result: a saved record is reused only when these are equal."""
    data = DataSpec(
        interactions=size[0],
        items=size[1],
        per_user=args.per_user,
        alpha=args.alpha,
        user_alpha=args.user_alpha,
        max_user_factor=args.max_user_factor,
        seed=args.seed,
    )
    return {
        "version": VERSION,
        "model": model,
        "params": MODEL_PARAMS[model],
        "data": asdict(data),
        "threads": args.threads,
        "eval_users": args.eval_users,
    }


def measure(args: argparse.Namespace, size: tuple[int, int], model: str) -> dict[str, Any]:
    """One case's record: reused from ``--out`` when measured with these settings, else run in
    a spawned process under ``--case-timeout``."""
    settings = case_settings(args, size, model)
    label = f"{model} {short(size[0])}:{short(size[1])}"
    saved_path = Path(args.out) / f"{model}-{short(size[0])}-{short(size[1])}.json"
    if saved_path.is_file():
        saved: dict[str, Any] = json.loads(saved_path.read_text())
        same = saved.get("settings") == json.loads(json.dumps(settings))
        reusable = saved.get("status") == "done" or (
            saved.get("status") == "timeout" and saved.get("timeout_s", 0) >= args.case_timeout
        )
        if same and reusable:
            print(f"== {label}: measured already, kept ({saved_path})", flush=True)
            return saved
    print(f"== {label} ({time.strftime('%H:%M:%S')})", flush=True)
    saved_path.parent.mkdir(parents=True, exist_ok=True)
    partial = saved_path.with_suffix(".partial.json")
    partial.unlink(missing_ok=True)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_case, args=(settings, str(partial)))
    started = time.perf_counter()
    process.start()
    process.join(args.case_timeout)
    lingering = process.is_alive()
    if lingering:
        process.kill()
        process.join()
    record: dict[str, Any] = json.loads(partial.read_text()) if partial.is_file() else {}
    partial.unlink(missing_ok=True)
    stage = record.get("status", "data")  # no record yet: importing or building the data
    timed_out = lingering and stage != "done"  # done, then slow to exit: measured all the same
    record.update(settings=settings, wall_seconds=time.perf_counter() - started, commit=commit())
    if timed_out:
        record.update(stopped_in=stage, status="timeout")
        record["timeout_s"] = args.case_timeout
        print(f"   > {args.case_timeout:g} s: killed in stage {record['stopped_in']}", flush=True)
    elif record.get("status") != "done":
        print(f"   failed in stage {stage} (exit code {process.exitcode}); not kept", flush=True)
        return {**record, "status": "failed", "stopped_in": stage}
    else:
        print(
            f"   {record['interactions']:,} pairs, {record['users']:,} users, "
            f"{record['items']:,} items; build {record['build_seconds']:.1f} s, "
            f"epoch {record['epoch_seconds']:.1f} s, eval {record['eval_seconds']:.1f} s, "
            f"peak {record['peak_rss_mb']:,.0f} MB, ndcg@10 {record['ndcg10']:.4f}",
            flush=True,
        )
    _write(saved_path, record)
    return record


# ---------------------------------------------------------------------- the report
def slope(points: list[tuple[float, float]]) -> list[str]:
    """Log-log slopes between consecutive (x, y) points, as text ("—" where one is missing)."""
    slopes = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        ok = min(x0, y0, x1, y1) > 0 and x1 != x0
        slopes.append(f"{math.log(y1 / y0) / math.log(x1 / x0):.2f}" if ok else "—")
    return slopes


def growth_line(model: str, records: list[dict[str, Any]]) -> str | None:
    """``model``'s growth exponents of s / epoch, eval s and peak RSS between sizes."""
    if len(records) < 2:
        return None

    def series(key: str) -> list[tuple[float, float]]:
        return [(float(r.get("interactions", 0)), float(r.get(key, 0.0))) for r in records]

    above = [  # peak RSS above what the process held after its imports
        (x, y - float(r.get("rss_start_mb", 0.0)) if y else 0.0)
        for (x, y), r in zip(series("peak_rss_mb"), records, strict=True)
    ]

    sizes = [short(r["settings"]["data"]["interactions"]) for r in records]
    steps = ", ".join(f"{a}→{b}" for a, b in itertools.pairwise(sizes))
    parts = [
        f"s / epoch {', '.join(slope(series('epoch_seconds')))}",
        f"eval s {', '.join(slope(series('eval_seconds')))}",
        f"peak RSS above start {', '.join(slope(above))}",
    ]
    return f"- {model} ({steps}): " + "; ".join(parts)


def seconds(value: float) -> str:
    """Seconds with about three significant digits."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def row(record: dict[str, Any], eval_users: int) -> str:
    """One table row; a timed-out or failed case shows how far it got (counts as wanted,
    "~", when it never finished building the data)."""
    data = record["settings"]["data"]
    wanted = {
        "interactions": data["interactions"],
        "users": data["interactions"] // data["per_user"],
        "items": data["items"],
    }
    counts = [f"{record[k]:,}" if k in record else f"~{v:,}" for k, v in wanted.items()]
    status = str(record.get("status"))
    missing = {
        "timeout": f"> {record.get('timeout_s', 0):g} s",
        "failed": "failed",
        "skipped": "skipped",
    }
    unknown = missing.get(status, "—")

    def cell(key: str, form: str = "") -> str:
        if key not in record:
            return unknown
        return format(record[key], form) if form else seconds(record[key])

    evaluated = cell("eval_seconds")
    if "eval_users" in record and record["eval_users"] != eval_users:
        evaluated += f" ({record['eval_users']:,} users)"
    ndcg = f"{record['ndcg10']:.4f}" if "ndcg10" in record else "—"
    cells = [
        record["settings"]["model"],
        *counts,
        cell("epoch_seconds"),
        cell("fit_seconds"),
        evaluated,
        cell("peak_rss_mb", ",.0f"),
        ndcg,
    ]
    return "| " + " | ".join(cells) + " |"


def data_row(records: list[dict[str, Any]]) -> str | None:
    """The data of one size (its first case that got past the data stage)."""
    built = [r for r in records if "build_seconds" in r]
    if not built:
        return None
    r = built[0]
    return (
        f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | "
        f"{seconds(r['build_seconds'])} | {seconds(r['split_seconds'])} | "
        f"{r['rss_after_data_mb']:,.0f} |"
    )


def section(args: argparse.Namespace, results: dict[tuple[str, tuple[int, int]], Any]) -> str:
    """The Markdown section: settings, one row per case, the data, growth exponents."""
    models = args.models.split(",")
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "bench/scaling.py", *sys.argv[1:]]
    )
    starts = [r["rss_start_mb"] for r in results.values() if "rss_start_mb" in r]
    start = float(np.median(starts)) if starts else 0.0
    sources = {r.get("epoch_source") for r in results.values() if "epoch_source" in r}
    epoch_note = (
        "the training loop's own time of epoch 1 (`history[0]['seconds']`: drawing the "
        "epoch's batches and negatives plus every step)"
        if sources <= {"history"}
        else "the training loop's epoch time where the model records one, else the whole fit"
    )
    lines = [
        "### Scaling on synthetic power-law data",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}; {args.threads} torch thread(s) per case; commit {commit()}; "
        f"{datetime.now(UTC):%Y-%m-%d}.  ",
        f"Command: `{command}`",
        "",
        f"Data: users = interactions // {args.per_user}; item popularity ∝ (rank + 1)^−"
        f"{args.alpha:g}; user activity 2 + Lomax(shape {args.user_alpha:g}) shares clipped at "
        f"{args.max_user_factor:g}× their mean; duplicates redrawn; seed {args.seed}; counts "
        "below are after dedup (items never drawn left out). One random interaction per user "
        "held out as test, no validation. Each case runs in its own spawned process: build the "
        "data, fit one epoch (`epochs=1`, no validation), evaluate.",
        "",
        f"s / epoch: {epoch_note}; fit s: the whole `fit` (also samplers, matrices, graph, "
        "final embeddings; torch's one-off optimiser import is paid before it). Eval s: "
        f"`Evaluator` set-up plus one full-ranking pass over all items for {args.eval_users:,} "
        "sampled users (ks 10, 20, 6 metrics, train items masked). Peak RSS: `ru_maxrss` of the "
        f"case's process (imports included, {start:,.0f} MB before any data). > N s: killed at "
        "the case timeout; skipped: a smaller size of that model timed out.",
        "",
        f"| model | interactions | users | items | s / epoch | fit s | eval s "
        f"({args.eval_users:,} users) | peak RSS MB | NDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row(results[model, size], args.eval_users) for model in models for size in args.sizes]
    data_rows = [data_row([results[m, size] for m in models]) for size in args.sizes]
    lines += [
        "",
        "| interactions | users | items | data build s | split s | RSS after data MB |",
        "|---:|---:|---:|---:|---:|---:|",
        *([line for line in data_rows if line is not None] or ["| no case built its data |||||"]),
        "",
        "Growth exponents (slope of log value against log interactions between consecutive "
        "sizes; 1 = linear, 2 = quadratic; RSS above what the case held before its data):",
        "",
    ]
    growth = [growth_line(m, [results[m, size] for size in args.sizes]) for m in models]
    lines += [line for line in growth if line is not None] or ["- (one size only)"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size(s) for s in DEFAULT_SIZES],
        help=f"INTERACTIONS:ITEMS, k / M suffixes (default: {' '.join(DEFAULT_SIZES)})",
    )
    parser.add_argument("--models", default=",".join(MODEL_PARAMS), help="comma-separated")
    parser.add_argument("--per-user", type=int, default=20, help="interactions per user (mean)")
    parser.add_argument("--alpha", type=float, default=0.9, help="item popularity exponent")
    parser.add_argument("--user-alpha", type=float, default=2.0, help="Lomax shape of activity")
    parser.add_argument("--max-user-factor", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per case")
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--case-timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument(
        "--run-after-timeout",
        action="store_true",
        help="still run a model's larger sizes after one timed out (default: skip them)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scaling")
    parser.add_argument("--append", type=Path, help="append the section to this file")
    args = parser.parse_args(argv)
    args.sizes = sorted(set(args.sizes))
    unknown = sorted(set(args.models.split(",")) - set(MODEL_PARAMS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_PARAMS)}")
    if args.per_user < 2 or args.eval_users < 1 or args.threads < 1:
        parser.error("--per-user must be ≥ 2, --eval-users and --threads ≥ 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}
    for size in args.sizes:  # smallest first
        for model in args.models.split(","):
            timed_out = [
                smaller
                for smaller in args.sizes
                if results.get((model, smaller), {}).get("status") == "timeout"
            ]
            if timed_out and not args.run_after_timeout:
                first = f"{short(timed_out[0][0])}:{short(timed_out[0][1])}"
                print(
                    f"== {model} {short(size[0])}:{short(size[1])}: skipped ({first} timed out)",
                    flush=True,
                )
                settings = case_settings(args, size, model)
                results[model, size] = {"settings": settings, "status": "skipped"}
                continue
            results[model, size] = measure(args, size, model)
    text = section(args, results)
    publish(text, args.append)


if __name__ == "__main__":
    main()
