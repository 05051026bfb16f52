"""The service as it runs in production: ``clrec serve`` in its own process (uvicorn), keys
from ``clrec keys create``, real HTTP on the loopback interface, and a ``kill -9`` between
two runs on the same database: every acknowledged event and item must survive it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.experiment import run_experiment
from clrec.serving.artifact import export_artifact, load_artifact
from clrec.serving.settings import default_database_url

pytestmark = pytest.mark.slow

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
START_TIMEOUT_S = 90.0
PROFILE_TEXT = "private profile: reach me at jane@example.com (1991)"


def _artifact(root: Path) -> Path:
    """A tags-only clrec model on 40 users × 30 movies (users prefer one genre)."""
    rng = np.random.default_rng(0)
    items = [
        {
            "id": f"m{i}",
            "title": f"Movie {i} ({1990 + i % 3})",
            "genres": GENRES[i % 5] + ("|" + GENRES[(i + 2) % 5] if i % 3 == 0 else ""),
        }
        for i in range(30)
    ]
    rows = []
    for u in range(40):
        liked = [i for i in range(30) if i % 5 == u % 5]
        for t, i in enumerate(rng.choice(liked, 4, replace=False)):
            rows.append((f"u{u}", f"m{i}", 1_000_000 + t))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    data = Dataset.from_external(
        "process-movies",
        frame,
        item_content=pd.DataFrame(items),
        item_fields={"title": "text", "genres": "tags"},
    ).save(root / "data")
    config = RunConfig.from_mapping(
        {
            "data": {"name": str(data)},
            "split": {"scheme": "cold-item", "ratios": [0.7, 0.1, 0.2], "seed": 1},
            "model": {
                "name": "clrec",
                "params": {
                    "embedding_size": 8,
                    "content": {"modalities": ["tags"], "cache_dir": None},
                    "prior": "none",
                    "similarity": "cosine",
                    "epochs": 2,
                    "batch_size": 32,
                    "patience": 0,
                    "device": "cpu",
                    "num_threads": 1,
                    "progress": False,
                },
            },
            "evaluation": {"ks": [5, 10], "progress": False},
            "report": False,
        }
    )
    run_experiment(config, root / "run")
    return export_artifact(root / "run", root / "artifact")


def _cold_item(artifact: Path) -> tuple[str, dict[str, str]]:
    """An item whose vector is its content's alone and unlike any other's, and its fields:
    a new item with the same tags gets exactly its vector."""
    art = load_artifact(artifact)
    fields = [
        {"title": str(row["title"]), "genres": str(row["genres"])}
        for _, row in art.catalogue.iterrows()
    ]
    same = np.isclose(art.embed_items(fields), art.item_vectors, atol=1e-5).all(axis=1)
    unique = (art.item_vectors @ art.item_vectors.T > 1 - 1e-4).sum(axis=1) == 1
    row = int(np.flatnonzero(same & unique)[0])
    return art.item_ids[row], fields[row]


def _clrec() -> list[str]:
    script = Path(sys.executable).parent / "clrec"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from clrec.cli import app; app()"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``clrec serve`` process on a free loopback port."""

    def __init__(self, artifact: Path, db_url: str, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    *_clrec(),
                    "serve",
                    str(artifact),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--db",
                    db_url,
                    "--data-dir",
                    str(log.parent / "service-data"),
                    "--log-level",
                    "info",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text()}")
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise AssertionError(f"the server was not ready in time:\n{self.log.read_text()}")

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["X-API-Key"] = token
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def kill_hard(self) -> None:
        """``kill -9``: no shutdown, no flush, no lifespan exit."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_acknowledged_writes_survive_kill_9(
    tmp_path: Path, servers: list[Server], database: str, request: pytest.FixtureRequest
) -> None:
    for package in ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client"):
        pytest.importorskip(package, reason="the service needs the serve extra")
    from clrec.serving.store import Store

    if database == "postgresql":
        db_url = request.getfixturevalue("postgres_url")  # skips without a test database
    else:
        db_url = default_database_url(tmp_path / "service")

    artifact = _artifact(tmp_path)
    ref, ref_fields = _cold_item(artifact)
    year = ref_fields["title"].rsplit("(", 1)[1]
    late = {"title": f"Late Arrival ({year}", "genres": ref_fields["genres"]}
    created = subprocess.run(
        [*_clrec(), "keys", "create", "--db", db_url, "--name", "it", "--scopes", "read,write"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    token = created.stdout.strip()
    assert token.startswith("clrec_") and "shown only this once" in created.stderr
    log = tmp_path / "server.log"

    first = Server(artifact, db_url, log)
    servers.append(first)
    status, _ = first.request("GET", "/v1/users/u3/recommendations?k=3")
    assert status == 401
    status, body = first.request("GET", "/v1/users/u3/recommendations?k=3", token=token)
    assert status == 200
    top = [item["id"] for item in body["items"]]
    events = [{"user": "u3", "item": item, "kind": "click"} for item in top[:2]]
    events.append({"user": "walk-in", "item": "m4", "kind": "view"})
    status, body = first.request("POST", "/v1/events", events, token=token)
    assert (status, body) == (200, {"recorded": 3})
    status, body = first.request("PUT", "/v1/items/late", late, token)
    assert status == 201 and body["created"] is True
    status, body = first.request(
        "POST", "/v1/recommendations", {"profile_text": PROFILE_TEXT}, token
    )
    assert status == 200
    first.kill_hard()  # straight after the acknowledgements

    store = Store(db_url)
    assert store.counts() == {"api_keys": 1, "events": 3, "items": 1}
    store.close()

    second = Server(artifact, db_url, log)
    servers.append(second)
    status, body = second.request("GET", "/readyz")
    assert body["items"] == 31 and body["users"] == 41  # the artifact's 40 + walk-in
    status, body = second.request("GET", "/v1/users/u3/recommendations?k=3", token=token)
    assert status == 200
    after = [item["id"] for item in body["items"]]
    assert len(after) == 3 and not set(top[:2]) & set(after)
    status, body = second.request("GET", "/v1/users/walk-in/recommendations?k=3", token=token)
    assert status == 200 and "m4" not in [item["id"] for item in body["items"]]
    status, body = second.request("GET", f"/v1/items/{ref}/similar?k=1", token=token)
    assert status == 200 and body["items"][0]["id"] == "late"
    assert body["items"][0]["title"] == late["title"]
    status, body = second.request("GET", "/v1/items/late/similar?k=2", token=token)
    assert status == 200 and len(body["items"]) == 2
    second.stop()

    text = log.read_text()
    assert "store replayed: items=1, reembedded_items=0" in text
    assert "GET /v1/users/{user_id}/recommendations 200" in text
    for private in (token, "jane@example.com", "private profile", "walk-in"):
        assert private not in text
