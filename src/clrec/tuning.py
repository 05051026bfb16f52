"""Hyper-parameter search over a run config with Optuna, pruning hopeless trials early.

``clrec tune`` answers "which hyper-parameters should this run config use?" without hand
editing YAML: every trial is the base run config with sampled values written at dotted keys
(``model.params.lr``, exactly as ``--set`` writes them), so the winner is itself a plain run
config, ``best.yaml``, that ``clrec train`` runs as it is.

Why it is built this way:

* The data set is loaded, filtered and split **once**; every trial fits on the same training
  part and is scored on the same validation part. The test part is never looked at while
  tuning, so the test metrics of a later ``clrec train best.yaml`` stay an honest estimate.
* Iterative models (BPR, LightGCN) already call their validator between epochs; here that
  validator also reports the tuned metric to Optuna (step = how many validations came
  before, 0 for the first) and raises :class:`optuna.TrialPruned` when the median pruner
  says the trial is behind the median of finished trials. A trial's value is the best
  validation metric it reached; closed-form models (EASE, ItemKNN) never call the validator
  and are evaluated once after fitting.
* The study lives in an SQLite file, ``out/study.db``: an interrupted or extended tune
  resumes and runs only the trials still missing (``trials`` counts complete and pruned
  trials). The sampler is a seeded TPE, so a fresh tune with the same space repeats itself.

A search space file (all keys but ``params`` optional)::

    trials: 30                    # finished trials wanted (complete or pruned)
    metric: ndcg@10               # a metric the evaluator reports on validation data
    direction: maximize           # or minimize (e.g. gini@10)
    seed: 2020                    # TPE sampler seed
    timeout_minutes: null         # stop starting trials after this long
    pruner: median                # or none
    pruner_startup_trials: 5      # finished trials before pruning starts
    pruner_warmup_steps: 2        # validations of each trial that are never pruned
    fixed:                        # set on every trial, like --set (e.g. fewer epochs)
      model.params.progress: false
    params:
      model.params.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      model.params.embedding_size: {type: int, low: 32, high: 128, step: 32}
      model.params.n_layers: {type: categorical, choices: [1, 2, 3]}

Only ``model.*`` keys can be searched: data, split and evaluation stay fixed across trials.
The tune folder holds ``study.db``, ``trials.csv`` (number, state, value, steps, seconds and
one column per parameter; a pruned trial's value is its last reported one) and ``best.yaml``.

Example (BPR on the bundled ml-latest-small; the space's ``fixed`` section picks the data)::

    clrec tune configs/ml-1m-bpr.yaml --space configs/tune-ml-latest-small.yaml \\
        --out runs/tune-bpr-small
    clrec train runs/tune-bpr-small/best.yaml --out runs/bpr-small-best
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clrec.config import RunConfig, read_yaml_mapping, set_path
from clrec.data.splits import split_dataset
from clrec.errors import ClrecError, validation_error
from clrec.evaluation.evaluator import EvaluationConfig, Evaluator
from clrec.experiment import prepare_data, validation_scorer
from clrec.models.base import Recommender
from clrec.models.registry import build_model

STUDY_NAME = "clrec-tune"
STUDY_FILE = "study.db"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
# Per-k measures the evaluator adds to its ranking metrics (see Evaluator._beyond_accuracy).
BEYOND_ACCURACY = ("coverage", "average_popularity", "gini", "tail_share")
# Trials that count towards ``trials``; a failed or interrupted trial is run again.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

Choice = bool | int | float | str | None


class FloatParam(BaseModel):
    """A float drawn from ``[low, high]``, on a log scale or in steps of ``step``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_range(self.low, self.high)
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got {self.low}")
        if self.step is not None and (self.log or not self.step > 0):
            raise ValueError("step must be positive and cannot be combined with log")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        """Sample this parameter for ``trial``."""
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def probes(self) -> list[Choice]:
        """Values checked against the run config before any trial runs."""
        return [self.low, self.high]


class IntParam(BaseModel):
    """An integer drawn from ``[low, high]`` in steps of ``step``, or on a log scale."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_range(self.low, self.high)
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log scale needs low >= 1 and step 1")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        """Sample this parameter for ``trial``."""
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def probes(self) -> list[Choice]:
        """Values checked against the run config before any trial runs."""
        return [self.low, self.high]


class CategoricalParam(BaseModel):
    """One of a list of plain values (numbers, strings, booleans or null)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["categorical"]
    choices: list[Choice]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.choices:
            raise ValueError("choices is empty")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Choice:
        """Sample this parameter for ``trial``."""
        return trial.suggest_categorical(name, self.choices)

    def probes(self) -> list[Choice]:
        """Values checked against the run config before any trial runs."""
        return list(self.choices)


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
SearchSpace = dict[str, ParamSpec]
"""Dotted run-config key (``model.params.lr``) → how to sample its value."""


