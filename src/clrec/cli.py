"""The ``clrec`` command line: each command parses options, builds a config, calls the library.

This module and the service entry point are the only places that read the environment
(``CLREC_DATA``, the data root; under ``torchrun``, its ``WORLD_SIZE`` and ``LOCAL_RANK``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar, cast

import typer

from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.config import RunConfig
    from clrec.data.splits import Scheme
    from clrec.ranking.cross_encoder import Mode
    from clrec.serving.settings import ServiceSettings
    from clrec.serving.store import Store

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="clrec",
    help="Contrastive recommendations from pretrained-encoder content and behaviour logs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect, validate and split data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
keys_app = typer.Typer(
    help="Create, list and revoke the recommendation service's API keys.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
rank_app = typer.Typer(
    help="Train and evaluate the language-model ranking stage (retrieve → rank).",
    no_args_is_help=True,
)
app.add_typer(rank_app, name="rank")


def _user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a ClrecError as one line on stderr and exit 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ClrecError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=1) from None

    return wrapper


def _data_root() -> Path | None:
    from clrec.data.registry import default_data_root

    return default_data_root(os.environ.get("CLREC_DATA"))


@contextlib.contextmanager
def _torchrun_group() -> Iterator[None]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) join its process group for the command, so the
    training loop runs data-parallel (gloo on CPU, NCCL on GPUs); otherwise do nothing."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ClrecError(
            "WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)"
        ) from None
    if world_size <= 1:
        yield
        return
    from clrec.distributed import init_from_torchrun, shutdown

    init_from_torchrun(local_rank=local_rank)
    try:
        yield
    finally:
        shutdown()


def _print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def _parse_ratios(text: str) -> tuple[float, float, float]:
    message = f"--ratios {text!r}: expected three non-negative numbers like 0.8,0.1,0.1"
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ClrecError(message) from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise ClrecError(message)
    return parts[0], parts[1], parts[2]


SchemeOption = Annotated[
    str,
    typer.Option(help="random | loo | temporal | cold-item | cold-user | predefined"),
]


@app.command("run")
@_user_errors
def run_command(
    data: Annotated[str, typer.Option(help="Data set name or path.")] = "ml-latest-small",
    model: Annotated[str, typer.Option(help="Model name (see `clrec models`).")] = "clrec",
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/quickstart"),
    scheme: SchemeOption = "random",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 2020,
    min_rating: Annotated[
        float | None, typer.Option(help="Keep ratings >= this as positives.")
    ] = None,
) -> None:
    """The main job: describe the data, split it, fit, evaluate and report one model."""
    from clrec.config import DataConfig, ModelConfig, RunConfig
    from clrec.data.splits import SplitConfig

    config = RunConfig(
        data=DataConfig(name=data, min_rating=min_rating),
        split=SplitConfig(scheme=_scheme(scheme), seed=seed),
        model=ModelConfig(name=model),
    )
    with _torchrun_group():
        _run_and_print(config, out)


@app.command("train")
@_user_errors
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
    with _torchrun_group():
        _run_and_print(config, out)


@app.command("tune")
@_user_errors
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

    result = tune(base, space, out, _data_root(), on_trial=print_trial)
    earlier = len(result.trials) - result.ran
    if earlier:
        typer.echo(f"resumed {result.study_path}: {earlier} trials came from earlier runs")
    typer.echo(f"best: trial {result.best_number}, valid {result.metric} {result.best_value:.4f}")
    for key, value in result.best_params.items():
        typer.echo(f"  {key} = {show(value)}")
    typer.echo(f"wrote {result.trials_path}")
    typer.echo(f"wrote {result.best_path} (run it: clrec train {result.best_path} --out DIR)")


@app.command("evaluate")
@_user_errors
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by train or run.")],
) -> None:
    """Re-evaluate a saved run (model, data and split as saved) and rewrite its metrics."""
    from clrec.experiment import reevaluate

    _print_metrics(reevaluate(run_dir), run_dir)


@app.command("compare")
@_user_errors
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="First run folder.")],
    run_b: Annotated[Path, typer.Argument(help="Second run folder.")],
    metric: Annotated[str, typer.Option(help="Per-user metric to compare.")] = "ndcg@10",
) -> None:
    """Paired per-user significance test between two runs on the same split."""
    from clrec.experiment import compare_runs

    _print_json(compare_runs(run_a, run_b, metric))


@app.command("encode")
@_user_errors
def encode_command(
    name_or_path: Annotated[str, typer.Argument(help="Known data set name, or a path.")],
    cache: Annotated[Path, typer.Option(help="Embedding cache folder (reused across runs).")],
    modality: Annotated[
        str, typer.Option(help="text | image | all (all: text, image and precomputed).")
    ] = "all",
    backend: Annotated[str, typer.Option(help="Text backend: torch | onnx-int8.")] = "torch",
    model: Annotated[
        str | None, typer.Option(help="Local text model folder (default: packaged MiniLM).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for the encoders.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Save the data set with its new item vectors here.")
    ] = None,
) -> None:
    """Encode item content into vectors (cached by content); print encoded / cached / skipped."""
    from clrec.data import registry
    from clrec.encoders.modalities import dataset_modalities, encode_dataset

    if modality not in ("text", "image", "all"):
        raise ClrecError(f"--modality must be text, image or all, got {modality!r}")
    dataset = registry.load(name_or_path, _data_root())
    specs = dataset_modalities(dataset, modality, backend=backend, model=model, threads=threads)
    vectors, summary = encode_dataset(dataset, specs, cache)
    for line in summary.lines():
        typer.echo(line)
    if out is not None:
        dataset.item_vectors = {**dataset.item_vectors, **vectors}
        dataset.check_integrity()
        typer.echo(f"wrote {dataset.save(out)}")


@app.command("export")
@_user_errors
def export_artifact_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by train or run.")],
    out: Annotated[Path, typer.Option(help="Folder to write the serving artifact to.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing artifact.")] = False,
    ranker: Annotated[
        Path | None,
        typer.Option(help="A clrec rank train folder of this run: adds the ranking stage."),
    ] = None,
) -> None:
    """Write a self-contained, checksummed serving artifact (vectors, id maps, model)."""
    from clrec.serving.artifact import export_artifact, load_artifact

    path = export_artifact(run_dir, out, overwrite=overwrite, ranker=ranker)
    artifact = load_artifact(path)  # verified as a server would load it
    typer.echo(
        f"wrote {path}: {artifact.model_name}, {artifact.n_users:,} users × "
        f"{artifact.n_items:,} items, {artifact.dim}-d"
        + (", with a ranking stage" if artifact.has_ranker else "")
    )


DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: SQLite service.db in --data-dir)."),
]
DataDirOption = Annotated[
    Path, typer.Option(help="Folder of the default SQLite database, service.db.")
]
_DEFAULT_DATA_DIR = Path("clrec-service")


@app.command("serve")
@_user_errors
def serve_command(
    artifact: Annotated[Path, typer.Argument(help="An artifact folder written by export.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the artifact).")
    ] = 1,
    db: DbOption = None,
    data_dir: DataDirOption = _DEFAULT_DATA_DIR,
    index: Annotated[str, typer.Option(help="Item index: exact | hnsw.")] = "exact",
    ef_search: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="HNSW query beam (default 96): higher is more accurate and slower; /readyz "
            "reports the recall@10 measured at start.",
        ),
    ] = None,
    ranker: Annotated[
        str, typer.Option(help="The artifact's ranking stage: int8 | float32 | off.")
    ] = "int8",
    auth: Annotated[
        bool, typer.Option(help="Require an API key (--no-auth only for local tries).")
    ] = True,
    max_k: Annotated[int, typer.Option(min=1, help="Largest k a request may ask for.")] = 100,
    rate_limit: Annotated[
        float, typer.Option(min=0.0, help="Requests per second per API key (0: no limit).")
    ] = 50.0,
    burst: Annotated[int, typer.Option(min=1, help="Requests a key may save up.")] = 100,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error.")] = "info",
    sync_interval: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds between reads of what other workers and replicas wrote to the "
            "database (0: never — a lone process).",
        ),
    ] = 1.0,
) -> None:
    """Serve real-time recommendations over HTTP from an exported artifact."""
    try:
        import uvicorn
        import uvicorn.config

        from clrec.serving.app import SETTINGS_ENV
    except ModuleNotFoundError as err:
        raise ClrecError(f"clrec serve needs {err.name}: pip install 'clrec[serve]'") from None
    from clrec.serving.store import Store

    if not (artifact / "artifact.json").is_file():
        raise ClrecError(f"{artifact}: not a clrec artifact (no artifact.json); see clrec export")
    settings = _service_settings(
        artifact=artifact.resolve(),
        data_dir=data_dir.resolve(),
        database_url=db,
        index={"kind": index} if ef_search is None else {"kind": index, "ef_search": ef_search},
        auth_required=auth,
        ranker=ranker,
        max_k=max_k,
        rate_limit_per_s=rate_limit,
        rate_limit_burst=burst,
        log_level=log_level,
        sync_interval_s=sync_interval or None,
    )
    Store(settings.db_url).close()  # the tables exist before any worker starts
    # Workers build their own app from these settings (uvicorn imports the factory).
    os.environ[SETTINGS_ENV] = settings.to_json()
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["clrec"] = {
        "handlers": ["default"],
        "level": settings.log_level,
        "propagate": False,
    }
    uvicorn.run(
        "clrec.serving.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the service logs each request itself, without ids or queries
        log_config=log_config,
        log_level=settings.log_level.lower(),
    )


def _service_settings(**values: Any) -> ServiceSettings:
    """ServiceSettings from CLI values; a validation problem becomes a ClrecError."""
    from pydantic import ValidationError

    from clrec.serving.settings import ServiceSettings

    try:
        return ServiceSettings(**values)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ClrecError(f"invalid service settings: {problems}") from None


def _key_store(db: str | None, data_dir: Path) -> Store:
    from clrec.serving.settings import default_database_url
    from clrec.serving.store import Store

    return Store(db or default_database_url(data_dir))


@rank_app.command("train")
@_user_errors
def rank_train_command(
    run: Annotated[Path, typer.Argument(help="A run folder (clrec train) whose model retrieves.")],
    out: Annotated[Path, typer.Option(help="Folder for the ranker and its report.")],
    mode: Annotated[str, typer.Option(help="Fine-tuning: lora | head | last_n.")] = "lora",
    model: Annotated[
        str, typer.Option(help="Encoder: 'minilm' (packaged) or a local Hugging Face folder.")
    ] = "minilm",
    max_users: Annotated[int, typer.Option(min=1, help="Users sampled for pairs.")] = 600,
    max_positives: Annotated[
        int, typer.Option(min=1, help="Positives kept per user (a seeded sample).")
    ] = 4,
    hard_negatives: Annotated[int, typer.Option(min=0, help="Per user, from the top.")] = 4,
    random_negatives: Annotated[int, typer.Option(min=0, help="Per user, uniform.")] = 2,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens of query + item.")] = 128,
    depth: Annotated[int, typer.Option(min=1, help="Candidates re-ranked per user.")] = 50,
    test_users: Annotated[int, typer.Option(min=1, help="Test users sampled.")] = 300,
    time_limit: Annotated[
        float | None, typer.Option(min=0.0, help="Training budget in minutes.")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Fine-tune a cross-encoder on the run's retrieval candidates and evaluate it."""
    from clrec.ranking.cross_encoder import CrossEncoderConfig
    from clrec.ranking.pairs import PairConfig
    from clrec.ranking.pipeline import RankerSettings, train_ranker

    if mode not in ("lora", "head", "last_n"):
        raise ClrecError(f"unknown mode {mode!r}; known: lora, head, last_n")
    settings = RankerSettings(
        pairs=PairConfig(
            max_users=max_users,
            candidates=max(depth, hard_negatives),
            hard_negatives=hard_negatives,
            random_negatives=random_negatives,
            max_positives_per_user=max_positives,
            seed=seed,
        ),
        model=CrossEncoderConfig(
            model=model,
            mode=cast("Mode", mode),  # checked above
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            threads=threads,
            seed=seed,
            time_limit_minutes=time_limit,
        ),
        rerank_depth=depth,
        test_users=test_users,
    )
    report = train_ranker(run, out, settings)
    _print_json({key: report[key] for key in ("test_pairs", "end_to_end", "latency")})


