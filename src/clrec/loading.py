"""Import an object named ``"module:attr"`` on first use: how the data set, layout and model
tables name their readers and classes, so a light command never imports a heavy module."""

from __future__ import annotations

import importlib
from typing import Any

from clrec.errors import ClrecError


def load_attr(spec: str) -> Any:
    """The object ``attr`` of ``module`` for ``spec`` ``"module:attr"``."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ClrecError(f"{spec!r}: expected 'module:attr'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise ClrecError(f"cannot load {spec!r}: {error}") from error
