"""`clrec data describe NAME --json` gives the counts of ../shared/data/README.md for every set."""

import json

import pytest
from typer.testing import CliRunner

from clrec.cli import app
from conftest import dataset_folder

# users, items, interactions and density as published in the data README
README_COUNTS = {
    "ml-latest-small": (610, 9724, 100_836, 0.0170),
    "ml-100k": (943, 1682, 100_000, 0.0630),
    "ml-100k-recbole": (943, 1682, 100_000, 0.0630),
    "ml-1m": (6040, 3706, 1_000_209, 0.0447),
    "amazon-scientific": (2928, 1585, 19_712, 0.00425),
    "amazon-office": (4905, 2420, 53_258, 0.00449),
    "gowalla": (29_858, 40_981, 1_027_370, 0.00084),
    "lastfm": (1892, 17_632, 92_834, 0.00278),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_describe_json_matches_readme(
    name: str, data_root: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_folder(data_root, name)  # type: ignore[arg-type]
    monkeypatch.setenv("CLREC_DATA", str(data_root))
    result = CliRunner().invoke(app, ["data", "describe", name, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    users, items, interactions, density = README_COUNTS[name]
    assert (summary["users"], summary["items"], summary["interactions"]) == (
        users,
        items,
        interactions,
    )
    assert summary["density"] == pytest.approx(density, abs=5e-5)