@rank_app.command("evaluate")
@_user_errors
def rank_evaluate_command(
    ranker: Annotated[Path, typer.Argument(help="A folder written by clrec rank train.")],
) -> None:
    """Evaluate a trained ranker again on its run's test data (report.json is updated)."""
    from clrec.ranking.pipeline import evaluate_ranker

    report = evaluate_ranker(ranker)
    _print_json({key: report[key] for key in ("test_pairs", "end_to_end", "latency")})


@keys_app.command("create")
@_user_errors
def keys_create_command(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write.")] = "read",
    db: DbOption = None,
    data_dir: DataDirOption = _DEFAULT_DATA_DIR,
) -> None:
    """Create an API key; its token is printed once (stdout) and never stored."""
    store = _key_store(db, data_dir)
    try:
        new = store.create_key(name, scopes)
    finally:
        store.close()
    typer.echo(
        f"created key {new.key.key_id} ({new.key.name}; scopes "
        f"{','.join(sorted(new.key.scopes))}); the token below is shown only this once:",
        err=True,
    )
    typer.echo(new.token)


@keys_app.command("revoke")
@_user_errors
def keys_revoke_command(
    key: Annotated[str, typer.Argument(help="The key id (from keys list) or the key's name.")],
    db: DbOption = None,
    data_dir: DataDirOption = _DEFAULT_DATA_DIR,
) -> None:
    """Revoke the active key(s) with this key id or name; effective at once."""
    store = _key_store(db, data_dir)
    try:
        revoked = store.revoke_key(key)
    finally:
        store.close()
    if not revoked:
        raise ClrecError(f"no active key has the id or name {key!r}")
    for item in revoked:
        typer.echo(f"revoked {item.key_id} ({item.name})")


