"""``clrec export`` (a run into a serving artifact) and ``clrec serve`` (the HTTP service)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clrec.cli.common import DEFAULT_DATA_DIR, DataDirOption, DbOption, user_errors
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.serving.settings import ServiceSettings


@user_errors
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


@user_errors
def serve_command(
    artifact: Annotated[Path, typer.Argument(help="An artifact folder written by export.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the artifact).")
    ] = 1,
    db: DbOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    index: Annotated[str, typer.Option(help="Item index: exact | hnsw.")] = "exact",
    ef_search: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="HNSW query beam (default 96): higher is more accurate and slower; /readyz "
            "reports the recall@10 measured at start.",
        ),
    ] = None,
    ranker: Annotated[str, typer.Option(help="The artifact's ranking stage: on | off.")] = "on",
    auth: Annotated[
        bool, typer.Option(help="Require an API key (--no-auth only for local tries).")
    ] = True,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime/--frozen",
            help="A known user's vector follows their recorded events at once (--frozen: it "
            "stays as trained; events then only exclude items).",
        ),
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
    header_timeout: Annotated[
        float,
        typer.Option(
            min=0.1, help="Seconds a client has to send a request's headers before it is cut off."
        ),
    ] = 10.0,
    keep_alive: Annotated[
        int, typer.Option(min=1, help="Seconds an idle keep-alive connection stays open.")
    ] = 5,
    limit_concurrency: Annotated[
        int,
        typer.Option(min=1, help="Connections and requests at once per worker; beyond it: 503."),
    ] = 1000,
    new_store: Annotated[
        bool,
        typer.Option(
            "--new-store",
            help="Start over on a store other than the one this data folder used (an "
            "emptied or replaced database); without it such a store is refused.",
        ),
    ] = False,
) -> None:
    """Serve real-time recommendations over HTTP from an exported artifact."""
    try:
        import uvicorn
        import uvicorn.config

        from clrec.serving.app import SETTINGS_ENV
    except ModuleNotFoundError as err:
        raise ClrecError(f"clrec serve needs {err.name}: pip install 'clrec[serve]'") from None
    from clrec.serving.protocol import HeaderDeadlineProtocol
    from clrec.serving.store import Store
    from clrec.serving.store_guard import guard_store

    if not (artifact / "artifact.json").is_file():
        raise ClrecError(f"{artifact}: not a clrec artifact (no artifact.json); see clrec export")
    settings = _service_settings(
        artifact=artifact.resolve(),
        data_dir=data_dir.resolve(),
        database_url=db,
        index={"kind": index} if ef_search is None else {"kind": index, "ef_search": ef_search},
        auth_required=auth,
        ranker=ranker,
        realtime_users=realtime,
        max_k=max_k,
        rate_limit_per_s=rate_limit,
        rate_limit_burst=burst,
        log_level=log_level,
        sync_interval_s=sync_interval or None,
        new_store=new_store,
        header_timeout_s=header_timeout,
    )
    store = Store(settings.db_url)  # the tables exist before any worker starts
    try:  # one clear refusal of a damaged or foreign store, before any worker starts
        guard_store(store, settings.data_dir, settings.new_store)
    finally:
        store.close()
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
        http=HeaderDeadlineProtocol,
        timeout_keep_alive=keep_alive,
        limit_concurrency=limit_concurrency,
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
