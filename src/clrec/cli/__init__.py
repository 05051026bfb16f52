"""The ``clrec`` command line: each command parses options, builds a config, calls the library.

One module per command group: :mod:`~clrec.cli.runs` (run folders), :mod:`~clrec.cli.data`,
:mod:`~clrec.cli.encode`, :mod:`~clrec.cli.serve` (export and serve), :mod:`~clrec.cli.keys`
and :mod:`~clrec.cli.rank`; :mod:`~clrec.cli.common` holds what they share. The commands are
registered here, in the order ``clrec --help`` lists them. The CLI and the service entry point
are the only places that read the environment (see :mod:`~clrec.cli.common`).
"""

from __future__ import annotations

import typer

from clrec.cli import data, encode, keys, rank, runs, serve, store

app = typer.Typer(
    name="clrec",
    help="Contrastive recommendations from pretrained-encoder content and behaviour logs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for _name, _command in (
    ("run", runs.run_command),
    ("train", runs.train_command),
    ("init-config", runs.init_config_command),
    ("tune", runs.tune_command),
    ("evaluate", runs.evaluate_command),
    ("compare", runs.compare_command),
    ("encode", encode.encode_command),
    ("export", serve.export_artifact_command),
    ("serve", serve.serve_command),
    ("models", runs.models_command),
    ("robustness", runs.robustness_command),
):
    app.command(_name)(_command)
app.add_typer(data.app, name="data")
app.add_typer(keys.app, name="keys")
app.add_typer(rank.app, name="rank")
app.add_typer(store.app, name="store")

__all__ = ["app"]
