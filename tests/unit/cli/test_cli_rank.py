"""`clrec rank train / evaluate` (clrec.cli.rank): the ranking stage over a popularity run,
evaluated again to the same figures, and bad arguments as one clear line.

More: tests/unit/ranking/test_pipeline.py (the report's figures against the run's own
per-user metrics on ml-latest-small, the leakage test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import assert_user_error, runner

from clrec.cli import app


def test_rank_train_then_evaluate(runs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    out = tmp_path / "ranker"
    args = ["rank", "train", str(runs["popularity"]), "--out", str(out), "--depth", "10"]
    args += ["--rounds", "20", "--no-ablation", "--threads", "1", "--no-progress"]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{\n") :])
    saved = json.loads((out / "report.json").read_text())
    assert printed == {key: saved[key] for key in ("end_to_end", "latency")}
    end = printed["end_to_end"]
    assert end["users"] == 25 and end["candidates_per_user"] > 10  # 24 users + the lurker
    assert {"retrieve_ndcg@10", "rerank_ndcg@10", "rerank_ndcg@10_change_95"} <= set(end)
    assert list((tmp_path / "cache").iterdir())  # the titles' vectors were cached there

    again = runner.invoke(app, ["rank", "evaluate", str(out)])
    assert again.exit_code == 0, again.output
    reevaluated = json.loads(again.stdout[again.stdout.index("{\n") :])
    assert reevaluated["end_to_end"]["rerank_ndcg@10"] == pytest.approx(end["rerank_ndcg@10"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "{popularity}", "--out", "{tmp}/r", "--click-model", "full"],
            "unknown click model 'full'",
        ),
        (
            ["train", "{popularity}", "--out", "{tmp}/r", "--retrievers", "model,bm25"],
            "retrievers must be distinct names",
        ),
        (["train", "{tmp}", "--out", "{tmp}/r"], "not a clrec run folder"),
        (["evaluate", "{tmp}"], "not a ranker folder"),
    ],
    ids=["click model", "retrievers", "train run", "evaluate"],
)
def test_a_bad_argument_is_one_clear_line(
    args: list[str], message: str, runs: dict[str, Path], tmp_path: Path
) -> None:
    places = {"tmp": tmp_path, **runs}
    result = runner.invoke(app, ["rank", *(arg.format(**places) for arg in args)])
    assert_user_error(result, message)