@keys_app.command("list")
@_user_errors
def keys_list_command(
    db: DbOption = None,
    data_dir: DataDirOption = _DEFAULT_DATA_DIR,
) -> None:
    """Every key: id, name, scopes, state (tokens are never stored, so never shown)."""
    store = _key_store(db, data_dir)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    for item in keys:
        state = "active" if item.active else "revoked"
        typer.echo(f"{item.key_id}  {state:<7}  {','.join(sorted(item.scopes)):<10}  {item.name}")


@app.command("models")
def models_command() -> None:
    """List the registered models."""
    from clrec.models.registry import MODELS

    for name in sorted(MODELS):
        typer.echo(name)


def _run_and_print(config: RunConfig, out: Path) -> None:
    from clrec.distributed import is_main
    from clrec.experiment import run_experiment

    results = run_experiment(config, out, _data_root())
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
    for part in ("valid", "test"):
        metrics = results[part]
        shown = ", ".join(
            f"{name} {metrics[name]:.4f}"
            for name in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
            if name in metrics
        )
        typer.echo(f"{results['model']} {part}: {shown}")
    typer.echo(f"wrote {out / 'metrics.json'}")


def _scheme(text: str) -> Scheme:
    from clrec.data.splits import SCHEMES

    if text not in SCHEMES:
        raise ClrecError(f"unknown split scheme {text!r}; choose one of {', '.join(SCHEMES)}")
    return cast("Scheme", text)


