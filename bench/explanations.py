"""Are clrec's explanations faithful? The deletion test, additivity and cost (issue 23).

For each ``--run`` (a clrec run folder; trained first from its ``--config`` when it does not
exist, as in ``bench/ranker.py``) it draws up to ``--users`` trained users with at least
``--min-history`` history items (seeded) and explains each one's top ``--items``
recommendations (items unseen in training, ranked as the service ranks them) with the
service's own :class:`~clrec.models.explaining.UserExplainer`:

* **additivity**: the largest gap between the sum of the model's split (ID part + history
  terms + the rest) and the score it serves, and between the sum of the item-side split (ID
  part + content modalities + prior, with the item's content matrices) and that score;
* **deletion test**: the item's rank (among the user's unseen items) and score with the
  top-1 attributed history item removed against one random *other* history item removed,
  and the top-3 against three random others (pairs need ``2k`` history items) — the user
  recomputed without them (:meth:`EmbeddingModel.user_state_without`). Rank drop = rank
  after − rank before; the paired difference (attributed − random) gets a 95 % bootstrap
  interval over users;
* **cost**: median milliseconds, in process, to explain one item (the explain route's
  work: the user's catalogue scoring, the split, three counterfactual rankings) and a page
  of ten recommendations with ``explain=true`` (three contributors each), beside one plain
  catalogue scoring, and one content encoding (the item side's extra).

Usage::

    python bench/explanations.py --run RUN --config CONFIG [--set KEY=VALUE ...] \\
        [--run RUN --config CONFIG ...] [--users 300] [--items 5] [--append [BENCHMARKS.md]]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from machine import commit, cpu_name, publish
from run_folders import ensure_run
from stats import user_bootstrap

from clrec.data.matrix import interaction_matrix
from clrec.models.embedding import EmbeddingModel
from clrec.models.explaining import UserExplainer, rank_among
from clrec.ranking.folds import RunParts


def item_fields(parts: RunParts, item: int) -> dict[str, object]:
    """An item's content fields as the service reads them (the catalogue row, no id)."""
    row = parts.dataset.items.iloc[item]
    return {c: row[c] for c in parts.dataset.items.columns if c != "id"}


def removal(
    explainer: UserExplainer, cache: dict[tuple[int, ...], np.ndarray], row: int, rows: list[int]
) -> tuple[int, float]:
    """The item's rank and score for the user without every one of ``rows`` (scored once per
    user and set of rows: the items of a user share their top contributors)."""
    key = tuple(sorted(rows))
    scores = cache.get(key)
    if scores is None:
        state = explainer.state
        for removed in rows:
            state = explainer.model.user_state_without(state, removed)
        scores = explainer.model.score_user(
            state, explainer.vectors, np.arange(len(explainer.vectors))
        )
        cache[key] = scores
    open_rows = explainer.open.copy()
    open_rows[rows] = True  # no longer seen
    return rank_among(scores, open_rows, row), float(scores[row])


def measure(parts: RunParts, args: argparse.Namespace) -> dict[str, Any]:
    model = parts.retriever
    if not isinstance(model, EmbeddingModel):
        raise SystemExit(f"{parts.root}: the run's model does not explain its scores")
    rng = np.random.default_rng(args.seed)
    vectors = model.item_vectors()  # (I, D) index space
    pooled = model.history_vectors()  # (I, D) history space
    seen = interaction_matrix(parts.split.train, model.n_users, model.n_items)  # (U, I)
    eligible = [
        u for u in range(model.n_users) if len(model.user_state(u).items) >= args.min_history
    ]
    users = sorted(rng.choice(eligible, min(args.users, len(eligible)), replace=False).tolist())
    # per k: (user, rank drop attributed, random, score drop attributed, random) per pair
    records: dict[int, list[tuple[int, int, int, float, float]]] = {1: [], 3: []}
    gaps = {"served": 0.0, "item_side": 0.0}
    item_side_checked = 0
    history_lengths = []
    started = time.perf_counter()
    for n, user in enumerate(users):
        state = model.user_state(user)
        explainer = UserExplainer(model, vectors, state, seen[user].indices)
        history_lengths.append(len(state.items))
        ranked = np.argsort(-np.where(explainer.open, explainer.scores, -np.inf), kind="stable")
        cache: dict[tuple[int, ...], np.ndarray] = {}
        for row in ranked[: args.items].tolist():
            split, _ = explainer.explain(row, 0, 0)
            served = float(explainer.scores[row])
            total = split.user + float(split.history.sum()) + split.other
            gaps["served"] = max(gaps["served"], abs(total - served))
            if item_side_checked < args.item_side:
                content = (
                    model.featurizer.transform([item_fields(parts, row)])
                    if model.featurizer
                    else None
                )
                side = model.explain_item(state, pooled[row], row, content)
                gaps["item_side"] = max(gaps["item_side"], abs(sum(side.values()) - served))
                item_side_checked += 1
            order = np.argsort(-split.history, kind="stable")
            before = explainer.rank(row)
            for k in (1, 3):
                if len(split.items) < 2 * k:  # the random draw needs k items besides the top k
                    continue
                top = [int(i) for i in split.items[order[:k]]]
                others = np.setdiff1d(split.items, top)
                drawn = [int(i) for i in rng.choice(others, k, replace=False)]
                top_rank, top_score = removal(explainer, cache, row, top)
                drawn_rank, drawn_score = removal(explainer, cache, row, drawn)
                records[k].append(
                    (
                        user,
                        top_rank - before,
                        drawn_rank - before,
                        served - top_score,
                        served - drawn_score,
                    )
                )
        if (n + 1) % 50 == 0:
            print(
                f"  {n + 1}/{len(users)} users, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    result: dict[str, Any] = {
        "name": parts.root.name,
        "dataset": parts.dataset.name,
        "users": len(users),
        "median_history": float(np.median(history_lengths)),
        "gaps": gaps,
        "item_side_checked": item_side_checked,
        "explanations": sorted(model.explanations),
    }
    for k, rows in records.items():
        pairs = np.array(rows, dtype=np.float64)  # (P, 5)
        pair_users, top, drawn = pairs[:, 0], pairs[:, 1], pairs[:, 2]
        low, high = user_bootstrap(pair_users, top - drawn, args.bootstrap, args.seed + 1)
        result[f"k{k}"] = {
            "pairs": len(pairs),
            "top_rank_drop": float(top.mean()),
            "random_rank_drop": float(drawn.mean()),
            "difference": (float((top - drawn).mean()), low, high),
            "top_score_drop": float(pairs[:, 3].mean()),
            "random_score_drop": float(pairs[:, 4].mean()),
            "top_beats_random": float((top > drawn).mean()),
        }
    result["cost"] = cost(parts, model, vectors, users[: args.cost_users], seen)
    return result


