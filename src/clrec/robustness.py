"""Robustness to noisy training data: how much a model loses when fake interactions are added.

:func:`noise_curve` splits the configured data once, then fits the configured model on the
clean train part and on the train part with ``rate × |train|`` random fake interactions added
(per rate), and evaluates every fit on the same valid / test parts with the same evaluator
wiring as :func:`clrec.experiment.run_experiment`. It reports the test metrics per rate and
the relative loss of ``ndcg@10`` against the clean fit.

Choices, and why:

* **Fake pairs** (:func:`inject_noise`) join a uniformly random training user to a uniformly
  random training item — noise never invents a user or an item, so a cold-item or cold-user
  split stays cold — and never repeat a pair the user already has in train, valid or test:
  a fake pair equal to a held-out target would leak it into training (or mask it at test).
  Each fake row copies the other columns (rating, label, …) of a random train row, so it
  looks like an ordinary one; with timestamps, its time is drawn within its user's train
  time range.
* **Nested noise**: one draw at the largest rate; a smaller rate takes a prefix of it (still
  a uniform sample), so two points of the curve differ only by the noise added between them.
* **Validation stays clean**: only the training data is poisoned. Early stopping and what a
  model chooses on validation (the EASE prior's λ and weight) see the clean valid part, as
  for a practitioner who holds out a trusted sample; the curve then measures what noise in
  the training log costs, not a corrupted model selection.
* **Masking**: at evaluation a user's (noisy) train items are masked, as a system masks what
  its log says the user has seen. Fake pairs never hit a valid / test pair, so every rate is
  evaluated on the same users, targets and candidates.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from clrec.config import RunConfig
from clrec.data.describe import describe
from clrec.data.schema import Dataset
from clrec.data.splits import Split, split_dataset
from clrec.errors import ClrecError

# run_experiment's own wiring (validator, valid / test passes, metrics.json), reused as is
from clrec.experiment import evaluate_and_write, fit_model, prepare_data, write_metrics

INJECTED = "injected"  # boolean column of inject_noise's result: True on fake rows
RESULT_NAME = "robustness.json"


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise curve to measure: fake-interaction ``rates`` (shares of the train part; the
    clean fit is always measured too), the ``seed`` of the draw, the noise ``kind`` (uniform
    random pairs) and the ``metric`` whose relative drop is reported."""

    rates: tuple[float, ...] = (0.05, 0.10, 0.20)
    seed: int = 2020
    kind: Literal["random"] = "random"
    metric: str = "ndcg@10"

    def __post_init__(self) -> None:
        rates = tuple(float(rate) for rate in self.rates)
        bad = [rate for rate in rates if not (math.isfinite(rate) and 0 <= rate <= 1)]
        if bad:
            raise ClrecError(f"noise rates must lie in [0, 1], got {bad}")
        object.__setattr__(self, "rates", rates)
        if self.kind != "random":
            raise ClrecError(f"unknown noise kind {self.kind!r}; known: random")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ClrecError(f"noise seed must be an integer ≥ 0, got {self.seed!r}")

    @property
    def curve(self) -> tuple[float, ...]:
        """0 (the clean fit) and every distinct rate, ascending."""
        return tuple(sorted({0.0, *self.rates}))


