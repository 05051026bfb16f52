"""Every file in tests/data/malformed/ fails with a DataError that names file, problem and place.

The manifest ``cases.yaml`` gives per file the options to read it with (CLI option names),
the message fragment and the row / line. Each case runs twice: through the generic reader
and through ``clrec data check``, which must exit non-zero and print no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clrec.data.readers.generic import read_generic, source_from_options
from clrec.errors import DataError

CORPUS = Path(__file__).resolve().parents[2] / "data" / "malformed"
MANIFEST: dict[str, Any] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
CASES: list[dict[str, Any]] = MANIFEST["cases"]
PATH_OPTIONS = {"item_content"}
FLOAT_OPTIONS = {"rating_min", "rating_max"}


def _case_id(case: dict[str, Any]) -> str:
    return str(case["problem"]).replace(" ", "-")


def _reader_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in options.items() if k not in FLOAT_OPTIONS}
    for key in PATH_OPTIONS & kwargs.keys():
        kwargs[key] = CORPUS / str(kwargs[key])
    low, high = options.get("rating_min"), options.get("rating_max")
    if low is not None or high is not None:
        kwargs["rating_range"] = (
            None if low is None else float(low),
            None if high is None else float(high),
        )
    return kwargs


def _cli_args(case: dict[str, Any]) -> list[str]:
    args = ["data", "check", str(CORPUS / case["file"])]
    for key, value in (case.get("options") or {}).items():
        text = str(CORPUS / str(value)) if key in PATH_OPTIONS else str(value)
        args += [f"--{key.replace('_', '-')}", text]
    return args


def _expected_place(case: dict[str, Any]) -> list[str]:
    place = []
    if "line" in case:
        place.append(f"line {case['line']}")
    if "row" in case:
        place.append(f"row {case['row']}")
    return place


def _squash(text: str) -> str:
    """Text without whitespace, so a terminal's line wrapping cannot hide a fragment."""
    return "".join(text.split())


def test_corpus_is_large_and_every_file_is_covered() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "cases.yaml"}
    used = {case["file"] for case in CASES} | set(MANIFEST["helpers"])
    used |= {
        str(v) for c in CASES for k, v in (c.get("options") or {}).items() if k in PATH_OPTIONS
    }
    assert files == used
    assert len(files - set(MANIFEST["helpers"])) >= 18
    assert len({case["problem"] for case in CASES}) == len(CASES)
    assert (CORPUS / "empty.csv").stat().st_size == 0


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_reader_raises_data_error(case: dict[str, Any]) -> None:
    source = source_from_options(CORPUS / case["file"], **_reader_kwargs(case.get("options") or {}))
    with pytest.raises(DataError) as info:
        read_generic(source)
    message = str(info.value)
    assert case.get("names", case["file"]) in message
    assert case["fragment"] in message
    for place in _expected_place(case):
        assert place in message
    if "row" in case:
        assert info.value.row == case["row"]
    if "line" in case:
        assert info.value.line == case["line"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cli_check_reports_without_traceback(case: dict[str, Any]) -> None:
    cli = pytest.importorskip("clrec.cli", reason="clrec.cli is not written yet")
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, _cli_args(case))
    output = result.output
    assert result.exit_code != 0, output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    squashed = _squash(output)
    assert _squash(case.get("names", case["file"])) in squashed
    assert _squash(case["fragment"]) in squashed
    for place in _expected_place(case):
        assert _squash(place) in squashed
