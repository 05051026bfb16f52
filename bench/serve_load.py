"""Load benchmark of the recommendation service: `clrec serve` under concurrent requests.

For each catalogue size (``--sizes``, default 10k, 100k and 1M items; 10,000 users, 64-d) it
builds a synthetic BPR artifact through the real export path (a run folder with a data set
and a saved ``bpr`` model whose embeddings are the synthetic vectors, then
:func:`clrec.serving.artifact.export_artifact`), so the layout and checksums are exactly what
``clrec export`` writes. Vectors are Gaussian; an item's vector is scaled by its popularity
rank ``r`` as ``(r + 1) ** -norm_exponent`` (power-law norms, as trained dot-product models
give popular items), and each user has ``--per-user`` interactions drawn from a Zipf(1)
popularity (what "exclude seen" filters).

Then it starts ``clrec serve`` (a real uvicorn process, ``--workers``, rate limit off, an
API key checked on every request unless ``--no-auth``) on a free loopback port, once per
index (``--indexes``, default hnsw; plus ``exact`` for the sizes in ``--exact-sizes``,
default 100k), and drives ``GET /v1/users/{id}/recommendations?k=10`` with random known users
over each of ``--connections`` keep-alive connection counts for ``--duration`` seconds after
``--warmup`` seconds. The same client then drives ``GET /healthz`` on the same server: the framework
floor (the app has no no-op route; /healthz needs no key and does no work). Reported:
throughput, p50 / p95 / p99 latency, non-2xx answers, throughput as a share of the floor,
the index's recall@10 the server measured at start (``/readyz``), the time to ready (artifact
verification, index build, recall measurement) and the server's peak RSS.

The client is ``wrk`` when it is on PATH (``--client auto``), else a small asyncio HTTP/1.1
client in this process. On a small machine the client shares the cores with the server, so
the floor is a floor of client + server; the ratio is the comparable figure.

Usage::

    python bench/serve_load.py [--sizes 10000 100000 1000000] [--duration 20] [--warmup 3]
        [--connections 1 8 32] [--workers 1] [--client auto|python|wrk] [--no-auth]
        [--append [BENCHMARKS.md]]

Artifacts are kept in ``--work-dir`` (default ``runs/bench-serve-load``) and reused by later
runs with the same size, users, dimension and seed (``--rebuild`` to build them anew).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from machine import commit, cpu_name, publish

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
ROUTE = "/v1/users/{user}/recommendations?k={k}"
FLOOR_ROUTE = "/healthz"


# ---------------------------------------------------------------------- synthetic artifacts


def artifact_name(n_items: int, n_users: int, dim: int, seed: int) -> str:
    return f"artifact-{n_items}i-{n_users}u-{dim}d-s{seed}"


def build_artifact(
    out: Path,
    *,
    n_items: int,
    n_users: int,
    dim: int,
    per_user: int,
    norm_exponent: float,
    seed: int,
) -> Path:
    """Write a synthetic ``bpr`` artifact to ``out`` through the real export path."""
    import pandas as pd
    import torch
    import yaml

    from clrec.data.schema import Dataset
    from clrec.models.mf import BPRMF, EmbeddingTables
    from clrec.serving.artifact import export_artifact

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1, dtype=np.float64)  # Zipf(1) by rank
    popularity /= popularity.sum()
    picks = rng.choice(n_items, size=(n_users, per_user), p=popularity)  # (U, P) item ranks
    frame = pd.DataFrame(
        {
            "user": np.repeat([f"u{u}" for u in range(n_users)], per_user),
            "item": [f"i{i}" for i in picks.ravel()],
        }
    ).drop_duplicates()
    catalogue = pd.DataFrame(
        {
            "id": [f"i{i}" for i in range(n_items)],
            "title": [f"Item {i}" for i in range(n_items)],
        }
    )
    dataset = Dataset.from_external(
        f"synthetic-{n_items}",
        frame,
        item_content=catalogue,
        item_fields={"title": "text"},
    )
    # rows follow the data set's own order; item "i{r}" has popularity rank r
    ranks = dataset.items["id"].str.slice(1).astype(np.int64).to_numpy()  # (I,)
    users = rng.standard_normal((dataset.n_users, dim), dtype=np.float32) / np.sqrt(dim)
    items = rng.standard_normal((n_items, dim), dtype=np.float32) / np.sqrt(dim)  # by rank
    items *= ((np.arange(n_items) + 1.0) ** -norm_exponent).astype(np.float32)[:, None]
    items = np.ascontiguousarray(items[ranks])  # (I, D) in the data set's order

    run = Path(tempfile.mkdtemp(prefix=".run-", dir=out.parent))
    try:
        dataset.save(run / "dataset")
        model = BPRMF(embedding_size=dim, device="cpu", progress=False)
        model.tables = EmbeddingTables(torch.from_numpy(users), torch.from_numpy(items))
        model.refresh()  # BPR's final embeddings are its tables (saved once: shared storage)
        model.save(run / "model")
        config = {
            "data": {"name": f"synthetic-{n_items}"},
            "model": {"name": "bpr", "params": {"embedding_size": dim}},
            "synthetic": {
                "script": "bench/serve_load.py",
                "users": n_users,
                "items": n_items,
                "per_user": per_user,
                "norm_exponent": norm_exponent,
                "seed": seed,
            },
        }
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (run / "metrics.json").write_text(json.dumps({"test": {}}) + "\n")
        export_artifact(run, out, overwrite=True)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return out


# ---------------------------------------------------------------------- the server


def clrec_command() -> list[str]:
    script = Path(sys.executable).parent / "clrec"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from clrec.cli import app; app()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, token: str | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"X-API-Key": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Server:
    """One ``clrec serve`` process on a free loopback port; its log goes to ``log``."""

    def __init__(self, args: list[str], log: Path, start_timeout: float) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.command = [*clrec_command(), "serve", *args, "--port", str(self.port)]
        started = time.perf_counter()
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                self.command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        try:
            self.ready = self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_tail()}")
            try:
                status, body = get_json(f"{self.base}/readyz", timeout=5)
                if status == 200:
                    return dict(body)
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def peak_rss_mb(self) -> float:
        """VmHWM of the server process and its descendants (uvicorn workers), summed."""
        total_kb = 0
        for pid in process_tree(self.process.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total_kb += int(line.split()[1])
            except OSError:
                continue
        return total_kb / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant, from /proc/PID/task/*/children."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                queue.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


# ---------------------------------------------------------------------- load clients


@dataclass
class Load:
    """What one measured window gave."""

    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and failed requests

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class RequestMaker:
    """Request paths: a random known user per recommendation request (fixed seed)."""

    def __init__(self, route: str, n_users: int, k: int, seed: int) -> None:
        self.route = route
        self.n_users = n_users
        self.k = k
        self.random = random.Random(seed)

    def path(self) -> str:
        if "{user}" not in self.route:
            return self.route
        return self.route.format(user=f"u{self.random.randrange(self.n_users)}", k=self.k)


def _head_fields(head: bytes) -> tuple[int, int | None, bool]:
    """Status, Content-Length (None: absent) and whether the server closes the connection."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    return status, length, close