def cost(
    parts: RunParts, model: EmbeddingModel, vectors: np.ndarray, users: list[int], seen: Any
) -> dict[str, float]:
    """Median ms in process: one catalogue scoring, one item explained (3 counterfactuals),
    a page of ten explained (3 contributors each), one content encoding."""
    times: dict[str, list[float]] = {"scoring": [], "one": [], "page": [], "encoding": []}
    rows = np.arange(model.n_items)
    for user in users:
        state = model.user_state(user)
        row_seen = seen[user].indices
        t0 = time.perf_counter()
        model.score_user(state, vectors, rows)
        times["scoring"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        explainer = UserExplainer(model, vectors, state, row_seen)
        target = int(np.argmax(np.where(explainer.open, explainer.scores, -np.inf)))
        explainer.explain(target, 5, 3)
        explainer.rank(target)
        times["one"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        explainer = UserExplainer(model, vectors, state, row_seen)
        page = np.argsort(-np.where(explainer.open, explainer.scores, -np.inf))[:10]
        for row in page.tolist():
            explainer.explain(row, 3, 3)
            explainer.rank(row)
        times["page"].append(time.perf_counter() - t0)
        if model.featurizer is not None:
            fields = item_fields(parts, target)
            t0 = time.perf_counter()
            model.featurizer.transform([fields])
            times["encoding"].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items() if v}


def run_one(
    run: Path, config: Path | None, overrides: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    ensure_run(run, config, overrides)
    print(f"[{run}] explaining ...", file=sys.stderr, flush=True)
    return measure(RunParts.load(run), args)


def interval(values: tuple[float, float, float]) -> str:
    mean, low, high = values
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| run | users / pairs | median history | removed | rank drop: attributed | random "
        "| difference [95 %] | score drop: attributed | random | attributed > random |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for k in (1, 3):
            m = r[f"k{k}"]
            lines.append(
                f"| {r['name']} | {r['users']} / {m['pairs']} | {r['median_history']:.0f} | {k} "
                f"| {m['top_rank_drop']:.1f} | {m['random_rank_drop']:.1f} "
                f"| {interval(m['difference'])} "
                f"| {m['top_score_drop']:.3f} | {m['random_score_drop']:.3f} "
                f"| {100 * m['top_beats_random']:.0f} % |"
            )
    lines += [
        "",
        "| run | splits | max gap: split − served | item side − served (pairs) "
        "| one catalogue scoring ms | one item explained ms | page of 10 explained ms "
        "| content encoding ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        g, c = r["gaps"], r["cost"]
        lines.append(
            f"| {r['name']} | {', '.join(r['explanations']) or '-'} | {g['served']:.1e} "
            f"| {g['item_side']:.1e} ({r['item_side_checked']}) "
            f"| {c['scoring']:.2f} | {c['one']:.2f} "
            f"| {c['page']:.2f} | {c.get('encoding', float('nan')):.2f} |"
        )
    command = "python bench/explanations.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    lines += [
        "",
        f"{stamp}, commit {commit()}, {cpu_name()}, {os.cpu_count()} cores; `{command}`. "
        f"Users drawn with seed {args.seed} among those with ≥ {args.min_history} history items; "
        f"their top {args.items} unseen items explained. Random removals draw from the history "
        "items other than the attributed ones (a pair needs twice as many history items as "
        "it removes). Rank drop: the item's rank after the removal minus before (larger: the "
        "removed items mattered more); the interval resamples "
        f"users ({args.bootstrap} draws). Costs: median of {args.cost_users} users, in process "
        "(no HTTP).",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument(
        "--config", type=Path, action="append", default=[], help="per --run, to create it"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="config overrides for every run created"
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument(
        "--items", type=int, default=5, help="top recommendations explained per user"
    )
    parser.add_argument("--min-history", type=int, default=5)
    parser.add_argument(
        "--item-side", type=int, default=200, help="pairs whose item-side split is checked"
    )
    parser.add_argument("--cost-users", type=int, default=30)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--append", nargs="?", type=Path, const=Path("BENCHMARKS.md"), default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configs = args.config + [None] * (len(args.run) - len(args.config))
    results = [
        run_one(run, config, args.set, args) for run, config in zip(args.run, configs, strict=True)
    ]
    publish(
        table(results, args),
        args.append,
        "## Explanations: faithfulness and cost (bench/explanations.py)",
    )


if __name__ == "__main__":
    main()
