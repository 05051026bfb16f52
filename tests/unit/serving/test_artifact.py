"""Serving artifacts: export a run, load it back, and check it against the run's own model.

Tiny runs through :func:`clrec.experiment.run_experiment` on a synthetic data set (60 users ×
40 movies with titles, genres and a studio; cold-item split, so the test items have no
training interaction and their clrec vectors come from content alone). The clrec model reads
only the tag modality (genres, studio, title year), so no text model is needed; the real
MiniLM text path is covered by ``tests/integration/test_artifact_real.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from movies import CLREC as BASE_CLREC
from movies import EMBEDDING, N_ITEMS, N_USERS, movies_dataset, train_run

from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.errors import ClrecError
from clrec.models.clrec import ClrecRecommender
from clrec.models.embedding import EmbeddingModel
from clrec.models.registry import load_model
from clrec.serving.artifact import FORMAT_VERSION, export_artifact, load_artifact
from clrec.serving.artifact import export as export_module
from clrec.serving.artifact.layout import sha256

RARE_GENRE = "Noir"  # on one catalogue item only: below min_tag_count, not a model tag
# the prior reads a recency-weighted history
CLREC = {**BASE_CLREC, "history_half_life": 3.0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return movies_dataset(RARE_GENRE).save(tmp_path_factory.mktemp("data") / "movies")


def _train(root: Path, data_dir: Path, name: str, params: dict[str, Any]) -> Path:
    return train_run(root / name, data_dir, name, params)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "bpr": _train(root, data_dir, "bpr", EMBEDDING),
        "lightgcn": _train(root, data_dir, "lightgcn", {**EMBEDDING, "n_layers": 2}),
        "clrec": _train(root, data_dir, "clrec", CLREC),
        "clrec-plain": _train(
            root / "plain",
            data_dir,
            "clrec",
            {**CLREC, "content": {"modalities": []}, "prior": "none", "similarity": "dot"},
        ),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, runs: dict[str, Path]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return {name: export_artifact(run, root / name) for name, run in runs.items()}


def _copy(source: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "copy"))


def _rewrite_manifest(root: Path, **changes: Any) -> None:
    path = root / "artifact.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", ["bpr", "lightgcn", "clrec", "clrec-plain"])
def test_round_trip_matches_the_model(
    name: str, runs: dict[str, Path], exported: dict[str, Path]
) -> None:
    model = load_model(runs[name] / "model")
    art = load_artifact(exported[name])
    assert isinstance(model, EmbeddingModel) and isinstance(art.model, EmbeddingModel)
    np.testing.assert_array_equal(art.model.user_vectors(), model.user_vectors())
    np.testing.assert_array_equal(art.model.item_vectors(), model.item_vectors())
    np.testing.assert_array_equal(art.model.history_vectors(), model.history_vectors())
    assert art.model.user_vectors().dtype == np.float32
    users = np.arange(0, N_USERS, 7)
    np.testing.assert_array_equal(art.model.score(users), model.score(users))  # type: ignore[attr-defined]


def test_manifest_and_tables(runs: dict[str, Path], exported: dict[str, Path]) -> None:
    art = load_artifact(exported["clrec"])
    model = load_model(runs["clrec"] / "model")
    assert isinstance(model, ClrecRecommender) and model.prior is not None
    dataset = Dataset.load(runs["clrec"] / "dataset")
    manifest = art.manifest
    assert manifest["format"] == "clrec-artifact" and manifest["format_version"] == 2
    assert manifest["model"] == "clrec" and manifest["dataset"] == "synthetic-movies"
    assert (manifest["n_users"], manifest["n_items"], manifest["dim"]) == (N_USERS, N_ITEMS, 8)
    assert manifest["similarity"] == "cosine"
    assert manifest["content"] == ["tags"] and art.content_modalities == ["tags"]
    assert manifest["item_fields"] == dataset.item_fields == art.item_fields
    metrics = json.loads((runs["clrec"] / "metrics.json").read_text())
    assert manifest["metrics"] == metrics["test"]
    assert set(manifest["files"]) >= {
        "model/model.json",
        "model/weights.pt",
        "model/history.npz",
        "model/featurizer.json",
        "model/prior/weights.npy",
        "users.json",
        "items.json",
        "catalogue.parquet",
        "seen.npz",
        "config.yaml",
    }
    assert art.user_ids == dataset.users["id"].tolist()
    assert art.item_ids == dataset.items["id"].tolist()
    assert art.item_index["m7"] == art.item_ids.index("m7")
    assert art.user_index[art.user_ids[5]] == 5
    assert list(art.catalogue.columns) == ["id", "title", "genres", "studio"]
    # seen holds train + valid + test
    split = Split.load(runs["clrec"] / "split")
    total = len(split.train) + len(split.valid) + len(split.test)
    assert art.seen.shape == (N_USERS, N_ITEMS) and art.seen.nnz == total
    test_pairs = split.test[["user", "item"]].to_numpy()
    assert (np.asarray(art.seen[test_pairs[:, 0], test_pairs[:, 1]]) == 1).all()

    plain = load_artifact(exported["bpr"])
    assert plain.manifest["similarity"] == "dot" and plain.content_modalities == []
    assert not plain.model.has_prior and art.model.has_prior


def test_prior_reads_its_own_recency_weighted_history(exported: dict[str, Path]) -> None:
    art = load_artifact(exported["clrec"])
    model = art.model
    assert isinstance(model, ClrecRecommender) and model.prior is not None
    seen = model.prior.seen
    assert seen is not None
    assert not np.allclose(seen.data, 1.0)  # recency weights, not the binary history
    assert seen.nnz < art.seen.nnz  # train only, unlike the artifact's seen


# ---------------------------------------------------------------------- new items


def _row(art: Any, item: int, **changes: str) -> dict[str, str]:
    row = art.catalogue.iloc[item]
    return {"title": row["title"], "genres": row["genres"], "studio": row["studio"], **changes}


def test_embed_items_reproduces_content_only_items(
    runs: dict[str, Path], exported: dict[str, Path]
) -> None:
    art = load_artifact(exported["clrec"])
    split = Split.load(runs["clrec"] / "split")
    cold = np.setdiff1d(split.test["item"].unique(), split.train["item"].unique())
    assert len(cold) >= 3
    # a cold item's vector is its content's alone: copying its fields must give it back
    model = art.model
    vectors = art.embed_items([_row(art, int(i)) for i in cold])  # history space
    np.testing.assert_allclose(vectors, model.history_vectors()[cold], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        model.index_vectors(vectors), model.item_vectors()[cold], rtol=1e-5, atol=1e-6
    )
    # a tag the model never learnt (too rare in the catalogue) is ignored, and does not shift
    # the columns of the tags it knows, although it passes the count with the new row
    rare = _row(art, int(cold[0]))
    rare["genres"] += f"|{RARE_GENRE}"
    np.testing.assert_allclose(
        art.embed_items([rare])[0], model.history_vectors()[cold[0]], rtol=1e-5, atol=1e-6
    )
    # missing fields are missing tags: studio alone is still content
    alone = art.embed_items([{"studio": "North"}, {"genres": "Drama", "studio": None}])
    assert alone.shape == (2, 8) and np.isfinite(alone).all()
    assert art.embed_items([]).shape == (0, 8)


def test_embed_items_refusals(exported: dict[str, Path]) -> None:
    art = load_artifact(exported["clrec"])
    with pytest.raises(ClrecError, match="no content the model can read"):
        art.embed_items([{"genres": "Unknownia"}])
    with pytest.raises(ClrecError, match="unknown field"):
        art.embed_items([{"titel": "Typo (1990)"}])
    for name in ("bpr", "clrec-plain"):
        with pytest.raises(ClrecError, match="reads no content"):
            load_artifact(exported[name]).embed_items([{"title": "x"}])


# ---------------------------------------------------------------------- export refusals


@pytest.mark.parametrize("name", ["popularity", "ease"])
def test_refuses_models_without_vectors(name: str, tmp_path: Path, data_dir: Path) -> None:
    run = _train(tmp_path, data_dir, name, {})
    with pytest.raises(ClrecError, match=r"cannot be exported.*bpr, lightgcn, clrec"):
        export_artifact(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_non_empty_out_and_the_run_itself(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ClrecError, match="not empty"):
        export_artifact(runs["bpr"], out)
    assert (out / "keep.txt").read_text() == "mine"
    export_artifact(runs["bpr"], out, overwrite=True)
    assert not (out / "keep.txt").exists() and load_artifact(out).model_name == "bpr"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_artifact(export_artifact(runs["bpr"], empty)).n_items == N_ITEMS
    for target in (runs["bpr"], runs["bpr"].parent):
        with pytest.raises(ClrecError, match="run folder"):
            export_artifact(runs["bpr"], target, overwrite=True)
    with pytest.raises(ClrecError, match="inside the run's model folder"):
        export_artifact(runs["bpr"], runs["bpr"] / "model" / "artifact")
    assert not (runs["bpr"] / "model" / "artifact").exists()
    with pytest.raises(ClrecError, match="not a finished clrec run"):
        export_artifact(tmp_path, tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]  # no leftovers


def test_crash_leaves_no_half_artifact(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    export_artifact(runs["bpr"], out)
    before = json.loads((out / "artifact.json").read_text())

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export_module.sp, "save_npz", crash)
    with pytest.raises(OSError, match="disk full"):
        export_artifact(runs["lightgcn"], out, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        export_artifact(runs["lightgcn"], tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial folders
    assert json.loads((out / "artifact.json").read_text()) == before  # the old one intact
    assert load_artifact(out).model_name == "bpr"


# ---------------------------------------------------------------------- load refusals


def _artifact_files(root: Path) -> list[str]:
    return sorted(json.loads((root / "artifact.json").read_text())["files"])


def test_every_changed_byte_is_caught(exported: dict[str, Path], tmp_path: Path) -> None:
    files = _artifact_files(exported["clrec"])
    assert any(f.startswith("model/") for f in files)
    for number, rel in enumerate(files):
        root = Path(shutil.copytree(exported["clrec"], tmp_path / f"a{number}"))
        path = root / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(ClrecError, match="corrupt or changed") as caught:
            load_artifact(root)
        assert rel in str(caught.value)
        shutil.rmtree(root)


def test_missing_and_extra_files(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    (root / "model" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ClrecError, match=r"does not list: model/extra\.bin"):
        load_artifact(root)
    (root / "model" / "extra.bin").unlink()
    (root / "items.json").unlink()
    with pytest.raises(ClrecError, match=r"items\.json: missing"):
        load_artifact(root)


def test_truncated_model_file(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    path = root / "model" / "weights.pt"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ClrecError, match=r"weights\.pt: corrupt or changed"):
        load_artifact(root)
    with pytest.raises(ClrecError, match=r"model: unreadable model"):
        load_artifact(root, verify=False)


def _resign(root: Path, *changed: str) -> None:
    """Update the manifest's digests of ``changed`` files (a deliberate, consistent change)."""
    files = json.loads((root / "artifact.json").read_text())["files"]
    files.update({rel: sha256(root / rel) for rel in changed})
    _rewrite_manifest(root, files=files)