async def _connection(
    port: int,
    maker: RequestMaker,
    headers: str,
    measure_from: float,
    end: float,
    latencies: list[float],
    failures: list[int],
) -> None:
    """One keep-alive connection issuing requests back to back until ``end``; requests that
    start after ``measure_from`` and finish before ``end`` are recorded."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < end:
        if writer is None or reader is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                failures[0] += 1
                await asyncio.sleep(0.05)
                continue
        request = f"GET {maker.path()} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n"
        started = time.perf_counter()
        try:
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, close = _head_fields(head)
            if length is None:  # not what uvicorn sends for these routes
                raise ValueError("response without Content-Length")
            await reader.readexactly(length)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            if started >= measure_from:
                failures[0] += 1
            writer.close()
            reader = writer = None
            continue
        done = time.perf_counter()
        if started >= measure_from and done <= end:
            latencies.append(done - started)
            if not 200 <= status < 300:
                failures[0] += 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _python_load(
    port: int,
    maker: RequestMaker,
    token: str | None,
    connections: int,
    warmup: float,
    duration: float,
) -> Load:
    headers = f"X-API-Key: {token}\r\n" if token else ""
    measure_from = time.perf_counter() + warmup
    end = measure_from + duration
    latencies: list[float] = []
    failures = [0]
    await asyncio.gather(
        *(
            _connection(port, maker, headers, measure_from, end, latencies, failures)
            for _ in range(connections)
        )
    )
    ms = np.asarray(latencies, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if ms.size else (np.nan,) * 3
    return Load(len(latencies), duration, float(p50), float(p95), float(p99), failures[0])


def python_load(
    port: int,
    maker: RequestMaker,
    token: str | None,
    connections: int,
    warmup: float,
    duration: float,
) -> Load:
    return asyncio.run(_python_load(port, maker, token, connections, warmup, duration))


_WRK_SCRIPT = """
math.randomseed({seed})
{header}
local users = {n_users}
local route = "{route}"
request = function()
  if users > 0 then
    return wrk.format(nil, string.format(route, math.random(0, users - 1)))
  end
  return wrk.format(nil, route)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("CLREC_RESULT %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_load(
    port: int,
    maker: RequestMaker,
    token: str | None,
    connections: int,
    warmup: float,
    duration: float,
    threads: int,
) -> Load:
    """The same load through ``wrk`` (a warm-up run, then the measured run)."""
    with_user = "{user}" in maker.route
    route = maker.route.replace("{user}", "u%d").replace("{k}", str(maker.k))
    script = _WRK_SCRIPT.format(
        seed=maker.random.randrange(2**31),
        header=f'wrk.headers["X-API-Key"] = "{token}"' if token else "",
        n_users=maker.n_users if with_user else 0,
        route=route,
    )
    threads = max(1, min(threads, connections))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        results = []
        for seconds in (warmup, duration):
            if seconds <= 0:
                continue
            command = [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                handle.name,
                f"http://127.0.0.1:{port}",
            ]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            line = next(x for x in output.splitlines() if x.startswith("CLREC_RESULT"))
            results.append(line.split()[1:])
    finally:
        os.unlink(handle.name)
    count, micros, errors, p50, p95, p99 = results[-1]
    return Load(
        int(count),
        int(micros) / 1e6,
        float(p50) / 1e3,
        float(p95) / 1e3,
        float(p99) / 1e3,
        int(errors),
    )


