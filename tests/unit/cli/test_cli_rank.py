"""`clrec rank train / evaluate` (clrec.cli.rank): a head-only ranker on the tiny random BERT
over a popularity run, evaluated again to the same figures, and bad arguments as one clear
line.

More: tests/unit/ranking/test_pipeline.py (the report's figures against the run's own
per-user metrics on ml-latest-small).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import assert_user_error, runner

from clrec.cli import app
from tiny_bert import make_tiny_bert


@pytest.mark.slow  # the tiny BERT's first load and fit take ~10 s on two cores
def test_rank_train_then_evaluate(runs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("peft")
    out = tmp_path / "ranker"
    args = ["rank", "train", str(runs["popularity"]), "--out", str(out), "--mode", "head"]
    args += ["--model", str(make_tiny_bert(tmp_path / "bert")), "--max-users", "12"]
    args += ["--epochs", "1", "--batch-size", "16", "--max-length", "48", "--depth", "10"]
    result = runner.invoke(app, [*args, "--test-users", "10", "--threads", "1"])
    assert result.exit_code == 0, result.output
    # the fit's progress lines come first, then the report's JSON
    printed = json.loads(result.stdout[result.stdout.index("{\n") :])
    saved = json.loads((out / "report.json").read_text())
    assert printed == {key: saved[key] for key in ("test_pairs", "end_to_end", "latency")}
    end = printed["end_to_end"]
    assert (end["users"], end["depth"]) == (10, 10)
    # re-ranking all 10 candidates only re-orders them: recall@10 cannot change
    assert end["rerank_recall@10"] == pytest.approx(end["retrieve_recall@10"])
    assert 0 <= printed["test_pairs"]["auc"] <= 1

    again = runner.invoke(app, ["rank", "evaluate", str(out)])
    assert again.exit_code == 0, again.output
    reevaluated = json.loads(again.stdout)
    assert reevaluated["test_pairs"]["auc"] == pytest.approx(printed["test_pairs"]["auc"])
    assert reevaluated["end_to_end"]["rerank_ndcg@10"] == pytest.approx(end["rerank_ndcg@10"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{popularity}", "--out", "{tmp}/r", "--mode", "full"], "unknown mode 'full'"),
        (["train", "{tmp}", "--out", "{tmp}/r"], "not a clrec run folder"),
        (["evaluate", "{tmp}"], "not a ranker folder"),
    ],
    ids=["train mode", "train run", "evaluate"],
)
def test_a_bad_argument_is_one_clear_line(
    args: list[str], message: str, runs: dict[str, Path], tmp_path: Path
) -> None:
    places = {"tmp": tmp_path, **runs}
    result = runner.invoke(app, ["rank", *(arg.format(**places) for arg in args)])
    assert_user_error(result, message)
