"""The alert rules (deploy/prometheus/rules.yml) with Debian's Prometheus: promtool validates
them and runs their unit tests (rules_test.yml); then a real Prometheus scrapes a live
``clrec serve``, its database fails (another connection holds SQLite's write lock, so every
event write ends in "database is locked" and a 503), and the availability alert is seen
pending or firing through Prometheus's API. Skips with a reason where Prometheus is not
installed (``.ci/run`` installs Debian's ``prometheus`` package when it may)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from clrec.serving.settings import default_database_url
from live_server import Server, create_key, free_port

pytestmark = pytest.mark.slow
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name}: install Debian's prometheus package (apt-get install prometheus)")
    return found


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES / "rules.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "10 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULES / "rules_test.yml")],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _alerts(port: int) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5) as answer:
        return [
            {"name": a["labels"]["alertname"], "state": a["state"]}
            for a in json.loads(answer.read())["data"]["alerts"]
        ]


def test_a_failing_database_fires_the_availability_alert(
    tmp_path: Path, servers: list[Server], ml_small_served: Path
) -> None:
    prometheus = _tool("prometheus")
    db_url = default_database_url(tmp_path / "service")
    token = create_key(db_url, "prometheus", "read,write").stdout.strip()
    server = Server(ml_small_served, db_url, tmp_path / "server.log")
    servers.append(server)

    # the production rules, their waits shortened to seconds
    rules = re.sub(r"for: \d+m", "for: 2s", (RULES / "rules.yml").read_text())
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "key").write_text(token)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "clrec",
                "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "key")},
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # YAML reads JSON
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    database = sqlite3.connect(tmp_path / "service" / "service.db", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # Prometheus up and scraping the service
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                if not [a for a in _alerts(port) if a["name"] == "ClrecDown"]:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(3)
        assert not [a for a in _alerts(port) if a["name"] == "ClrecHighErrorRate"]

        database.execute("BEGIN EXCLUSIVE")  # the service's writes now fail: database locked
        failed: list[int] = []
        stop = threading.Event()

        def write() -> None:  # event writes, each failing after the store's busy wait
            body = [{"user": "u1", "item": "1", "kind": "click"}]
            while not stop.is_set():
                status, _ = server.request("POST", "/v1/events", body, token)
                failed.append(status)

        writers = [threading.Thread(target=write) for _ in range(4)]
        for thread in writers:
            thread.start()
        deadline = time.monotonic() + 120
        seen: list[dict[str, str]] = []
        try:
            while time.monotonic() < deadline:
                seen = [a for a in _alerts(port) if a["name"] == "ClrecHighErrorRate"]
                if seen:
                    break
                time.sleep(1)
        finally:
            stop.set()
            database.rollback()  # the writers' last requests can finish
            for thread in writers:
                thread.join(timeout=60)
        assert failed.count(503) >= 4, failed  # every writer saw the store fail
        assert seen and seen[0]["state"] in ("pending", "firing"), _alerts(port)
    finally:
        database.close()
        process.terminate()
        process.wait(timeout=30)
        log.close()
