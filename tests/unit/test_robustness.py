"""Noise injection and the noise curve: exact counts, never a real pair, held-out parts left
alone, seeded draws, and a curve whose clean point is the clean experiment."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clrec.cli import app
from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.data.splits import split_dataset
from clrec.errors import ClrecError
from clrec.experiment import prepare_data, run_experiment
from clrec.robustness import (
    INJECTED,
    NoiseConfig,
    bootstrap_changes,
    inject_noise,
    noise_curve,
    parse_rates,
    run_label,
)


def _frame(n_users: int = 12, n_items: int = 30, per_user: int = 5, seed: int = 0) -> pd.DataFrame:
    """Interactions with ratings and per-user timestamps (user u's times lie in u·1000 + 0..99)."""
    rng = np.random.default_rng(seed)
    rows = [
        (user, item, float(rng.integers(1, 6)), user * 1000 + int(rng.integers(0, 100)))
        for user in range(n_users)
        for item in rng.choice(n_items, size=per_user, replace=False)
    ]
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def _keys(frame: pd.DataFrame, n_items: int) -> set[int]:
    return set((frame["user"].to_numpy() * n_items + frame["item"].to_numpy()).tolist())


# ---------------------------------------------------------------------- injection
@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.2, 1.0])
def test_injects_exactly_round_rate_times_train(rate: float) -> None:
    train = _frame().iloc[:57]  # 57 rows: 0.05 → 3 (2.85), 0.1 → 6 (5.7), 0.2 → 11 (11.4)
    noisy = inject_noise(train, 12, 30, rate, np.random.default_rng(0))
    assert int(noisy[INJECTED].sum()) == round(rate * 57)
    assert len(noisy) == 57 + round(rate * 57)
    # the real rows come first, unchanged
    pd.testing.assert_frame_equal(
        noisy.loc[~noisy[INJECTED]].drop(columns=INJECTED), train.reset_index(drop=True)
    )


def test_fake_pairs_are_new_distinct_and_drawn_from_train_entities() -> None:
    train, held_out = _frame().iloc[:50], _frame().iloc[50:]
    noisy = inject_noise(train, 12, 30, 1.0, np.random.default_rng(1), exclude=[held_out])
    fake = noisy.loc[noisy[INJECTED]]
    keys = fake["user"].to_numpy() * 30 + fake["item"].to_numpy()
    assert len(set(keys.tolist())) == len(fake) == 50  # no fake pair twice
    assert not _keys(fake, 30) & _keys(train, 30)  # never a pair the user has in train
    assert not _keys(fake, 30) & _keys(held_out, 30)  # nor a held-out one
    assert set(fake["user"]) <= set(train["user"])  # noise invents no user or item
    assert set(fake["item"]) <= set(train["item"])


def test_fake_rows_look_like_train_rows() -> None:
    train = _frame()
    noisy = inject_noise(train, 12, 30, 0.5, np.random.default_rng(2))
    fake = noisy.loc[noisy[INJECTED]]
    assert set(fake["rating"]) <= set(train["rating"])  # copied from real rows
    span = train.groupby("user")["timestamp"].agg(["min", "max"])
    low = span["min"].reindex(fake["user"]).to_numpy()
    high = span["max"].reindex(fake["user"]).to_numpy()
    assert ((fake["timestamp"].to_numpy() >= low) & (fake["timestamp"].to_numpy() <= high)).all()
    assert list(noisy.columns) == [*train.columns, INJECTED]


