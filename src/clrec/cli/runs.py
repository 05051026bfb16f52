"""Commands that make and read run folders: run, train, tune, evaluate, compare, models and
robustness."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clrec.cli.common import (
    MinRatingOption,
    SchemeOption,
    SeedOption,
    data_root,
    parse_scheme,
    print_json,
    torchrun_group,
    user_errors,
)
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.config import RunConfig


@user_errors
def run_command(
    data: Annotated[str, typer.Option(help="Data set name or path.")] = "ml-latest-small",
    model: Annotated[str, typer.Option(help="Model name (see `clrec models`).")] = "clrec",
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/quickstart"),
    scheme: SchemeOption = "random",
    seed: SeedOption = 2020,
    min_rating: MinRatingOption = None,
    items: Annotated[
        Path | None, typer.Option(help="Your item table (id + content columns) for --data FILE.")
    ] = None,
    users: Annotated[
        Path | None, typer.Option(help="Your user table (id + profile columns) for --data FILE.")
    ] = None,
) -> None:
    """The main job: describe the data, split it, fit, evaluate and report one model. Your
    own files: ``--data interactions.csv [--items items.csv] [--users users.csv]``."""
    from clrec.config import DataConfig, ModelConfig, RunConfig, TableConfig
    from clrec.data.splits import SplitConfig

    source = DataConfig(name=data, min_rating=min_rating)
    if items is not None or users is not None:
        source = DataConfig(
            path=data,
            items=None if items is None else TableConfig(path=str(items)),
            users=None if users is None else TableConfig(path=str(users)),
            min_rating=min_rating,
        )
    config = RunConfig(
        data=source,
        split=SplitConfig(scheme=parse_scheme(scheme), seed=seed),
        model=ModelConfig(name=model),
    )
    with torchrun_group():
        _run_and_print(config, out)


@user_errors
def init_config_command(
    data: Annotated[Path, typer.Option(help="Your interaction file.")],
    items: Annotated[Path | None, typer.Option(help="Your item table.")] = None,
    users: Annotated[Path | None, typer.Option(help="Your user table.")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the config.")] = Path("config.yaml"),
) -> None:
    """Write a commented run config for your own files (columns and content fields read
    from them), to edit and train with ``clrec train``."""
    from clrec.data.own_config import own_config

    if out.exists():
        raise ClrecError(f"{out}: exists; choose another --out or remove it")
    out.write_text(own_config(data, items, users, name=str(out)))
    typer.echo(f"wrote {out}", err=True)


@user_errors
def train_command(
    config_path: Annotated[Path, typer.Argument(help="Run config (YAML).", metavar="CONFIG")],
    out: Annotated[Path, typer.Option(help="Run folder.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set model.params.reg_weight=500"),
    ] = None,
) -> None:
    """Fit and evaluate the model a config describes; write metrics, summary and report.

    Under ``torchrun --nproc_per_node N`` the N processes train data-parallel and rank 0
    alone evaluates, writes the run folder and prints."""
    from clrec.config import RunConfig

    config = RunConfig.from_yaml(config_path, overrides or [])
    with torchrun_group():
        _run_and_print(config, out)


@user_errors
def tune_command(
    config_path: Annotated[Path, typer.Argument(help="Base run config (YAML).", metavar="CONFIG")],
    space_path: Annotated[
        Path,
        typer.Option("--space", help="Search space (YAML); see configs/tune-ml-latest-small.yaml."),
    ],
    trials: Annotated[
        int | None,
        typer.Option(min=1, help="Finished trials wanted (overrides the space's trials)."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Tune folder: study.db (resumable), trials.csv, best.yaml.")
    ] = Path("runs/tune"),
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a base config key: --set data.k_core=5"),
    ] = None,
) -> None:
    """Search hyper-parameters with Optuna on validation data; write best.yaml for train."""
    from clrec.config import RunConfig

    try:
        import optuna

        from clrec.tuning import TrialRecord, TuneConfig, tune
    except ModuleNotFoundError as err:
        if err.name != "optuna":
            raise
        raise ClrecError("clrec tune needs Optuna: pip install 'clrec[tune]'") from None

    space = TuneConfig.from_yaml(space_path)
    if trials is not None:
        space = space.with_trials(trials)
    base = RunConfig.from_yaml(config_path, overrides or [])
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from here

    def show(value: Any) -> str:
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    def print_trial(record: TrialRecord) -> None:
        value = "-" if record.value is None else f"{record.value:.4f}"
        where = f" at step {record.steps - 1}" if record.state == "PRUNED" else ""
        params = "  ".join(f"{k}={show(v)}" for k, v in record.params.items())
        typer.echo(
            f"trial {record.number:>3} {record.state:<8} {space.metric} {value}{where}  {params}"
        )

    result = tune(base, space, out, data_root(), on_trial=print_trial)
    earlier = len(result.trials) - result.ran
    if earlier:
        typer.echo(f"resumed {result.study_path}: {earlier} trials came from earlier runs")
    typer.echo(f"best: trial {result.best_number}, valid {result.metric} {result.best_value:.4f}")
    for key, value in result.best_params.items():
        typer.echo(f"  {key} = {show(value)}")
    typer.echo(f"wrote {result.trials_path}")
    typer.echo(f"wrote {result.best_path} (run it: clrec train {result.best_path} --out DIR)")


@user_errors
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by train or run.")],
) -> None:
    """Re-evaluate a saved run (model, data and split as saved) and rewrite its metrics."""
    from clrec.experiment import reevaluate

    _print_metrics(reevaluate(run_dir), run_dir)


@user_errors
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="First run folder.")],
    run_b: Annotated[Path, typer.Argument(help="Second run folder.")],
    metric: Annotated[str, typer.Option(help="Per-user metric to compare.")] = "ndcg@10",
) -> None:
    """Paired per-user significance test between two runs on the same split."""
    from clrec.experiment import compare_runs

    print_json(compare_runs(run_a, run_b, metric))


def models_command() -> None:
    """List the registered models."""
    from clrec.models.registry import MODELS

    for name in sorted(MODELS):
        typer.echo(name)


@user_errors
def robustness_command(
    config_path: Annotated[Path, typer.Argument(help="Run config (YAML).", metavar="CONFIG")],
    out: Annotated[Path, typer.Option(help="Folder for robustness.json and one run per rate.")],
    rates: Annotated[
        str, typer.Option(help="Fake interactions as shares of the train part.")
    ] = "0.05,0.1,0.2",
    seed: Annotated[int, typer.Option(help="Seed of the fake interactions.")] = 2020,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set model.params.epochs=50"),
    ] = None,
) -> None:
    """Noise curve: fit the config's model clean and with random fake training interactions
    added at each rate; report test metrics and the NDCG@10 lost against the clean fit."""
    from clrec.config import RunConfig
    from clrec.robustness import RESULT_NAME, NoiseConfig, noise_curve, parse_rates

    config = RunConfig.from_yaml(config_path, overrides or [])
    noise = NoiseConfig(rates=parse_rates(rates), seed=seed)
    result = noise_curve(config, noise, data_root(), out)
    metric = result["metric"]
    for run in result["runs"]:
        typer.echo(
            f"{result['model']} noise {run['rate']:>5.0%} ({run['fake_interactions']:,} fake): "
            f"test {metric} {run['test'][metric]:.4f}, drop {run['drop']:+.1%}"
        )
    typer.echo(f"wrote {out / RESULT_NAME}")


def _run_and_print(config: RunConfig, out: Path) -> None:
    """Run the experiment; on rank 0, print the data, the split sizes and the metrics."""
    from clrec.distributed import is_main
    from clrec.experiment import run_experiment

    results = run_experiment(config, out, data_root())
    if not is_main():  # another rank of a distributed run: rank 0 reports
        return
    summary = results["dataset"]
    typer.echo(
        f"{summary['name']}: {summary['users']:,} users, {summary['items']:,} items, "
        f"{summary['interactions']:,} interactions (density {summary['density']:.4%})"
    )
    sizes = results["split"]["sizes"]
    typer.echo(
        f"split {config.split.scheme} (seed {config.split.seed}): "
        f"train {sizes['train']['interactions']:,}, valid {sizes['valid']['interactions']:,}, "
        f"test {sizes['test']['interactions']:,}"
    )
    _print_metrics(results, out)


def _print_metrics(results: dict[str, Any], out: Path) -> None:
    """One line of headline metrics per part (valid, test), then where they were written."""
    for part in ("valid", "test"):
        metrics = results[part]
        shown = ", ".join(
            f"{name} {metrics[name]:.4f}"
            for name in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
            if name in metrics
        )
        typer.echo(f"{results['model']} {part}: {shown}")
    typer.echo(f"wrote {out / 'metrics.json'}")
