"""The synthetic catalogue the serving tests share, and tiny runs trained on it.

60 users × 40 movies with a title (with a year), 1–2 genres and a studio; user ``u`` likes
the movies ``i`` with ``i % 5 == u % 5``. Runs use a cold-item split, so the test items have
no training interaction and a clrec model's vectors for them come from content alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.experiment import run_experiment

N_USERS, N_ITEMS = 60, 40
GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
STUDIOS = ["North", "South", "East", "West"]

# a tags-only clrec model with an EASE prior: it embeds new items from their fields
CLREC: dict[str, Any] = {
    "embedding_size": 8,
    "content": {"modalities": ["tags"], "cache_dir": None},
    "prior": "ease",
    "prior_reg": 50.0,  # the weight is still searched on validation
    "similarity": "cosine",
    "temperature": 0.2,
    "epochs": 3,
    "batch_size": 32,
    "patience": 0,
    "seed": 0,
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}
# BPR-MF / LightGCN: vectors only, no content
EMBEDDING: dict[str, Any] = {
    "embedding_size": 8,
    "epochs": 2,
    "batch_size": 256,
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}


def movies_dataset(rare_genre: str | None = None) -> Dataset:
    """The catalogue; ``rare_genre`` is added to movie m7 only (a tag below any min count)."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(N_ITEMS):
        genres = [GENRES[i % len(GENRES)]]
        if i % 3 == 0:
            genres.append(GENRES[(i + 2) % len(GENRES)])
        if i == 7 and rare_genre is not None:
            genres.append(rare_genre)
        items.append(
            {
                "id": f"m{i}",
                "title": f"Movie {i} ({1990 + i % 4})",
                "genres": "|".join(genres),
                "studio": STUDIOS[i % len(STUDIOS)],
            }
        )
    rows = []
    for u in range(N_USERS):
        liked = [i for i in range(N_ITEMS) if i % len(GENRES) == u % len(GENRES)]
        others = [i for i in range(N_ITEMS) if i not in liked]
        chosen = list(rng.choice(liked, 5, replace=False)) + list(
            rng.choice(others, 3, replace=False)
        )
        for t, i in enumerate(rng.permutation(chosen)):
            rows.append((f"u{u}", f"m{i}", 4.0, 1_000_000 + 60 * t))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Dataset.from_external(
        "synthetic-movies",
        frame,
        item_content=pd.DataFrame(items),
        item_fields={"title": "text", "genres": "tags", "studio": "category"},
    )


def train_run(run_dir: Path, data_dir: Path, model: str, params: dict[str, Any]) -> Path:
    """Train ``model`` on the catalogue saved in ``data_dir``; its run folder is ``run_dir``."""
    config = RunConfig.from_mapping(
        {
            "data": {"name": str(data_dir)},
            "split": {"scheme": "cold-item", "ratios": [0.7, 0.1, 0.2], "seed": 1},
            "model": {"name": model, "params": params},
            "evaluation": {"ks": [5, 10], "progress": False},
            "report": False,
        }
    )
    run_experiment(config, run_dir)
    return run_dir
