"""``clrec encode``: item content into vectors, cached by content."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from clrec.cli.common import data_root, user_errors
from clrec.errors import ClrecError


@user_errors
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
    """Encode item content into vectors (cached by content); print encoded / cached / skipped.
    The item featuriser a model would fit does the encoding, so a later run finds every
    vector in the cache."""
    from clrec.data import registry
    from clrec.encoders.featurizer import ContentConfig, EncoderKinds, ItemFeaturizer
    from clrec.encoders.text_model import TextBackend

    if modality not in ("text", "image", "all"):
        raise ClrecError(f"--modality must be text, image or all, got {modality!r}")
    if backend not in ("torch", "onnx-int8"):
        raise ClrecError(f"--backend must be torch or onnx-int8, got {backend!r}")
    dataset = registry.load(name_or_path, data_root())
    config = ContentConfig(
        cache_dir=str(cache),
        text_backend=cast(TextBackend, backend),
        text_model=model,
        threads=threads,
    )
    featurizer = ItemFeaturizer.fit(dataset, config, kinds=cast(EncoderKinds, modality))
    vectors, summary = featurizer.encode_dataset(dataset)
    for line in summary.lines():
        typer.echo(line)
    if out is not None:
        dataset.item_vectors = {**dataset.item_vectors, **vectors}
        dataset.check_integrity()
        typer.echo(f"wrote {dataset.save(out)}")
