"""Text that a JSON request can carry but no database, encoder or response can: lone
surrogates (JSON's ``"\\ud800"`` escapes) and, in echoed input, non-finite floats."""

import math
from typing import Any


def is_text(text: str) -> bool:
    """Whether ``text`` is encodable as UTF-8 (JSON's ``"\\ud800"`` escapes decode to lone
    surrogates, which no database, encoder or response can carry)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """``text`` with any lone surrogate replaced by U+FFFD."""
    if is_text(text):
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def json_safe(value: Any) -> Any:
    """``value`` (JSON-ready) with what a JSON response cannot carry made printable: a
    non-finite float becomes its name (``"nan"``, ``"inf"``), lone surrogates become U+FFFD.
    Error responses echo the request's input, which Python's JSON parser accepts with both
    (``NaN``, ``1e999``, ``"\\ud800"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


__all__ = ["is_text", "json_safe", "printable"]
