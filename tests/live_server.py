"""A real ``clrec serve`` process on a free loopback port and a short ml-latest-small artifact
to serve, for the integration tests (a plain helper module: pytest collects only ``test_*``
files)."""

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
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 120.0


def clrec_command() -> list[str]:
    script = Path(sys.executable).parent / "clrec"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from clrec.cli import app; app()"]


def create_key(db_url: str, name: str, scopes: str) -> subprocess.CompletedProcess[str]:
    """``clrec keys create`` on ``db_url``: the token on stdout, the notice on stderr."""
    command = [*clrec_command(), "keys", "create", "--db", db_url, "--name", name]
    return subprocess.run(
        [*command, "--scopes", scopes], capture_output=True, text=True, check=True, timeout=120
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``clrec serve`` process on a free loopback port."""

    def __init__(self, artifact: Path, db_url: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [
                    *clrec_command(),
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
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json", **(extra or {})}
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


def ml_small_artifact(root: Path, *, report: bool = False) -> Path:
    """Train a short tags-only clrec model on the bundled ml-latest-small (genres and user
    tags as content, 3 epochs) under ``root`` and export its artifact (with the run's HTML
    report when ``report``)."""
    from clrec.config import RunConfig
    from clrec.experiment import run_experiment
    from clrec.serving.artifact import export_artifact

    params: dict[str, Any] = {
        "embedding_size": 32,
        "content": {"modalities": ["tags"], "cache_dir": None},
        "prior": "none",
        "similarity": "cosine",
        "epochs": 3,
        "batch_size": 256,
        "patience": 0,
        "seed": 0,
        "device": "cpu",
        "num_threads": 2,
        "progress": False,
    }
    config = RunConfig.from_mapping(
        {
            "data": {"name": "ml-latest-small", "min_rating": 3.5},
            "split": {"scheme": "random", "ratios": [0.8, 0.1, 0.1], "seed": 2020},
            "model": {"name": "clrec", "params": params},
            "evaluation": {"ks": [10], "progress": False},
            "report": report,
        }
    )
    run_experiment(config, root / "run")
    return export_artifact(root / "run", root / "artifact")
