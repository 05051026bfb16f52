"""The run report: both files written, offline HTML, one image per plot kind, tables."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from clrec.evaluation.report import render_summary, write_report


def bucket(recall: float, ndcg: float, users: int) -> dict[str, float]:
    return {"recall@10": recall, "ndcg@10": ndcg, "recall@20": recall * 1.4, "users": users}


def realistic_run() -> dict[str, Any]:
    """The shape the pipeline writes for an EASE run on ml-latest-small."""
    accuracy = {
        "recall@10": 0.1834,
        "ndcg@10": 0.2417,
        "hit@10": 0.6512,
        "recall@20": 0.2761,
        "ndcg@20": 0.2583,
        "hit@20": 0.7731,
        "users": 603.0,
    }
    beyond = {
        "coverage@10": 0.0913,
        "average_popularity@10": 142.6,
        "gini@10": 0.9412,
        "tail_share@10": 0.0832,
        "coverage@20": 0.1377,
        "average_popularity@20": 118.25,
        "gini@20": 0.9185,
        "tail_share@20": 0.1207,
    }
    return {
        "model": "ease",
        "dataset": {
            "name": "ml-latest-small",
            "users": 610,
            "items": 9724,
            "interactions": 100836,
            "density": 0.016999,
            "interactions_per_user": {"min": 20, "median": 70.5, "max": 2698},
        },
        "split": {
            "config": {"scheme": "random", "ratios": [0.8, 0.1, 0.1], "seed": 2024},
            "sizes": {
                "train": {"interactions": 80668, "users": 610, "items": 8986},
                "valid": {"interactions": 10084, "users": 603, "items": 3512},
                "test": {"interactions": 10084, "users": 607, "items": 3555},
            },
            "guarantees": ["no (user, item) pair in two parts", "every user has train data"],
        },
        "valid": {k: round(v * 1.03, 6) for k, v in accuracy.items() if k != "users"},
        "test": {**accuracy, **beyond},
        "segments": {
            "test": {
                "item_popularity": {
                    "head": bucket(0.2512, 0.2301, 598),
                    "tail": bucket(0.0213, 0.0188, 412),
                    "cold": bucket(0.0, 0.0, 37),
                },
                "user_activity": {
                    "1-20": bucket(0.2104, 0.1702, 201),
                    "21-60": bucket(0.1911, 0.2253, 200),
                    ">60": bucket(0.1502, 0.3127, 202),
                },
                "cold_users": {"recall@10": 0.0123, "ndcg@10": 0.0101, "users": 4},
            }
        },
        "history": [
            {"epoch": 1, "loss": 0.693, "ndcg@10": 0.12, "seconds": 2.1},
            {"epoch": 2, "loss": 0.512, "ndcg@10": 0.19, "seconds": 2.0},
            {"epoch": 3, "loss": 0.463, "ndcg@10": 0.22, "seconds": 2.0},
        ],
        "protocol": "full ranking over all items; train items masked",
        "config": {"model": {"l2": 500.0}, "evaluation": {"ks": [10, 20]}},
        "timing": {"fit_seconds": 3.214, "evaluate_seconds": 1.502},
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The realistic run's report, rendered once (matplotlib takes about a second a plot)."""
    return write_report(realistic_run(), tmp_path_factory.mktemp("report") / "out")


def images(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)


def test_writes_both_files(written: tuple[Path, Path]) -> None:
    summary, page = written
    assert (summary.name, page.name) == ("summary.md", "report.html")
    assert summary.parent == page.parent
    assert summary.read_text().startswith("# clrec run: ease on ml-latest-small")
    assert page.read_text().startswith("<!doctype html>")


def test_html_is_self_contained(written: tuple[Path, Path]) -> None:
    _, page = written
    text = page.read_text()
    assert "<script" not in text
    assert not re.search(r"<link[^>]+href=", text)
    assert not re.search(r"(src|href)=\"https?://", text)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", text)


def test_one_embedded_png_per_plot_kind(written: tuple[Path, Path]) -> None:
    _, page = written
    found = images(page.read_text())
    kinds = [alt for alt, _ in found]
    assert kinds == ["metric@K curves", "popularity bias", "segment bars", "training curve"]
    for _, data in found:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")