def parse_rates(text: str) -> tuple[float, ...]:
    """``"0.05,0.1,0.2"`` → ``(0.05, 0.1, 0.2)``; a clear error for anything else."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ClrecError(f"--rates {text!r}: expected numbers like 0.05,0.1,0.2") from None
    if not rates:
        raise ClrecError(f"--rates {text!r}: expected numbers like 0.05,0.1,0.2")
    return NoiseConfig(rates=rates).rates


def inject_noise(
    train: pd.DataFrame,
    n_users: int,
    n_items: int,
    rate: float,
    rng: np.random.Generator,
    *,
    exclude: Sequence[pd.DataFrame] = (),
) -> pd.DataFrame:
    """``train`` plus ``round(rate × len(train))`` fake rows, marked by the ``injected`` column.

    A fake row pairs a uniformly random user of ``train`` with a uniformly random item of
    ``train``, never a pair already in ``train`` or in an ``exclude`` frame (nor twice); its
    other columns are copied from a random train row, and its timestamp (if any) is drawn
    within its user's train time range. The fake rows come last, in random order, so any
    prefix of them is a uniform sample too. Original rows keep their order and values.
    """
    if not (math.isfinite(rate) and 0 <= rate <= 1):
        raise ClrecError(f"noise rate must lie in [0, 1], got {rate}")
    if INJECTED in train.columns:
        raise ClrecError(f"the train frame already has an {INJECTED!r} column")
    count = round(rate * len(train))
    users = train["user"].to_numpy(dtype=np.int64)  # (n,)
    items = train["item"].to_numpy(dtype=np.int64)  # (n,)
    if len(train) and (users.min() < 0 or users.max() >= n_users):
        raise ClrecError(f"train has user ids outside 0..{n_users - 1}")
    if len(train) and (items.min() < 0 or items.max() >= n_items):
        raise ClrecError(f"train has item ids outside 0..{n_items - 1}")
    keys = _draw_pairs(users, items, exclude, n_items, count, rng)  # (count,) user·I + item
    donors = rng.integers(0, len(train), size=count) if count else np.empty(0, dtype=np.int64)
    fake = train.iloc[donors].copy()
    fake["user"] = keys // n_items
    fake["item"] = keys % n_items
    if "timestamp" in train.columns and count:
        span = train.groupby("user")["timestamp"].agg(["min", "max"])
        low = span["min"].reindex(fake["user"]).to_numpy(dtype=np.int64)  # (count,)
        high = span["max"].reindex(fake["user"]).to_numpy(dtype=np.int64)  # (count,)
        fake["timestamp"] = rng.integers(low, high, endpoint=True)
    return pd.concat(
        [train.assign(**{INJECTED: False}), fake.assign(**{INJECTED: True})], ignore_index=True
    )


def _draw_pairs(
    users: np.ndarray,
    items: np.ndarray,
    exclude: Sequence[pd.DataFrame],
    n_items: int,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``count`` distinct pair keys ``user · n_items + item``, uniform over the free pairs of
    train users × train items (rejection sampling), in the order drawn."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    pool_users, pool_items = np.unique(users), np.unique(items)
    taken = [users * n_items + items]
    for frame in exclude:
        taken.append(
            frame["user"].to_numpy(dtype=np.int64) * n_items
            + frame["item"].to_numpy(dtype=np.int64)
        )
    used = np.unique(np.concatenate(taken))  # sorted keys no fake pair may take
    inside = np.isin(used // n_items, pool_users) & np.isin(used % n_items, pool_items)
    free = len(pool_users) * len(pool_items) - int(inside.sum())
    if count > free:
        raise ClrecError(
            f"cannot add {count:,} fake interactions: only {free:,} (user, item) pairs of the "
            "train users and items are still free; lower the noise rate"
        )
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < count:
        need = count - len(chosen)
        size = need + need // 4 + 64  # a little over: some draws are rejected
        draws = (
            pool_users[rng.integers(0, len(pool_users), size=size)] * n_items
            + pool_items[rng.integers(0, len(pool_items), size=size)]
        )  # (size,)
        draws = draws[~np.isin(draws, used) & ~np.isin(draws, chosen)]
        _, first = np.unique(draws, return_index=True)
        draws = draws[np.sort(first)]  # repeats dropped, draw order kept
        chosen = np.concatenate([chosen, draws[:need]])
    return chosen


def noise_curve(
    config: RunConfig,
    noise: NoiseConfig,
    data_root: Path | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Fit and evaluate ``config``'s model clean and at every noise rate (module docstring).

    Returns ``runs``: per rate its fake / train interaction counts, valid and test metrics,
    best epoch, fit seconds and ``drop`` — the relative loss of ``noise.metric`` on test
    against the clean fit, ``(clean − noisy) / clean``. With ``out`` every rate's metrics,
    per-user tables (for :func:`clrec.experiment.compare_runs`) and injected rows go to
    ``out/<rate>/`` and the result to ``out/robustness.json``.
    """
    _check_metric(config, noise.metric)
    dataset = prepare_data(config.data, data_root)
    split = split_dataset(dataset, config.split)
    split.verify(dataset)
    rng = np.random.default_rng(noise.seed)
    drawn = inject_noise(
        split.train,
        dataset.n_users,
        dataset.n_items,
        max(noise.curve),
        rng,
        exclude=[split.valid, split.test],
    )
    fake = drawn.loc[drawn[INJECTED]].drop(columns=INJECTED)  # the largest rate's fake rows
    runs: list[dict[str, Any]] = []
    with _run_root(out) as root:
        for rate in noise.curve:
            count = round(rate * len(split.train))
            train = split.train
            if count:
                train = pd.concat([split.train, fake.iloc[:count]], ignore_index=True)
            run_dir = root / run_label(rate)
            run_dir.mkdir(parents=True, exist_ok=True)
            fake.iloc[:count].to_parquet(run_dir / "injected.parquet", index=False)
            results = _fit_and_evaluate(config, dataset, replace(split, train=train), run_dir)
            runs.append(
                {
                    "rate": rate,
                    "fake_interactions": count,
                    "train_interactions": len(train),
                    **results,
                }
            )
    clean = float(runs[0]["test"][noise.metric])
    for run in runs:
        noisy = float(run["test"][noise.metric])
        run["drop"] = (clean - noisy) / clean if clean > 0 else math.nan
    result = {
        "model": config.model.name,
        "metric": noise.metric,
        "noise": asdict(noise),
        "protocol": runs[0]["protocol"],
        "validation": "clean: early stopping and validation-chosen settings see the clean "
        "valid part; only the train part gets fake interactions",
        "dataset": describe(dataset),
        "split": split.summary(),
        "config": config.to_plain(),
        "runs": runs,
    }
    if out is not None:
        path = Path(out) / RESULT_NAME
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def bootstrap_changes(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], *, resamples: int = 2000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per model, the relative change of the mean metric (``noisy / clean − 1``) on
    ``resamples`` bootstrap resamples of the test users: ``(resamples,)`` each.

    ``pairs`` maps a model to its per-user metric ``(clean, noisy)``, every array over the same
    users in the same order. Every model is resampled with the same user draws, so the
    difference of two models' changes is paired (the users' own difficulty cancels out), and
    its percentiles are a confidence interval for "model A loses less than model B".
    """
    sizes = {len(array) for clean, noisy in pairs.values() for array in (clean, noisy)}
    if len(sizes) != 1 or 0 in sizes:
        raise ClrecError("every per-user array must have the same (non-zero) number of users")
    if resamples < 1:
        raise ClrecError(f"resamples must be at least 1, got {resamples}")
    users = sizes.pop()
    draws = np.random.default_rng(seed).integers(0, users, size=(resamples, users))  # (R, n)
    changes = {}
    for name, (clean, noisy) in pairs.items():
        clean_means = np.asarray(clean, dtype=np.float64)[draws].mean(axis=1)  # (R,)
        noisy_means = np.asarray(noisy, dtype=np.float64)[draws].mean(axis=1)  # (R,)
        with np.errstate(divide="ignore", invalid="ignore"):
            changes[name] = noisy_means / clean_means - 1
    return changes


def run_label(rate: float) -> str:
    """The folder name of one point of the curve: ``clean`` or ``noise-0.05``."""
    return "clean" if rate == 0 else f"noise-{rate:g}"


def _check_metric(config: RunConfig, metric: str) -> None:
    """Refuse a metric the configured evaluation does not compute, before any fitting."""
    name, _, cut = metric.partition("@")
    evaluation = config.evaluation
    if name not in evaluation.metrics or not cut.isdigit() or int(cut) not in evaluation.ks:
        raise ClrecError(
            f"the noise curve reports {metric!r}, but the evaluation computes "
            f"{', '.join(evaluation.metrics)} at {', '.join(map(str, evaluation.ks))}"
        )


@contextmanager
def _run_root(out: str | Path | None) -> Iterator[Path]:
    """``out`` itself, or a temporary folder removed afterwards."""
    if out is not None:
        root = Path(out)
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="clrec-noise-") as folder:
        yield Path(folder)


def _fit_and_evaluate(
    config: RunConfig, dataset: Dataset, split: Split, run_dir: Path
) -> dict[str, Any]:
    """Fit the configured model on ``split.train`` and evaluate it as ``run_experiment`` does
    (same validator, same valid / test passes), writing ``run_dir/metrics.json``."""
    model, evaluator, fit_seconds = fit_model(config, dataset, split)
    results = evaluate_and_write(run_dir, model, evaluator, split)
    results["timing"]["fit_seconds"] = round(fit_seconds, 3)
    write_metrics(run_dir, {**results, "model": model.name, "history": model.history}, False)
    return {
        "protocol": results["protocol"],
        "valid": results["valid"],
        "test": results["test"],
        "best_epoch": getattr(model, "best_epoch", None),
        "stopped_by_time": bool(getattr(model, "stopped_by_time", False)),
        "fit_seconds": round(fit_seconds, 3),
    }
