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
from movies import CLREC as BASE_CLREC
from movies import EMBEDDING, N_ITEMS, N_USERS, movies_dataset, train_run

from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.errors import ClrecError
from clrec.models.clrec import ClrecRecommender
from clrec.models.registry import load_model
from clrec.serving import artifact as artifact_module
from clrec.serving.artifact import FORMAT_VERSION, export_artifact, load_artifact

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
    assert isinstance(model._user_final, type(model._item_final))
    np.testing.assert_array_equal(art.user_vectors, model._user_final.numpy())  # type: ignore[union-attr]
    np.testing.assert_array_equal(art.item_vectors, model._item_final.numpy())  # type: ignore[union-attr]
    assert art.user_vectors.dtype == np.float32
    users = np.arange(0, N_USERS, 7)
    expected = model.score(users)  # (B, I)
    subset = np.array([3, 0, 17, 39, 5])
    for row, user in enumerate(users):
        np.testing.assert_allclose(art.score(int(user)), expected[row], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            art.score(int(user), subset), expected[row, subset], rtol=1e-5, atol=1e-5
        )


def test_manifest_and_tables(runs: dict[str, Path], exported: dict[str, Path]) -> None:
    art = load_artifact(exported["clrec"])
    model = load_model(runs["clrec"] / "model")
    assert isinstance(model, ClrecRecommender) and model.prior is not None
    dataset = Dataset.load(runs["clrec"] / "dataset")
    manifest = art.manifest
    assert manifest["format"] == "clrec-artifact" and manifest["format_version"] == 1
    assert manifest["model"] == "clrec" and manifest["dataset"] == "synthetic-movies"
    assert (manifest["n_users"], manifest["n_items"], manifest["dim"]) == (N_USERS, N_ITEMS, 8)
    assert manifest["score_scale"] == pytest.approx(1 / 0.2)
    assert manifest["prior_weight"] == pytest.approx(model.prior_scale * model.prior_norm)
    assert manifest["similarity"] == "cosine"
    assert manifest["content"]["modalities"] == ["tags"]
    assert manifest["content"]["encoders"]["tags"]["min_tag_count"] == 2
    metrics = json.loads((runs["clrec"] / "metrics.json").read_text())
    assert manifest["metrics"] == metrics["test"]
    assert (
        "model/model.json" in manifest["files"] and "model/prior/weights.npy" in manifest["files"]
    )
    assert set(manifest["files"]) >= {
        "user_vectors.npy",
        "item_vectors.npy",
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
    assert plain.manifest["score_scale"] == 1.0 and plain.manifest["prior_weight"] == 0.0
    assert plain.manifest["similarity"] == "dot" and plain.content_modalities == []


def test_prior_reads_its_own_recency_weighted_history(exported: dict[str, Path]) -> None:
    art = load_artifact(exported["clrec"])
    assert art.prior_weight > 0
    prior = art._prior_model()
    assert prior.seen is not None
    assert not np.allclose(prior.seen.data, 1.0)  # recency weights, not the binary history
    assert prior.seen.nnz < art.seen.nnz  # train only, unlike the artifact's seen


def test_score_vector_and_user_from_items(runs: dict[str, Path], exported: dict[str, Path]) -> None:
    items = np.array([1, 4, 9])
    clrec_art = load_artifact(exported["clrec"])
    model = load_model(runs["clrec"] / "model")
    assert isinstance(model, ClrecRecommender)
    vector = clrec_art.user_from_items(items)
    np.testing.assert_allclose(vector, model.user_from_items(items), rtol=1e-6, atol=1e-6)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(
        clrec_art.score_vector(vector), model.score_vectors(vector[None])[0], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        clrec_art.score_vector(vector, np.array([2, 8])),
        clrec_art.item_vectors[[2, 8]] @ vector,
        rtol=1e-6,
    )
    for name in ("bpr", "clrec-plain"):  # dot-product models: the plain mean
        art = load_artifact(exported[name])
        np.testing.assert_allclose(
            art.user_from_items(items), art.item_vectors[items].mean(axis=0), rtol=1e-6
        )
    with pytest.raises(ClrecError, match="at least one item"):
        clrec_art.user_from_items([])
    with pytest.raises(ClrecError, match="outside"):
        clrec_art.score(N_USERS)
    with pytest.raises(ClrecError, match="outside"):
        clrec_art.score(0, np.array([0, N_ITEMS]))
    with pytest.raises(ClrecError, match="shape"):
        clrec_art.score_vector(np.zeros(3))


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
    vectors = art.embed_items([_row(art, int(i)) for i in cold])
    np.testing.assert_allclose(vectors, art.item_vectors[cold], rtol=1e-5, atol=1e-6)
    # a tag the model never learnt (too rare in the catalogue) is ignored, and does not shift
    # the columns of the tags it knows, although it passes the count with the new row
    rare = _row(art, int(cold[0]))
    rare["genres"] += f"|{RARE_GENRE}"
    np.testing.assert_allclose(
        art.embed_items([rare])[0], art.item_vectors[cold[0]], rtol=1e-5, atol=1e-6
    )
    # missing fields are missing tags: studio alone is still content
    alone = art.embed_items([{"studio": "North"}, {"genres": "Drama", "studio": None}])
    assert alone.shape == (2, 8) and np.isfinite(alone).all()
    model = art._clrec_model()
    assert art.embed_items([{"studio": "North"}]).shape == (1, 8)
    assert art._clrec_model() is model  # loaded once
    assert model.prior is None and art._prior is not None  # one copy of the prior, kept
    assert art.embed_items([]).shape == (0, 8)


def test_embed_items_refusals(exported: dict[str, Path]) -> None:
    art = load_artifact(exported["clrec"])
    with pytest.raises(ClrecError, match="no content the model can read"):
        art.embed_items([{"genres": "Unknownia"}])
    with pytest.raises(ClrecError, match="unknown field"):
        art.embed_items([{"titel": "Typo (1990)"}])
    for name in ("bpr", "clrec-plain"):
        with pytest.raises(ClrecError, match="reads no content; a new item cannot be embedded"):
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

    monkeypatch.setattr(artifact_module.sp, "save_npz", crash)
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


def test_truncated_vector_file(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    path = root / "item_vectors.npy"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ClrecError, match=r"item_vectors\.npy: corrupt or changed"):
        load_artifact(root)
    with pytest.raises(ClrecError, match=r"item_vectors\.npy: unreadable"):
        load_artifact(root, verify=False)


def test_shape_mismatches(exported: dict[str, Path], tmp_path: Path) -> None:
    root = _copy(exported["bpr"], tmp_path)
    manifest = json.loads((root / "artifact.json").read_text())
    np.save(root / "user_vectors.npy", np.zeros((N_USERS, 3), dtype=np.float32))
    files = {
        **manifest["files"],
        "user_vectors.npy": artifact_module._sha256(root / "user_vectors.npy"),
    }
    _rewrite_manifest(root, files=files)
    with pytest.raises(ClrecError, match=r"user_vectors\.npy: holds float32 \(60, 3\)"):
        load_artifact(root)
    shutil.copyfile(exported["bpr"] / "user_vectors.npy", root / "user_vectors.npy")
    sp.save_npz(root / "seen.npz", sp.csr_matrix((N_USERS, N_ITEMS + 1), dtype=np.float32))
    files = {**manifest["files"], "seen.npz": artifact_module._sha256(root / "seen.npz")}
    _rewrite_manifest(root, files=files)
    with pytest.raises(ClrecError, match=r"seen\.npz: shape"):
        load_artifact(root)
    _rewrite_manifest(root, files=manifest["files"], n_items=N_ITEMS + 1)
    with pytest.raises(ClrecError, match=r"item_vectors\.npy: holds"):
        load_artifact(root, verify=False)


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