@data_app.command("describe")
@_user_errors
def describe_command(
    name_or_path: Annotated[str, typer.Argument(help="Known data set name, or a path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Users, items, interactions, density and content fields of a data set."""
    from clrec.data import registry
    from clrec.data.describe import describe

    summary = describe(registry.load(name_or_path, _data_root()))
    if as_json:
        _print_json(summary)
        return
    typer.echo(f"{summary['name']}")
    for key in ("users", "items", "interactions", "catalogue_users", "catalogue_items"):
        typer.echo(f"  {key:<16} {summary[key]:>12,}")
    typer.echo(f"  {'density':<16} {summary['density']:>12.4%}")
    for key in ("rating", "time_range", "predefined_split", "events", "user_relations"):
        if key in summary:
            typer.echo(f"  {key:<16} {summary[key]}")
    for side in ("item_fields", "user_fields", "item_vectors"):
        for field_name, info in summary[side].items():
            typer.echo(f"  {side[:-1]:<16} {field_name}: {info}")


@data_app.command("check")
@_user_errors
def check_command(
    path: Annotated[Path, typer.Argument(help="A data file or a data set folder.")],
    user: Annotated[str | None, typer.Option(help="User id column.")] = None,
    item: Annotated[str | None, typer.Option(help="Item id column.")] = None,
    rating: Annotated[str | None, typer.Option(help="Rating column.")] = None,
    timestamp: Annotated[str | None, typer.Option(help="Timestamp column.")] = None,
    label: Annotated[str | None, typer.Option(help="0/1 click label column.")] = None,
    event: Annotated[str | None, typer.Option(help="Event type column.")] = None,
    sep: Annotated[str | None, typer.Option(help="Field separator (default: by suffix).")] = None,
    rating_min: Annotated[float | None, typer.Option(help="Smallest valid rating.")] = None,
    rating_max: Annotated[float | None, typer.Option(help="Largest valid rating.")] = None,
    duplicates: Annotated[
        str, typer.Option(help="Repeated (user, item) pairs: reject | keep_last | aggregate.")
    ] = "reject",
    item_content: Annotated[Path | None, typer.Option(help="Item content file.")] = None,
    item_id: Annotated[
        str | None, typer.Option(help="Item id column of the content file (default: inferred).")
    ] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the files.")] = "utf-8",
) -> None:
    """Validate a data file or folder; print the first problem and exit 1, or a summary."""
    from clrec.data.describe import describe
    from clrec.data.registry import load

    if path.is_dir() and all(
        v is None for v in (user, item, rating, timestamp, label, event, item_content)
    ):
        dataset = load(path)
    else:
        from clrec.data.readers.generic import read_generic, source_from_options

        source = source_from_options(
            path,
            user=user,
            item=item,
            rating=rating,
            timestamp=timestamp,
            label=label,
            event=event,
            sep=sep,
            rating_range=(rating_min, rating_max),
            duplicates=duplicates,
            item_content=item_content,
            item_id=item_id,
            encoding=encoding,
        )
        dataset = read_generic(source)
    summary = describe(dataset)
    typer.echo(
        f"ok: {path}: {summary['users']:,} users, {summary['items']:,} items, "
        f"{summary['interactions']:,} interactions"
    )


@data_app.command("split")
@_user_errors
def split_command(
    name_or_path: Annotated[str, typer.Argument(help="Known data set name, or a path.")],
    out: Annotated[Path, typer.Option(help="Folder for the dataset and its split.")],
    scheme: SchemeOption = "random",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 2020,
    ratios: Annotated[str, typer.Option(help="train,valid,test shares.")] = "0.8,0.1,0.1",
    min_rating: Annotated[
        float | None, typer.Option(help="Keep ratings >= this as positives.")
    ] = None,
    k_core: Annotated[
        int, typer.Option(help="Keep users and items with at least this many interactions.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Split a data set reproducibly and save dataset + split to ``--out``."""
    from clrec.data import filters, registry
    from clrec.data.splits import SplitConfig, split_dataset

    dataset = registry.load(name_or_path, _data_root())
    if min_rating is not None:
        dataset = filters.binarize(dataset, min_rating)
    if k_core > 0:
        dataset = filters.k_core(dataset, k_core, k_core)
    split = split_dataset(
        dataset, SplitConfig(scheme=_scheme(scheme), ratios=_parse_ratios(ratios), seed=seed)
    )
    split.verify(dataset)
    dataset.save(out / "dataset")
    split.save(out / "split")
    summary = split.summary()
    if as_json:
        _print_json(summary)
        return
    for part in ("train", "valid", "test"):
        sizes = summary["sizes"][part]
        typer.echo(
            f"{part:<6} {sizes['interactions']:>10,} interactions  {sizes['users']:>8,} users  "
            f"{sizes['items']:>8,} items"
        )
    for guarantee in summary["guarantees"]:
        typer.echo(f"guarantee: {guarantee}")
    typer.echo(f"wrote {out}")


@data_app.command("export")
@_user_errors
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (dataset/ and split/).")],
    fmt: Annotated[str, typer.Option("--format", help="recbole | lightfm")],
    out: Annotated[Path, typer.Option(help="Folder to write the peer's input files to.")],
    name: Annotated[
        str | None, typer.Option(help="RecBole data set name (default: the data set's name).")
    ] = None,
) -> None:
    """Write a saved split as RecBole atomic files or LightFM matrices, unchanged."""
    from clrec.data.exporters import export_run

    for path in export_run(run_dir, fmt, out, name):
        typer.echo(f"wrote {path}")


@app.command("robustness")
@_user_errors
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
    result = noise_curve(config, noise, _data_root(), out)
    metric = result["metric"]
    for run in result["runs"]:
        typer.echo(
            f"{result['model']} noise {run['rate']:>5.0%} ({run['fake_interactions']:,} fake): "
            f"test {metric} {run['test'][metric]:.4f}, drop {run['drop']:+.1%}"
        )
    typer.echo(f"wrote {out / RESULT_NAME}")