def test_non_finite_vectors_are_refused(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    path = root / "model" / "weights.pt"
    state = torch.load(path, weights_only=True)
    state["item_final"][3, 1] = float("inf")
    torch.save(state, path)
    _resign(root, "model/weights.pt")
    with pytest.raises(ClrecError, match="item vectors hold NaN or infinite"):
        load_artifact(root)


def test_shape_mismatches(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    manifest = json.loads((root / "artifact.json").read_text())
    sp.save_npz(root / "seen.npz", sp.csr_matrix((N_USERS, N_ITEMS + 1), dtype=np.float32))
    _resign(root, "seen.npz")
    with pytest.raises(ClrecError, match=r"seen\.npz: shape"):
        load_artifact(root)
    shutil.copyfile(exported["bpr"] / "seen.npz", root / "seen.npz")
    _rewrite_manifest(root, files=manifest["files"], dim=3)
    with pytest.raises(ClrecError, match=r"the model holds \(60, 8\) user"):
        load_artifact(root)


def test_format_and_version(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    _rewrite_manifest(root, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ClrecError, match=r"newer clrec.*upgrade"):
        load_artifact(root)
    _rewrite_manifest(root, format_version="1")
    with pytest.raises(ClrecError, match="must be an integer"):
        load_artifact(root)
    _rewrite_manifest(root, format_version=FORMAT_VERSION, format="something-else")
    with pytest.raises(ClrecError, match="not a clrec artifact"):
        load_artifact(root)
    (root / "artifact.json").unlink()
    with pytest.raises(ClrecError, match=r"no artifact\.json"):
        load_artifact(root)