def test_html_shows_metric_values_and_tables(written: tuple[Path, Path]) -> None:
    _, page = written
    text = page.read_text()
    # metric table rows: name, valid (test * 1.03 = 0.188902), test
    assert "<td>0.1889</td><td>0.1834</td>" in text
    assert "<td>142.6</td>" in text  # average_popularity@10, test only
    assert "0.2512" in text  # head bucket recall@10
    assert "ml-latest-small" in text
    assert "80,668" in text  # train interactions in the sizes table
    assert "no (user, item) pair in two parts" in text
    assert '<td class="text">model.l2</td><td class="text">500</td>' in text  # flattened
    assert "0.8, 0.1, 0.1" in text  # split ratios as written
    assert "full ranking over all items" in text


def test_no_history_means_no_training_curve(tmp_path: Path) -> None:
    run = realistic_run()
    run["history"] = []
    _, page = write_report(run, tmp_path)
    kinds = [alt for alt, _ in images(page.read_text())]
    assert "training curve" not in kinds
    assert len(kinds) == 3


def test_plots_only_for_present_data(tmp_path: Path) -> None:
    # accuracy only: no popularity plot, no segments, no training
    run = {"model": "pop", "test": {"recall@10": 0.1, "ndcg@10": 0.2}}
    _, page = write_report(run, tmp_path)
    assert [alt for alt, _ in images(page.read_text())] == ["metric@K curves"]


def test_tolerates_an_empty_or_odd_run(tmp_path: Path) -> None:
    summary, page = write_report({}, tmp_path)
    assert images(page.read_text()) == []
    assert summary.read_text().startswith("# clrec run: model")
    odd = {
        "model": None,
        "dataset": "not a dict",
        "split": {"sizes": None, "guarantees": "nope"},
        "valid": {"recall@10": None, "note": "x"},
        "test": {"recall@10": float("nan")},
        "segments": {"test": {}},
        "history": [{"epoch": 1}, "junk"],
        "timing": {},
    }
    _, page = write_report(odd, tmp_path)
    assert "<td>nan</td>" in page.read_text()


def test_summary_tables(written: tuple[Path, Path]) -> None:
    summary, _ = written
    text = summary.read_text()
    assert "- **Dataset**: ml-latest-small — 610 users, 9,724 items, 100,836 interactions" in text
    assert "scheme=random, ratios=[0.8, 0.1, 0.1], seed=2024" in text
    assert "train 80,668 interactions · 610 users · 8,986 items" in text
    assert "| metric | valid | test |" in text
    assert "| recall@10 | 0.1889 | 0.1834 |" in text
    assert "| recall@20 | 0.2844 | 0.2761 |" in text
    assert "| coverage@10 | – | 0.0913 |" in text
    assert "| segment | bucket | users | recall@10 | recall@20 | ndcg@10 |" in text
    assert "| test / item_popularity | head | 598 | 0.2512 | 0.3517 | 0.2301 |" in text
    assert "| test / item_popularity | cold | 37 | 0.0000 | 0.0000 | 0.0000 |" in text
    assert "| test / cold_users | all | 4 | 0.0123 | – | 0.0101 |" in text
    assert "fit 3.21 s, evaluate 1.50 s" in text
    assert "3 epochs; last: loss 0.4630, ndcg@10 0.2200, seconds 2" in text


def test_split_summary_without_config_key() -> None:
    # Split.summary() spreads its settings at the top level instead of under "config"
    text = render_summary({"split": {"scheme": "temporal", "seed": 1, "sizes": {}}})
    assert "scheme=temporal, seed=1" in text


def test_segments_of_any_depth() -> None:
    # buckets straight under "segments", and a family without a split level
    flat = render_summary({"segments": {"head": {"recall@10": 0.3}, "tail": {"recall@10": 0.1}}})
    assert "| segments | head | 0.3000 |" in flat
    nested = render_summary({"segments": {"item_popularity": {"cold": {"ndcg@10": 0.0}}}})
    assert "| item_popularity | cold | 0.0000 |" in nested
