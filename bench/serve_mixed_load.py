"""Mixed load on a content model: known-user reads, event writes and cold-start profile texts.

Issue 20 measured cold-start requests with ``profile_text`` at p50 4.5 s under a mixed load:
each one runs the language model in the request path, behind one lock, and they queued. This
benchmark serves a real content artifact (``--artifact``: a clrec model that reads text, e.g.
``clrec export runs/quickstart``) with ``clrec serve`` and drives, over ``--connections``
keep-alive connections for ``--duration`` seconds after ``--warmup``, a mix of

* ``GET /v1/users/{id}/recommendations?k=10`` for random known users (``--share-read``),
* ``POST /v1/events`` with one click of a random known user on a random item (``--share-write``),
* ``POST /v1/recommendations`` with a ``profile_text`` (the rest): one of ``--texts``
  catalogue-like texts (three random titles), so some repeat and some are new,

and reports per kind: requests, p50 / p95 / p99 latency, 503 answers (the encoder's queue
was full: the client is told to retry) and other non-2xx answers. The client is a small
asyncio HTTP/1.1 client in this process (it shares the cores with the server).

    python bench/serve_mixed_load.py --artifact artifacts/ml-small [--connections 16]
        [--duration 30] [--append [BENCHMARKS.md]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from machine import commit, cpu_name, publish
from serve_load import Server, _head_fields

KINDS = ("read", "write", "profile")


@dataclass
class Tally:
    """Latencies and statuses of one kind of request."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


class Mix:
    """Seeded choice of the next request."""

    def __init__(
        self, args: argparse.Namespace, users: list[str], items: list[str], titles: list[str]
    ) -> None:
        self.random = random.Random(args.seed)
        self.args = args
        self.users, self.items = users, items
        self.texts = [" ".join(self.random.sample(titles, 3)) for _ in range(args.texts)]

    def next(self) -> tuple[str, str, str, Any]:
        """The next request: kind, method, path and JSON body (None for a GET)."""
        draw = self.random.random()
        if draw < self.args.share_read:
            user = self.random.choice(self.users)
            return "read", "GET", f"/v1/users/{user}/recommendations?k=10", None
        if draw < self.args.share_read + self.args.share_write:
            user, item = self.random.choice(self.users), self.random.choice(self.items)
            return "write", "POST", "/v1/events", [{"user": user, "item": item, "kind": "click"}]
        text = self.random.choice(self.texts)
        return "profile", "POST", "/v1/recommendations", {"profile_text": text, "k": 10}


def encode_request(method: str, path: str, body: Any, port: int, token: str) -> bytes:
    """One HTTP/1.1 request with the key (and a JSON body)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {token}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body).encode()
    head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
    return head.encode() + data


async def _connection(
    port: int,
    mix: Mix,
    token: str,
    measure_from: float,
    end: float,
    tallies: dict[str, Tally],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while time.perf_counter() < end:
        kind, method, path, body = mix.next()
        started = time.perf_counter()
        writer.write(encode_request(method, path, body, port, token))
        head = await reader.readuntil(b"\r\n\r\n")
        status, length, close = _head_fields(head)
        await reader.readexactly(length or 0)
        done = time.perf_counter()
        if started >= measure_from and done <= end:
            tallies[kind].latencies.append(done - started)
            tallies[kind].statuses.append(status)
        if close:
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


async def _load(port: int, mix: Mix, token: str, args: argparse.Namespace) -> dict[str, Tally]:
    tallies = {kind: Tally() for kind in KINDS}
    measure_from = time.perf_counter() + args.warmup
    end = measure_from + args.duration
    await asyncio.gather(
        *(
            _connection(port, mix, token, measure_from, end, tallies)
            for _ in range(args.connections)
        )
    )
    return tallies


def table(tallies: dict[str, Tally], seconds: float) -> str:
    lines = [
        "| request | requests / s | p50 ms | p95 ms | p99 ms | 503 (retry) | other non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        tally = tallies[kind]
        ms = np.asarray(tally.latencies) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if ms.size else (np.nan,) * 3
        statuses = np.asarray(tally.statuses)
        busy = int((statuses == 503).sum())
        other = int(((statuses < 200) | (statuses >= 300)).sum()) - busy
        lines.append(
            f"| {kind} | {len(ms) / seconds:.1f} | {p50:.1f} | {p95:.1f} | {p99:.1f} "
            f"| {busy} | {other} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--share-read", type=float, default=0.8)
    parser.add_argument("--share-write", type=float, default=0.1)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-serve-mixed"))
    parser.add_argument("--append", nargs="?", type=Path, const=Path("BENCHMARKS.md"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from clrec.serving.artifact import load_artifact
    from clrec.serving.settings import default_database_url
    from clrec.serving.store import Store

    artifact = load_artifact(args.artifact)
    titles = [str(t) for t in artifact.catalogue.get("title", artifact.catalogue["id"]).tolist()]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*args.work_dir.glob("service.db*"), args.work_dir / "store.json"]:
        stale.unlink(missing_ok=True)
    store = Store(default_database_url(args.work_dir))
    token = store.create_key("bench-mixed", "read,write").token
    store.close()
    serve = [
        str(args.artifact),
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(args.work_dir),
        "--rate-limit",
        "0",
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
    ]
    server = Server(serve, args.work_dir / "server.log", 300.0)
    try:
        mix = Mix(args, list(artifact.user_ids), list(artifact.item_ids), titles)
        tallies = asyncio.run(_load(server.port, mix, token, args))
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    text = (
        f"Machine: {cpu_name()}; commit {commit()}; {args.connections} connections, "
        f"{args.workers} worker(s), {args.duration:.0f} s after {args.warmup:.0f} s warm-up; "
        f"mix {args.share_read:.0%} reads / {args.share_write:.0%} event writes / "
        f"{1 - args.share_read - args.share_write:.0%} profile texts ({args.texts} distinct); "
        f"artifact `{args.artifact}` ({artifact.model_name}); server peak RSS {rss:,.0f} MB.  \n"
        f"Command: `{command}`\n\n" + table(tallies, args.duration) + "\n"
    )
    publish(text, args.append, "## Mixed load with profile texts (bench/serve_mixed_load.py)")


if __name__ == "__main__":
    main()