class TuneConfig(BaseModel):
    """A search space file: what to search, how many trials, and what to optimise."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=20, ge=1)
    metric: str = "ndcg@10"
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = Field(default=2020, ge=0)
    timeout_minutes: float | None = Field(default=None, gt=0)
    pruner: Literal["median", "none"] = "median"
    pruner_startup_trials: int = Field(default=5, ge=0)
    pruner_warmup_steps: int = Field(default=2, ge=0)
    fixed: dict[str, Any] = Field(default_factory=dict)
    params: SearchSpace

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        if not self.params:
            raise ValueError("params is empty: name at least one key to search")
        keys = [*self.fixed, *self.params]
        for key in keys:
            if not all(part.strip() for part in key.split(".")):
                raise ValueError(f"{key!r} is not a dotted key like model.params.lr")
        for key in self.params:
            if not key.startswith("model."):
                raise ValueError(
                    f"param {key!r}: only model.* keys can be searched (data, split and "
                    "evaluation stay fixed across trials; set them in the run config)"
                )
        for i, key in enumerate(keys):
            for j, other in enumerate(keys):
                if i != j and (key == other or other.startswith(key + ".")):
                    raise ValueError(f"{key!r} and {other!r} overlap")
        return self

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "search space") -> TuneConfig:
        """Validate a plain mapping, turning validation errors into one ClrecError."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise validation_error(err, source, _location) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TuneConfig:
        """Read a search space file."""
        file = Path(path)
        return cls.from_mapping(read_yaml_mapping(file, "search space file"), source=str(file))

    def with_trials(self, trials: int) -> TuneConfig:
        """The same space with another number of trials (validated)."""
        return TuneConfig.from_mapping(
            {**self.model_dump(), "trials": trials}, source="search space"
        )


@dataclass(frozen=True)
class TrialRecord:
    """One trial as ``trials.csv`` lists it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL or RUNNING
    value: float | None  # best validation metric; a pruned trial's last reported one
    params: dict[str, Any]
    steps: int  # validations reported
    seconds: float | None


@dataclass(frozen=True)
class TuneResult:
    """The outcome of :func:`tune`: the best trial, every trial, and the files written."""

    metric: str
    direction: str
    best_number: int
    best_value: float
    best_params: dict[str, Any]
    best_config: RunConfig
    trials: list[TrialRecord]
    ran: int  # trials started by this call (the rest came from an earlier tune)
    study_path: Path
    trials_path: Path
    best_path: Path


def tune(
    base: RunConfig,
    space: TuneConfig,
    out: Path,
    data_root: Path | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> TuneResult:
    """Search ``space`` around ``base`` on validation data; write study, trials and best.yaml.

    ``on_trial`` is called after each trial this call runs (e.g. to print it). Resumes the
    study in ``out/study.db`` when it exists, running only the trials still missing.
    """
    resolved = _check(base, space)
    out.mkdir(parents=True, exist_ok=True)
    study = _open_study(space, out, resolved)
    already = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = max(0, space.trials - already)
    before = len(study.get_trials(deepcopy=False))
    if remaining:
        config = RunConfig.from_mapping(resolved, source="search space fixed")
        objective = _objective(config, space, resolved, data_root)

        def report(_: optuna.Study, trial: FrozenTrial) -> None:
            if on_trial is not None:
                on_trial(_record(trial))

        timeout = None if space.timeout_minutes is None else space.timeout_minutes * 60
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[report])
    trials = [_record(t) for t in study.get_trials(deepcopy=False)]
    trials_path = _write_trials(out / TRIALS_FILE, trials, list(space.params))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ClrecError(f"no trial completed, so there is no best.yaml; see {trials_path}")
    best = study.best_trial
    best_value = float(best.value) if best.value is not None else math.nan
    best_config = _resolve(resolved, best.params, source=f"trial {best.number}")
    best_path = out / BEST_FILE
    header = (
        f"# clrec tune: best of {len(complete)} complete trials (trial {best.number}, "
        f"valid {space.metric} = {best_value:.6g}).\n"
        f"# Run it: clrec train {best_path} --out RUN_DIR\n"
    )
    best_path.write_text(header + yaml.safe_dump(best_config.to_plain(), sort_keys=False))
    return TuneResult(
        metric=space.metric,
        direction=space.direction,
        best_number=best.number,
        best_value=best_value,
        best_params=dict(best.params),
        best_config=best_config,
        trials=trials,
        ran=len(trials) - before,
        study_path=out / STUDY_FILE,
        trials_path=trials_path,
        best_path=best_path,
    )


def metric_names(evaluation: EvaluationConfig) -> list[str]:
    """The validation metrics the evaluator reports under ``evaluation``."""
    measures = [*evaluation.metrics, *BEYOND_ACCURACY]
    return [f"{measure}@{k}" for measure in measures for k in evaluation.ks]


# ---------------------------------------------------------------------- checks before running
def _check(base: RunConfig, space: TuneConfig) -> dict[str, Any]:
    """The base config with ``fixed`` applied, after checking every key and probe value."""
    resolved = base.to_plain()
    for key, value in space.fixed.items():
        set_path(resolved, key, value, f"search space key {key!r}")
    config = RunConfig.from_mapping(resolved, source="search space fixed")
    known = metric_names(config.evaluation)
    if space.metric not in known:
        raise ClrecError(
            f"search space metric {space.metric!r} is not reported by the evaluator with "
            f"this config; known: {', '.join(known)}"
        )
    corner = {key: spec.probes()[0] for key, spec in space.params.items()}
    for key, spec in space.params.items():
        for value in spec.probes():
            source = f"search space param {key!r} = {value!r}"
            probe = _resolve(resolved, {**corner, key: value}, source=source)
            try:
                build_model(probe.model.name, probe.model.params)
            except ClrecError as err:
                raise ClrecError(f"{source}: {err}") from None
    return resolved


def _check_range(low: float, high: float) -> None:
    if low > high:
        raise ValueError(f"low {low} > high {high}")


def _location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location, keeping dotted keys readable: ``params['model.lr'].float``."""
    text = ""
    for part in loc:
        if isinstance(part, str) and "." in part:
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _resolve(resolved: dict[str, Any], params: dict[str, Any], source: str) -> RunConfig:
    """The run config of one trial: ``resolved`` with ``params`` set at their dotted keys."""
    values = copy.deepcopy(resolved)
    for key, value in params.items():
        set_path(values, key, value, f"search space key {key!r}")
    return RunConfig.from_mapping(values, source=source)