def test_users_are_drawn_uniformly_not_by_activity() -> None:
    # user 0 has 60 items, users 1–9 two each: activity-weighted draws would give user 0 ~77 %
    rows = [(0, item) for item in range(60)] + [
        (user, item) for user in range(1, 10) for item in (user, user + 10)
    ]
    train = pd.DataFrame(rows, columns=["user", "item"])
    noisy = inject_noise(train, 10, 60, 1.0, np.random.default_rng(3))
    fake = noisy.loc[noisy[INJECTED]]
    assert (fake["user"] == 0).mean() < 0.2  # uniform over 10 users with free pairs: ~0.1


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    train = _frame()
    first = inject_noise(train, 12, 30, 0.3, np.random.default_rng(7))
    again = inject_noise(train, 12, 30, 0.3, np.random.default_rng(7))
    other = inject_noise(train, 12, 30, 0.3, np.random.default_rng(8))
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_refuses_impossible_or_bad_requests() -> None:
    full = pd.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 0, 1]})  # every pair is taken
    with pytest.raises(ClrecError, match="only 0"):
        inject_noise(full, 2, 2, 0.5, np.random.default_rng(0))
    with pytest.raises(ClrecError, match="rate"):
        inject_noise(_frame(), 12, 30, 1.5, np.random.default_rng(0))
    with pytest.raises(ClrecError, match="item ids"):
        inject_noise(_frame(), 12, 10, 0.1, np.random.default_rng(0))


def test_noise_config_and_rates() -> None:
    assert parse_rates("0.05, 0.1,0.2") == (0.05, 0.1, 0.2)
    assert NoiseConfig(rates=(0.2, 0.05, 0.2)).curve == (0.0, 0.05, 0.2)
    for text in ("", "a,b", "0.1,1.5", "-0.1"):
        with pytest.raises(ClrecError):
            parse_rates(text)
    with pytest.raises(ClrecError, match="kind"):
        NoiseConfig(kind="adversarial")  # type: ignore[arg-type]
    assert run_label(0.0) == "clean" and run_label(0.1) == "noise-0.1"


def test_bootstrap_changes_by_hand_and_paired() -> None:
    clean = np.array([0.2, 0.4, 0.0, 0.6])
    noisy = np.array([0.1, 0.4, 0.1, 0.3])
    changes = bootstrap_changes(
        {"a": (clean, noisy), "same": (clean, noisy), "flat": (noisy, noisy)}, resamples=500
    )
    assert {name: values.shape for name, values in changes.items()} == {
        "a": (500,),
        "same": (500,),
        "flat": (500,),
    }
    np.testing.assert_array_equal(changes["a"], changes["same"])  # the same user draws
    np.testing.assert_array_equal(changes["flat"], np.zeros(500))
    # one resample of all four users once each is the plain relative change: 0.9 / 1.2 − 1
    draws = np.random.default_rng(0).integers(0, 4, size=(500, 4))
    whole = np.flatnonzero((np.sort(draws, axis=1) == np.arange(4)).all(axis=1))
    assert len(whole) > 0
    np.testing.assert_allclose(changes["a"][whole], -0.25)
    assert float(np.median(changes["a"])) == pytest.approx(-0.25, abs=0.15)
    again = bootstrap_changes({"a": (clean, noisy)}, resamples=500)
    np.testing.assert_array_equal(again["a"], changes["a"])  # seeded
    with pytest.raises(ClrecError, match="same"):
        bootstrap_changes({"a": (clean, noisy[:3])})
    with pytest.raises(ClrecError, match="resamples"):
        bootstrap_changes({"a": (clean, noisy)}, resamples=0)