# ---------------------------------------------------------------------- one case


@dataclass
class Case:
    n_items: int
    index: str
    recall: float | None
    index_build_s: float | None
    index_source: str
    start_s: float
    loads: list[tuple[int, Load, Load]]  # (connections, recommendations, floor)
    peak_rss_mb: float


def run_case(
    artifact: Path, n_items: int, index: str, args: argparse.Namespace, client: str
) -> Case:
    from clrec.serving.settings import default_database_url
    from clrec.serving.store import Store

    # one data folder per artifact and index: a built HNSW graph is cached there between
    # runs (data_dir/index-cache); the database starts empty every time
    data_dir = args.work_dir / f"service-{artifact.name}-{index}"
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*data_dir.glob("service.db*"), data_dir / "store.json"]:
        stale.unlink(missing_ok=True)  # a fresh store, and the folder's record of the old one
    token: str | None = None
    if args.auth:
        store = Store(default_database_url(data_dir))
        token = store.create_key("bench-serve-load", "read").token
        store.close()
    serve_args = [
        str(artifact),
        "--host",
        "127.0.0.1",
        "--workers",
        str(args.workers),
        "--index",
        index,
        "--data-dir",
        str(data_dir),
        "--rate-limit",
        "0",
        "--log-level",
        args.server_log_level,
        "--auth" if args.auth else "--no-auth",
    ]
    log = data_dir / "server.log"
    print(f"[{n_items:,} items, {index}] starting clrec serve ...", file=sys.stderr, flush=True)
    server = Server(serve_args, log, args.start_timeout)
    try:
        report = server.ready.get("index") or {}
        print(
            f"[{n_items:,} items, {index}] ready in {server.start_seconds:.1f} s: "
            f"recall@10 {report.get('recall@10')}, build {report.get('build_seconds')} s",
            file=sys.stderr,
            flush=True,
        )
        status, body = get_json(f"{server.base}/v1/users/u0/recommendations?k={args.k}", token)
        if status != 200 or len(body["items"]) != args.k:
            raise RuntimeError(f"sanity request failed: {status} {body}")

        def drive(route: str, connections: int) -> Load:
            maker = RequestMaker(route, args.users, args.k, args.seed)
            if client == "wrk":
                return wrk_load(
                    server.port,
                    maker,
                    token,
                    connections,
                    args.warmup,
                    args.duration,
                    min(args.wrk_threads, connections),
                )
            return python_load(server.port, maker, token, connections, args.warmup, args.duration)

        loads = [(c, drive(ROUTE, c), drive(FLOOR_ROUTE, c)) for c in args.connections]
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    if not args.keep_data:
        for stale in [
            *data_dir.glob("service.db*"),
            data_dir / "store.json",
            data_dir / "server.log",
        ]:
            stale.unlink(missing_ok=True)
    recall = report.get("recall@10")
    build = report.get("build_seconds")
    return Case(
        n_items=n_items,
        index=index,
        recall=None if recall is None else float(recall),
        index_build_s=None if build is None else float(build),
        index_source=str(report.get("source", "built")),
        start_s=server.start_seconds,
        loads=loads,
        peak_rss_mb=rss,
    )


# ---------------------------------------------------------------------- report


