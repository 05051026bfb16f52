"""The ``clrec data`` group: describe, check, split and export data sets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clrec.cli.common import (
    MinRatingOption,
    SchemeOption,
    SeedOption,
    data_root,
    parse_scheme,
    print_json,
    user_errors,
)
from clrec.errors import ClrecError, validation_error

if TYPE_CHECKING:
    from clrec.config import DataConfig

app = typer.Typer(help="Inspect, validate and split data sets.", no_args_is_help=True)


@app.command("describe")
@user_errors
def describe_command(
    name_or_path: Annotated[str, typer.Argument(help="Known data set name, or a path.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Users, items, interactions, density and content fields of a data set."""
    from clrec.data import registry
    from clrec.data.describe import describe

    summary = describe(registry.load(name_or_path, data_root()))
    if as_json:
        print_json(summary)
        return
    typer.echo(f"{summary['name']}")
    for key in ("users", "items", "interactions", "catalogue_users", "catalogue_items"):
        typer.echo(f"  {key:<16} {summary[key]:>12,}")
    typer.echo(f"  {'density':<16} {summary['density']:>12.4%}")
    for key in (
        "rating",
        "time_range",
        "position_range",
        "predefined_split",
        "events",
        "user_relations",
    ):
        if key in summary:
            typer.echo(f"  {key:<16} {summary[key]}")
    for side in ("item_fields", "user_fields", "item_vectors"):
        for field_name, info in summary[side].items():
            typer.echo(f"  {side[:-1]:<16} {field_name}: {info}")


@app.command("check")
@user_errors
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
    time_unit: Annotated[
        str, typer.Option(help="Unit of numeric timestamps: auto | s | ms | us | ns.")
    ] = "auto",
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
            time_unit=time_unit,
        )
        dataset = read_generic(source)
    summary = describe(dataset)
    typer.echo(
        f"ok: {path}: {summary['users']:,} users, {summary['items']:,} items, "
        f"{summary['interactions']:,} interactions"
    )


@app.command("split")
@user_errors
def split_command(
    name_or_path: Annotated[str, typer.Argument(help="Known data set name, or a path.")],
    out: Annotated[Path, typer.Option(help="Folder for the dataset and its split.")],
    scheme: SchemeOption = "random",
    seed: SeedOption = 2020,
    ratios: Annotated[str, typer.Option(help="train,valid,test shares.")] = "0.8,0.1,0.1",
    min_rating: MinRatingOption = None,
    k_core: Annotated[
        int, typer.Option(help="Keep users and items with at least this many interactions.")
    ] = 0,
    drop_unused: Annotated[
        bool | None,
        typer.Option(
            "--drop-unused/--keep-unused",
            help="Drop the users and items the filters leave without interactions, or keep "
            "them (default: a run config's data.drop_unused, which drops them).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Split a data set reproducibly and save dataset + split to ``--out``.

    The data set is prepared exactly as ``clrec train`` prepares a run config's ``data``, so
    the same settings give the same users, items and interactions."""
    from clrec.data.splits import SplitConfig, split_dataset
    from clrec.experiment import prepare_data

    data = _data_config(name_or_path, min_rating, k_core, drop_unused)
    dataset = prepare_data(data, data_root())
    split = split_dataset(
        dataset, SplitConfig(scheme=parse_scheme(scheme), ratios=_parse_ratios(ratios), seed=seed)
    )
    split.verify(dataset)
    dataset.save(out / "dataset")
    split.save(out / "split")
    summary = split.summary()
    if as_json:
        print_json(summary)
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


@app.command("export")
@user_errors
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


def _data_config(
    name: str, min_rating: float | None, k_core: int, drop_unused: bool | None
) -> DataConfig:
    """A run config's ``data`` section from the split options (``drop_unused`` unset: the
    config's default); a bad value is a ClrecError naming its option."""
    from pydantic import ValidationError

    from clrec.config import DataConfig

    values: dict[str, object] = {"name": name, "min_rating": min_rating, "k_core": k_core}
    if drop_unused is not None:
        values["drop_unused"] = drop_unused
    try:
        return DataConfig.model_validate(values)
    except ValidationError as err:
        raise validation_error(
            err, "data split", lambda loc: "--" + "-".join(str(p) for p in loc).replace("_", "-")
        ) from None


def _parse_ratios(text: str) -> tuple[float, float, float]:
    """``--ratios`` as three shares (train, valid, test); a malformed value is a ClrecError."""
    message = f"--ratios {text!r}: expected three non-negative numbers like 0.8,0.1,0.1"
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ClrecError(message) from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise ClrecError(message)
    return parts[0], parts[1], parts[2]
