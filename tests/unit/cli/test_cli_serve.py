"""`clrec export` and `clrec serve` (clrec.cli.serve): the artifact a run becomes, the service
`serve` starts on it, and bad arguments as one clear line.

`serve` in its own process, over real HTTP: tests/integration/test_service_process.py
(slow). Here uvicorn's `run` is replaced, and the app factory `serve` names is started in
process on the settings `serve` handed over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cli_support import assert_user_error, runner

from clrec.cli import app
from clrec.data.schema import Dataset
from clrec.serving.artifact import load_artifact


@pytest.fixture(scope="module")
def artifact(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BPR run exported, for the serve tests."""
    out = tmp_path_factory.mktemp("cli-artifact") / "artifact"
    result = runner.invoke(app, ["export", str(runs["bpr"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_export_writes_a_verified_artifact(tmp_path: Path) -> None:
    config = tmp_path / "bpr.yaml"
    config.write_text(
        "data: {name: ml-latest-small, min_rating: 4}\n"
        "model: {name: bpr, params: {epochs: 2, progress: false}}\n"
        "evaluation: {progress: false}\n"
    )
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(config), "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    artifact = tmp_path / "artifact"
    result = runner.invoke(app, ["export", str(run), "--out", str(artifact)])
    assert result.exit_code == 0, result.output
    assert "bpr" in result.output and "64-d" in result.output
    loaded = load_artifact(artifact)
    assert loaded.model.item_vectors().shape == (loaded.n_items, 64)
    again = runner.invoke(app, ["export", str(run), "--out", str(artifact)])
    assert again.exit_code != 0 and "overwrite" in again.output
    replaced = runner.invoke(app, ["export", str(run), "--out", str(artifact), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output


def test_export_prints_the_artifact_it_wrote(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    result = runner.invoke(app, ["export", str(runs["bpr"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    # every rating of the tiny catalogue counts: 25 users, 25 items; BPR's vectors are 8-d
    assert result.stdout == f"wrote {out}: bpr, 25 users × 25 items, 8-d\n"
    loaded = load_artifact(out)  # checksums, shapes and finite vectors verified
    dataset = Dataset.load(runs["bpr"] / "dataset")
    assert loaded.user_ids == dataset.users["id"].tolist()
    assert loaded.item_ids == dataset.items["id"].tolist()
    again = runner.invoke(app, ["export", str(runs["bpr"]), "--out", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output


def test_serve_starts_the_service_on_the_artifact(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi", reason="clrec serve needs the serve extra")
    import uvicorn
    import uvicorn.importer
    from fastapi.testclient import TestClient

    from clrec.serving.app import SETTINGS_ENV

    calls: list[tuple[str, dict[str, Any], str]] = []

    def fake_run(target: str, **options: Any) -> None:
        calls.append((target, options, os.environ[SETTINGS_ENV]))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setenv(SETTINGS_ENV, "")  # serve sets it; the test's end restores it
    data = tmp_path / "service"
    created = runner.invoke(app, ["keys", "create", "--data-dir", str(data), "--name", "t"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    args = ["serve", str(artifact), "--data-dir", str(data), "--port", "8123", "--max-k", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    [(target, options, settings)] = calls
    assert target == "clrec.serving.app:create_app_from_env" and options["factory"] is True
    assert (options["host"], options["port"], options["workers"]) == ("127.0.0.1", 8123, 1)
    # hostile clients: a header deadline, keep-alive and a concurrency limit, safe by default
    from clrec.serving.protocol import HeaderDeadlineProtocol

    assert options["http"] is HeaderDeadlineProtocol
    assert (options["timeout_keep_alive"], options["limit_concurrency"]) == (5, 1000)
    assert json.loads(settings)["header_timeout_s"] == 10.0
    assert json.loads(settings)["max_k"] == 5
    assert json.loads(settings)["realtime_users"] is True
    frozen = runner.invoke(app, [*args, "--frozen"])
    assert frozen.exit_code == 0, frozen.output
    assert json.loads(calls.pop()[2])["realtime_users"] is False
    monkeypatch.setenv(SETTINGS_ENV, settings)
    with TestClient(uvicorn.importer.import_from_string(target)()) as client:
        ready = client.get("/readyz").json()
        assert (ready["status"], ready["model"], ready["users"], ready["items"]) == (
            "ready",
            "bpr",
            25,
            25,
        )
        path = "/v1/users/u3/recommendations"
        assert client.get(path, params={"k": 3}).status_code == 401  # a key is required
        headers = {"X-API-Key": token}
        answer = client.get(path, params={"k": 3}, headers=headers)
        assert answer.status_code == 200 and len(answer.json()["items"]) == 3
        assert client.get(path, params={"k": 6}, headers=headers).status_code == 422


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "{tmp}", "--out", "{tmp}/a"], "not a finished clrec run folder"),
        (["export", "{popularity}", "--out", "{tmp}/a"], "cannot be exported"),
        (["export", "{bpr}", "--out", "{artifact}"], "is not empty"),
        (["serve", "{tmp}/nothing"], "not a clrec artifact"),
        (["serve", "{artifact}", "--index", "annoy"], "index.kind"),
        (["serve", "{artifact}", "--ranker", "int4"], "ranker"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_a_bad_argument_is_one_clear_line(
    args: list[str], message: str, runs: dict[str, Path], artifact: Path, tmp_path: Path
) -> None:
    places = {"tmp": tmp_path, "artifact": artifact, **runs}
    result = runner.invoke(app, [arg.format(**places) for arg in args])
    assert_user_error(result, message)
