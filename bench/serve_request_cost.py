"""Where a recommendation request's CPU time goes, measured in process (no network, no client).

On the synthetic artifact of ``bench/serve_load.py`` (built there; ``--artifact``), it times:

1. whole requests through the ASGI app (``create_app``, lifespan run, API key checked):
   ``GET /healthz`` (the framework's floor), ``GET /v1/users/{id}/recommendations?k=10`` and
   ``GET /v1/items/{id}/similar?k=10`` — median over rounds of the mean microseconds;
2. ``ServiceState.recommend_user`` alone (the service's ranking code, search included);
3. the HNSW graph alone (``knn_query`` of one user vector) for each ``--m`` × ``--ef``, with
   recall@10 against exact search over the same user vectors.

Usage::

    python bench/serve_request_cost.py [--artifact runs/bench-serve-load/artifact-100000i-...]
        [--m 16 32] [--ef 64 96] [--append [BENCHMARKS.md]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from machine import commit, cpu_name, publish

from clrec.serving.app import create_app
from clrec.serving.artifact import load_artifact
from clrec.serving.index import IndexConfig, VectorIndex
from clrec.serving.settings import ServiceSettings
from clrec.serving.state import ServiceState
from clrec.serving.store import Store

DEFAULT_ARTIFACT = Path("runs/bench-serve-load/artifact-100000i-10000u-64d-s0")


def timed(call: Callable[[int], object], rounds: int, per_round: int) -> float:
    """Median over ``rounds`` of the mean microseconds of ``per_round`` calls."""
    means = []
    for r in range(rounds):
        started = time.perf_counter()
        for i in range(per_round):
            call(r * per_round + i)
        means.append((time.perf_counter() - started) / per_round * 1e6)
    return statistics.median(means)


async def timed_async(call: Callable[[int], Awaitable[int]], rounds: int, per_round: int) -> float:
    means = []
    for r in range(rounds):
        started = time.perf_counter()
        for i in range(per_round):
            status = await call(r * per_round + i)
            assert status == 200, status
        means.append((time.perf_counter() - started) / per_round * 1e6)
    return statistics.median(means)


async def request_costs(
    artifact: Path, data_dir: Path, users: list[str], items: list[str], args: argparse.Namespace
) -> dict[str, float]:
    settings = ServiceSettings(
        artifact=artifact,
        data_dir=data_dir,
        index=IndexConfig(kind="hnsw"),
        rate_limit_per_s=0,
        log_requests=False,
        log_level="WARNING",
        sync_interval_s=None,
    )
    store = Store(settings.db_url)
    token = store.create_key("bench", "read").token.encode()
    store.close()
    app = create_app(settings)

    async def get(path: str, query: bytes = b"") -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"bench"), (b"x-api-key", token)],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await app(scope, receive, send)  # type: ignore[arg-type]
        return int(sent[0]["status"])  # type: ignore[call-overload]

    costs: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        routes = {
            "GET /healthz": lambda i: get("/healthz"),
            "GET /v1/users/{id}/recommendations?k=10": lambda i: get(
                f"/v1/users/{users[i % len(users)]}/recommendations", b"k=10"
            ),
            "GET /v1/items/{id}/similar?k=10": lambda i: get(
                f"/v1/items/{items[i % len(items)]}/similar", b"k=10"
            ),
        }
        for name, call in routes.items():
            await timed_async(call, 1, 200)  # warm-up
            costs[name] = await timed_async(call, args.rounds, args.per_round)
        state: ServiceState = app.state.service
        costs["ServiceState.recommend_user (k=10)"] = timed(
            lambda i: state.recommend_user(users[i % len(users)], 10), args.rounds, args.per_round
        )
    return costs


def graph_costs(artifact: Path, args: argparse.Namespace) -> list[tuple[int, int, float, float]]:
    """(m, ef, µs per one-vector query, recall@10 against exact) for each m × ef."""
    art = load_artifact(artifact, verify=False)
    rng = np.random.default_rng(0)
    users, items = art.model.user_vectors(), art.model.item_vectors()  # (U, D), (I, D)
    queries = users[rng.choice(art.n_users, args.queries, replace=False)]  # (Q, D)
    exact = VectorIndex.build(items, IndexConfig(kind="exact"))
    truth, _ = exact.search(queries, 10)  # (Q, 10)
    rows = []
    for m in args.m:
        graph = VectorIndex.build(items, IndexConfig(kind="hnsw", m=m, num_threads=2))
        assert graph._hnsw is not None
        hnsw = graph._hnsw.graph  # the hnswlib graph itself: its query cost, without filtering
        for ef in args.ef:
            hnsw.set_ef(ef)
            found = [hnsw.knn_query(q[None, :], k=10, num_threads=1)[0][0] for q in queries]
            cost = timed(
                lambda i, hnsw=hnsw: hnsw.knn_query(
                    queries[i % len(queries)][None, :], k=10, num_threads=1
                ),
                args.rounds,
                args.per_round,
            )
            recall = float(
                np.mean(
                    [
                        len(set(f.tolist()) & set(t.tolist())) / 10
                        for f, t in zip(found, truth, strict=True)
                    ]
                )
            )
            rows.append((m, ef, cost, recall))
    return rows


def report(
    costs: dict[str, float], graphs: list[tuple[int, int, float, float]], args: argparse.Namespace
) -> str:
    lines = [
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"commit {commit()}; {datetime.now(UTC):%Y-%m-%d}. Command: "
        f"`{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`.",
        f"Artifact: `{args.artifact}` (bench/serve_load.py's synthetic vectors). Times: median "
        f"over {args.rounds} rounds of the mean of {args.per_round} calls, one process, no "
        "network; requests go through the whole ASGI app with an API key (cached after the "
        "first request), HNSW at the service's defaults.",
        "",
        "| in-process cost | µs |",
        "|---|---|",
        *(f"| {name} | {value:,.0f} |" for name, value in costs.items()),
        "",
        "| HNSW m | ef_search | µs per query (k=10, 1 thread) | recall@10 vs exact |",
        "|---|---|---|---|",
        *(f"| {m} | {ef} | {cost:,.0f} | {recall:.4f} |" for m, ef, cost, recall in graphs),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--append", nargs="?", type=Path, const=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    if not (args.artifact / "artifact.json").is_file():
        raise SystemExit(f"{args.artifact}: no artifact; build it with python bench/serve_load.py")
    art = load_artifact(args.artifact, verify=False)
    rng = np.random.default_rng(1)
    users = [art.user_ids[i] for i in rng.integers(0, art.n_users, 2000)]
    items = [art.item_ids[i] for i in rng.integers(0, art.n_items, 2000)]
    with tempfile.TemporaryDirectory() as data_dir:
        costs = asyncio.run(request_costs(args.artifact, Path(data_dir), users, items, args))
    text = report(costs, graph_costs(args.artifact, args), args)
    heading = "## Serving: where a request's time goes (bench/serve_request_cost.py)"
    publish(text, args.append, heading)


if __name__ == "__main__":
    main()
