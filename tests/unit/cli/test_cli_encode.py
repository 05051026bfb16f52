"""`clrec encode` (clrec.cli.encode): bad arguments as one clear line.

Success (counts of encoded / cached / skipped items, the saved vectors, a second run served
from the cache): tests/unit/encoders/test_modalities.py::test_encode_command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import assert_user_error, runner

from clrec.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{movies}", "--modality", "audio"], "--modality must be text, image or all"),
        (["ml-2m"], "no data set named 'ml-2m'"),
        (["{movies}", "--modality", "text", "--model", "{tmp}/none"], "no such directory"),
    ],
    ids=["modality", "data set", "model"],
)
def test_a_bad_argument_is_one_clear_line(
    args: list[str], message: str, movies_dir: Path, tmp_path: Path
) -> None:
    places = {"movies": movies_dir, "tmp": tmp_path}
    cache = ["--cache", str(tmp_path / "cache")]
    result = runner.invoke(app, ["encode", *(arg.format(**places) for arg in args), *cache])
    assert_user_error(result, message)