def table(cases: list[Case]) -> str:
    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None or value != value else format(value, spec)

    lines = [
        "| items | index | recall@10 | ready s (index s, source) | connections | req/s "
        "| p50 ms | p95 ms | p99 ms | non-2xx | floor req/s (/healthz) | floor p99 ms "
        "| req/s ÷ floor | server peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        for connections, load, floor in c.loads:
            ratio = load.rps / floor.rps if floor.rps else None
            lines.append(
                f"| {c.n_items:,} | {c.index} | {fmt(c.recall, '.4f')} "
                f"| {c.start_s:.1f} ({fmt(c.index_build_s, '.1f')}, {c.index_source}) "
                f"| {connections} | {load.rps:,.0f} "
                f"| {fmt(load.p50_ms, '.1f')} | {fmt(load.p95_ms, '.1f')} "
                f"| {fmt(load.p99_ms, '.1f')} | {load.errors} | {floor.rps:,.0f} "
                f"| {fmt(floor.p99_ms, '.1f')} | {fmt(ratio, '.2f')} | {c.peak_rss_mb:,.0f} |"
            )
    return "\n".join(lines)


def notes(args: argparse.Namespace, client: str) -> str:
    who = (
        f"wrk ({args.wrk_threads} threads)"
        if client == "wrk"
        else "Python asyncio HTTP/1.1 client in the bench process"
    )
    auth = "an API key checked on every request" if args.auth else "--no-auth"
    return (
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"commit {commit()}; {datetime.now(UTC):%Y-%m-%d}. Command: "
        f"`{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`.\n"
        f"Client: {who} (at most one thread per connection), keep-alive connections as "
        f"listed, {args.warmup:g} s warm-up then {args.duration:g} s measured per route and "
        f"connection count; `GET {ROUTE.format(user='{id}', k=args.k)}` for random users of "
        f"{args.users:,}. Server: `clrec serve` (uvicorn with uvloop and httptools, "
        f"{args.workers} worker(s), default HNSW settings (m 16, ef_search 96), "
        f"`--rate-limit 0`, {auth}, `--log-level {args.server_log_level}`). Floor: `GET "
        "/healthz` on the same server with the same client (the app has no no-op route; "
        "/healthz needs no key and does no work). Synthetic BPR artifact, 64-d Gaussian "
        f"vectors, item norms ∝ (popularity rank + 1)^-{args.norm_exponent:g}, "
        f"{args.per_user} Zipf(1) interactions per user. recall@10: the index against exact "
        "search on 256 user vectors, as the server measured it at start (/readyz); ready s: "
        "process start to /readyz 200 (artifact checks, index build or load, recall); index "
        "s / source: building the HNSW graph, or loading it from the data folder's cache "
        "(kept between runs); peak RSS: VmHWM."
    )


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=[str(s) for s in DEFAULT_SIZES],
        help="catalogue sizes (items), space- or comma-separated",
    )
    parser.add_argument("--indexes", nargs="+", default=["hnsw"], choices=["hnsw", "exact"])
    parser.add_argument(
        "--exact-sizes",
        nargs="*",
        default=["100000"],
        help="sizes that also run the exact index (none: pass the flag alone)",
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--per-user", type=int, default=20, help="interactions per user")
    parser.add_argument("--norm-exponent", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[1, 8, 32], help="one run per count"
    )
    parser.add_argument("--workers", type=int, default=1, help="clrec serve --workers")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds")
    parser.add_argument("--client", choices=["auto", "python", "wrk"], default="auto")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--auth", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--start-timeout", type=float, default=3600.0)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-serve-load"))
    parser.add_argument("--rebuild", action="store_true", help="build the artifacts anew")
    parser.add_argument("--keep-data", action="store_true", help="keep databases and logs")
    parser.add_argument(
        "--append",
        nargs="?",
        type=Path,
        const=Path("BENCHMARKS.md"),
        default=None,
        help="append the table to this Markdown file (default BENCHMARKS.md)",
    )
    args = parser.parse_args(argv)
    args.sizes = _ints(args.sizes)
    args.exact_sizes = set(_ints(args.exact_sizes))
    return args


def _ints(values: list[str]) -> list[int]:
    return [int(v.replace("_", "")) for text in values for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--client wrk: wrk is not on PATH")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    for n_items in args.sizes:
        out = args.work_dir / artifact_name(n_items, args.users, args.dim, args.seed)
        if args.rebuild or not (out / "artifact.json").is_file():
            print(f"[{n_items:,} items] building the artifact ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            build_artifact(
                out,
                n_items=n_items,
                n_users=args.users,
                dim=args.dim,
                per_user=args.per_user,
                norm_exponent=args.norm_exponent,
                seed=args.seed,
            )
            print(
                f"[{n_items:,} items] artifact built in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        indexes = list(dict.fromkeys(args.indexes))
        if n_items in args.exact_sizes and "exact" not in indexes:
            indexes.append("exact")
        for index in indexes:
            cases.append(run_case(out, n_items, index, args, client))
    text = notes(args, client) + "\n\n" + table(cases) + "\n"
    publish(text, args.append, "## Serving load (bench/serve_load.py)")


if __name__ == "__main__":
    main()
