"""What the CLI tests share: a runner, the check that an error is one clear line, and a tiny
rated catalogue (a plain helper module: pytest collects only ``test_*`` files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from click.testing import Result
from typer.testing import CliRunner

from clrec.data.schema import Dataset

runner = CliRunner()

N_USERS, N_ITEMS, N_GROUPS = 24, 24, 4
GENRES = ["Action", "Comedy", "Drama", "Horror"]
# Fast settings for the models the CLI tests fit (BPR: vectors for export and serve).
BPR: dict[str, Any] = {
    "embedding_size": 8,
    "epochs": 2,
    "batch_size": 64,
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}


def run_config(data: Path, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """A quick run config on ``data``: seeded random split, metrics at 5 and 10, no report."""
    return {
        "data": {"name": str(data)},
        "split": {"scheme": "random", "seed": 7},
        "model": {"name": model, "params": params},
        "evaluation": {"ks": [5, 10], "progress": False},
        "report": False,
    }


def assert_user_error(result: Result, fragment: str) -> None:
    """The command failed as a user error: exit code 1 and a single ``error: ...`` line on
    stderr that contains ``fragment``, with no traceback anywhere."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def rated_movies() -> Dataset:
    """24 users × 24 movies (title, genre), rated 1–5 with timestamps: user ``u`` rates the
    6 movies ``i`` with ``i % 4 == u % 4`` 4 or 5 and 3 others 1 or 2 (216 ratings). Besides
    them the user ``lurker`` (3 ratings) and the movie ``flop`` (4) are rated 1 or 2 only, so
    ``min_rating`` 3 leaves them without interactions: ``drop_unused`` drops them."""
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, float, int]] = []
    for u in range(N_USERS):
        liked = [i for i in range(N_ITEMS) if i % N_GROUPS == u % N_GROUPS]
        others = rng.choice([i for i in range(N_ITEMS) if i not in liked], 3, replace=False)
        rated = [(i, float(rng.choice([4.0, 5.0]))) for i in liked]
        rated += [(int(i), float(rng.choice([1.0, 2.0]))) for i in others]
        for t, k in enumerate(rng.permutation(len(rated))):
            item, rating = rated[k]
            rows.append((f"u{u}", f"m{item}", rating, 1_000_000 + 60 * t))
    rows += [("lurker", f"m{i}", 1.0 + i % 2, 2_000_000 + i) for i in range(3)]
    rows += [(f"u{u}", "flop", 1.0, 3_000_000 + u) for u in range(0, N_USERS, 6)]
    items = [
        {"id": f"m{i}", "title": f"Movie {i} ({1990 + i % 3})", "genres": GENRES[i % N_GROUPS]}
        for i in range(N_ITEMS)
    ]
    items.append({"id": "flop", "title": "The Flop (1999)", "genres": "Drama"})
    return Dataset.from_external(
        "rated-movies",
        pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]),
        item_content=pd.DataFrame(items),
        item_fields={"title": "text", "genres": "tags"},
    )