# ---------------------------------------------------------------------- the curve
def _communities(root: Path) -> Path:
    """4 communities of 15 users; each user has 12 of their community's 20 items."""
    rng = np.random.default_rng(0)
    rows = [
        (f"u{user}", f"i{(user % 4) * 20 + item}", user * 100 + step)
        for user in range(60)
        for step, item in enumerate(rng.choice(20, size=12, replace=False))
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return Dataset.from_external("communities", frame).save(root / "communities")


def _config(data: Path, model: str, params: dict[str, Any]) -> RunConfig:
    return RunConfig.from_mapping(
        {
            "data": {"name": str(data)},
            "split": {"scheme": "random", "seed": 3},
            "model": {"name": model, "params": params},
            "evaluation": {"ks": [5, 10], "progress": False},
            "report": False,
        }
    )


BPR = {"epochs": 2, "batch_size": 64, "seed": 0, "progress": False, "num_threads": 1}


def test_clean_point_is_the_clean_experiment(tmp_path: Path) -> None:
    config = _config(_communities(tmp_path), "bpr", BPR)
    result = noise_curve(config, NoiseConfig(rates=(0.1, 0.2), seed=5), out=tmp_path / "curve")
    clean = run_experiment(config, tmp_path / "experiment")
    runs = result["runs"]
    assert [run["rate"] for run in runs] == [0.0, 0.1, 0.2]
    assert runs[0]["test"] == clean["test"] and runs[0]["valid"] == clean["valid"]
    assert runs[0]["drop"] == 0.0
    train_size = clean["split"]["sizes"]["train"]["interactions"]
    assert [run["fake_interactions"] for run in runs] == [
        0,
        round(0.1 * train_size),
        round(0.2 * train_size),
    ]
    assert [run["train_interactions"] for run in runs] == [
        train_size + r["fake_interactions"] for r in runs
    ]
    for run in runs:
        assert run["test"]["users"] == clean["test"]["users"]  # the same test users
        ndcg = run["test"]["ndcg@10"]
        assert run["drop"] == pytest.approx(
            (clean["test"]["ndcg@10"] - ndcg) / clean["test"]["ndcg@10"]
        )
    saved = json.loads((tmp_path / "curve" / "robustness.json").read_text())
    assert saved["runs"][1]["test"] == runs[1]["test"]
    assert saved["noise"] == {"rates": [0.1, 0.2], "seed": 5, "kind": "random", "metric": "ndcg@10"}


def test_noise_goes_to_train_only_and_is_nested(tmp_path: Path) -> None:
    config = _config(_communities(tmp_path), "popularity", {})
    noise_curve(config, NoiseConfig(rates=(0.1, 0.3)), out=tmp_path / "curve")
    dataset = prepare_data(config.data, None)
    split = split_dataset(dataset, config.split)
    small = pd.read_parquet(tmp_path / "curve" / "noise-0.1" / "injected.parquet")
    large = pd.read_parquet(tmp_path / "curve" / "noise-0.3" / "injected.parquet")
    assert len(small) == round(0.1 * len(split.train)) and len(large) == round(
        0.3 * len(split.train)
    )
    pd.testing.assert_frame_equal(small, large.iloc[: len(small)])  # 10 % ⊂ 30 %
    n_items = dataset.n_items
    for part in (split.train, split.valid, split.test):
        assert not _keys(large, n_items) & _keys(part, n_items)
    per_user = [
        pd.read_parquet(tmp_path / "curve" / run_label(rate) / "per_user_test.parquet")["user"]
        for rate in (0.0, 0.1, 0.3)
    ]
    assert per_user[0].tolist() == per_user[1].tolist() == per_user[2].tolist()


def test_noise_reaches_the_model(tmp_path: Path) -> None:
    # EASE on clean communities ranks held-out in-community items well; cross-community noise
    # must cost it NDCG (a curve that fitted the clean data at every rate would show 0)
    config = _config(_communities(tmp_path), "ease", {"reg_weight": 10.0})
    runs = noise_curve(config, NoiseConfig(rates=(0.5,)))["runs"]
    assert runs[1]["drop"] > 0.05


def test_unreported_metric_is_refused_before_fitting(tmp_path: Path) -> None:
    config = _config(tmp_path / "missing", "popularity", {})  # the data is not even read
    with pytest.raises(ClrecError, match="ndcg@50"):
        noise_curve(config, NoiseConfig(metric="ndcg@50"))


def test_cli_writes_the_curve(tmp_path: Path) -> None:
    data = _communities(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(_config(data, "popularity", {}).to_plain()))  # JSON is YAML
    out = tmp_path / "robust"
    runner = CliRunner()
    result = runner.invoke(app, ["robustness", str(config), "--rates", "0.1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "robustness.json").read_text())
    assert [run["rate"] for run in saved["runs"]] == [0.0, 0.1]
    assert "noise   10%" in result.output
    bad = runner.invoke(app, ["robustness", str(config), "--rates", "2", "--out", str(out)])
    assert bad.exit_code == 1 and "error:" in bad.output
