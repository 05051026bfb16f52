"""The run folders bench scripts read: trained first from a config when they do not exist.

Bench scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
import it as ``run_folders``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from clrec.config import RunConfig
from clrec.data.registry import default_data_root
from clrec.experiment import run_experiment


def ensure_run(run: Path, config: Path | None, overrides: list[str]) -> None:
    """Train ``run`` from ``config`` (with ``--set`` style ``overrides``) unless it holds a
    model already; data from ``$CLREC_DATA`` or the default data root."""
    if (run / "model").is_dir():
        return
    if config is None:
        raise SystemExit(f"{run}: no run there and no --config to train one")
    print(f"[{run}] training from {config} ...", file=sys.stderr, flush=True)
    data_root = default_data_root(os.environ.get("CLREC_DATA"))
    run_experiment(RunConfig.from_yaml(config, overrides), run, data_root)