# ---------------------------------------------------------------------- the study
def _open_study(space: TuneConfig, out: Path, resolved: dict[str, Any]) -> optuna.Study:
    """Create or resume the study in ``out/study.db``; refuse one made for another search."""
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(
            n_startup_trials=space.pruner_startup_trials,
            n_warmup_steps=space.pruner_warmup_steps,
        )
        if space.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    path = out / STUDY_FILE
    study = optuna.create_study(
        storage=f"sqlite:///{path.resolve()}",
        sampler=optuna.samplers.TPESampler(seed=space.seed),
        pruner=pruner,
        study_name=STUDY_NAME,
        direction=space.direction,
        load_if_exists=True,
    )
    stamp = {"metric": space.metric, "direction": space.direction, "config": resolved}
    if not study.user_attrs:
        for key, value in stamp.items():
            study.set_user_attr(key, value)
        return study
    for key, value in stamp.items():
        if study.user_attrs.get(key) != value:
            raise ClrecError(
                f"{path} holds a study made with another {key} (run config with the space's "
                "fixed keys, metric or direction); use another --out to start afresh"
            )
    # Trials left RUNNING by an interrupted tune never finish: mark them failed, run anew.
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
    return study


def _objective(
    config: RunConfig, space: TuneConfig, resolved: dict[str, Any], data_root: Path | None
) -> Callable[[optuna.Trial], float]:
    """Prepare data and split once; return the objective that fits and validates one trial."""
    dataset = prepare_data(config.data, data_root)
    split = split_dataset(dataset, config.split)
    train = dataset.with_interactions(split.train)
    evaluator = Evaluator(dataset, split.train, replace(config.evaluation, progress=False))
    better = max if space.direction == "maximize" else min

    validate = validation_scorer(evaluator, split)  # the test part is never used

    def objective(trial: optuna.Trial) -> float:
        sampled = {key: spec.suggest(trial, key) for key, spec in space.params.items()}
        trial_config = _resolve(resolved, sampled, source=f"trial {trial.number}")
        model = build_model(trial_config.model.name, trial_config.model.params)
        seen: list[float] = []

        def validator(candidate: Recommender) -> dict[str, float]:
            metrics = validate(candidate)
            value = _metric(metrics, space.metric)
            step = len(seen)
            seen.append(value)
            trial.set_user_attr("steps", len(seen))
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{space.metric} {value:.6g} at step {step}")
            return metrics

        model.fit(train, validator)
        if not seen:  # a closed-form model: evaluate the fitted model once
            seen.append(_metric(validate(model), space.metric))
            trial.set_user_attr("steps", 1)
        finite = [v for v in seen if not math.isnan(v)]
        return better(finite) if finite else math.nan  # NaN: Optuna records a failed trial

    return objective


def _metric(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise ClrecError(f"the evaluator reported no {name!r} (got {', '.join(sorted(metrics))})")
    return float(metrics[name])


# ---------------------------------------------------------------------- outputs
def _record(trial: FrozenTrial) -> TrialRecord:
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=trial.value,
        params=dict(trial.params),
        steps=int(trial.user_attrs.get("steps", 0)),
        seconds=seconds,
    )


def _write_trials(path: Path, trials: list[TrialRecord], keys: list[str]) -> Path:
    """``trials.csv``: number, state, value, steps, seconds and one column per parameter."""
    columns = list(keys)
    for record in trials:  # keys of an earlier, different space too
        columns += [key for key in record.params if key not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "value", "steps", "seconds", *columns])
        for record in trials:
            writer.writerow(
                [
                    record.number,
                    record.state,
                    "" if record.value is None else repr(record.value),
                    record.steps,
                    "" if record.seconds is None else round(record.seconds, 3),
                    *(record.params.get(key, "") for key in columns),
                ]
            )
    return path
