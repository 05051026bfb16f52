"""Encoding a whole data set: cache hits, partial re-encoding, skipped items, the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clrec.cli import app
from clrec.data.schema import Dataset
from clrec.encoders.modalities import (
    ImageModality,
    PrecomputedModality,
    TextModality,
    dataset_modalities,
    encode_dataset,
)
from clrec.encoders.text import TextEncoder, TextEncoderConfig, TextTemplate
from clrec.errors import ClrecError
from tiny_bert import make_tiny_bert

TITLES = ["Star War", "Love Story", None, "Space Robot", "Love Story", "Night City"]
GENRES = ["action|adventure", "romance|drama", None, "adventure", "romance|drama", None]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random BERT of :mod:`tiny_bert`, saved once for this module."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _dataset(titles: list[str | None] = TITLES) -> Dataset:
    n = len(titles)
    interactions = pd.DataFrame({"user": ["u1"] * n, "item": [str(i) for i in range(n)]})
    items = pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "title": titles,
            "genres": GENRES[:n],
            "poster": [None] * n,
        }
    )
    return Dataset.from_external(
        "tiny",
        interactions,
        item_content=items,
        item_fields={"title": "text", "genres": "tags", "poster": "image"},
        item_vectors={"given": ([str(i) for i in range(n)], np.eye(n, 3, dtype=np.float32))},
    )


@pytest.fixture
def text_modality(tiny_bert_dir: Path) -> TextModality:
    config = TextEncoderConfig(model=str(tiny_bert_dir), threads=1, progress=False)
    return TextModality("text", TextTemplate("{title} | {genres}"), config)


@pytest.fixture
def encoded_texts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the model is asked to encode, in order (spy on TextEncoder.encode)."""
    calls: list[str] = []
    original = TextEncoder.encode

    def spy(self: TextEncoder, texts: list[str], **kwargs: object) -> np.ndarray:
        calls.extend(texts)
        return original(self, texts, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TextEncoder, "encode", spy)
    return calls


def test_vectors_nan_rows_and_summary(text_modality: TextModality, tmp_path: Path) -> None:
    dataset = _dataset()
    vectors, summary = encode_dataset(dataset, [text_modality], tmp_path)
    matrix = vectors["text"]
    assert matrix.shape == (6, 32) and matrix.dtype == np.float32
    assert np.isnan(matrix[2]).all()  # item 2 has no text
    present = [0, 1, 3, 4, 5]
    assert np.isfinite(matrix[present]).all()
    np.testing.assert_allclose(np.linalg.norm(matrix[present], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(matrix[1], matrix[4])  # same text, same vector
    part = summary.modalities["text"]
    assert (part.items, part.encoded, part.cached, part.skipped, part.failed) == (6, 5, 0, 1, 0)
    assert part.dim == 32 and "5 encoded" in part.line()
    # The same result as encoding the rendered texts directly.
    direct = TextEncoder(text_modality.encoder).encode(["Star War | action, adventure"])
    np.testing.assert_allclose(matrix[0], direct[0], atol=1e-6)


def test_second_run_is_served_from_cache(
    text_modality: TextModality, tmp_path: Path, encoded_texts: list[str]
) -> None:
    dataset = _dataset()
    first, _ = encode_dataset(dataset, [text_modality], tmp_path)
    assert len(encoded_texts) == 4  # four distinct texts
    encoded_texts.clear()
    second, summary = encode_dataset(dataset, [text_modality], tmp_path)
    assert encoded_texts == []
    assert (summary.modalities["text"].encoded, summary.modalities["text"].cached) == (0, 5)
    np.testing.assert_array_equal(first["text"], second["text"])


def test_a_changed_text_re_encodes_only_that_item(
    text_modality: TextModality, tmp_path: Path, encoded_texts: list[str]
) -> None:
    encode_dataset(_dataset(), [text_modality], tmp_path)
    encoded_texts.clear()
    changed = list(TITLES)
    changed[3] = "Space Robot Returns"
    vectors, summary = encode_dataset(_dataset(changed), [text_modality], tmp_path)
    assert encoded_texts == ["Space Robot Returns | adventure"]
    assert (summary.modalities["text"].encoded, summary.modalities["text"].cached) == (1, 4)
    fresh, _ = encode_dataset(_dataset(changed), [text_modality], None)  # no cache at all
    np.testing.assert_allclose(vectors["text"], fresh["text"], atol=1e-6)


def test_other_settings_do_not_reuse_cached_vectors(
    text_modality: TextModality, tmp_path: Path, encoded_texts: list[str]
) -> None:
    encode_dataset(_dataset(), [text_modality], tmp_path)
    encoded_texts.clear()
    cls = replace(text_modality, encoder=replace(text_modality.encoder, pooling="cls"))
    encode_dataset(_dataset(), [cls], tmp_path)
    assert len(encoded_texts) == 4


def test_personal_data_never_reaches_model_or_cache(
    text_modality: TextModality, tmp_path: Path, encoded_texts: list[str]
) -> None:
    titles = ["Mail jane.doe@example.com for tickets", "Love Story", None, "a", "b", "c"]
    encode_dataset(_dataset(titles), [text_modality], tmp_path)
    assert not any("jane.doe" in text for text in encoded_texts)
    database = (tmp_path / "embeddings.sqlite3").read_bytes()
    assert b"jane.doe" not in database


def test_precomputed_modality_passes_through(tmp_path: Path) -> None:
    dataset = _dataset()
    vectors, summary = encode_dataset(dataset, [PrecomputedModality("given")], tmp_path)
    np.testing.assert_array_equal(vectors["given"], dataset.item_vectors["given"])
    assert summary.modalities["given"].precomputed == 6
    with pytest.raises(ClrecError, match="no precomputed 'image'"):
        encode_dataset(dataset, [PrecomputedModality("image")], tmp_path)


def test_duplicate_names_and_unknown_image_field(text_modality: TextModality) -> None:
    with pytest.raises(ClrecError, match="more than once"):
        encode_dataset(_dataset(), [text_modality, PrecomputedModality("text")], None)
    with pytest.raises(ClrecError, match="cover"):
        encode_dataset(_dataset(), [ImageModality("image", field="cover")], None)


def test_dataset_modalities_picks_what_the_data_set_offers() -> None:
    specs = dataset_modalities(_dataset(), "all", backend="onnx-int8", threads=2)
    assert [type(s).__name__ for s in specs] == [
        "TextModality",
        "ImageModality",
        "PrecomputedModality",
    ]
    text = specs[0]
    assert isinstance(text, TextModality) and text.encoder.backend == "onnx-int8"
    assert [s.name for s in dataset_modalities(_dataset(), "text")] == ["text"]
    with pytest.raises(ClrecError):
        dataset_modalities(_dataset(), "all", backend="tf")


def test_encode_command(tiny_bert_dir: Path, tmp_path: Path) -> None:
    folder = _dataset().save(tmp_path / "data")
    out = tmp_path / "encoded"
    args = ["encode", str(folder), "--modality", "text", "--cache", str(tmp_path / "cache")]
    args += ["--model", str(tiny_bert_dir), "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "5 encoded, 0 cached, 1 skipped" in result.output
    saved = Dataset.load(out)
    assert saved.item_vectors["text"].shape == (6, 32)
    assert "given" in saved.item_vectors  # precomputed vectors are kept
    again = CliRunner().invoke(app, args)
    assert "0 encoded, 5 cached, 1 skipped" in again.output


def test_encode_command_errors_are_one_line(tmp_path: Path) -> None:
    folder = _dataset().save(tmp_path / "data")
    result = CliRunner().invoke(
        app,
        ["encode", str(folder), "--cache", str(tmp_path / "c"), "--model", str(tmp_path / "no")],
    )
    assert result.exit_code == 1
    assert "no such directory" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(app, ["encode", str(folder), "--cache", "c", "--modality", "audio"])
    assert bad.exit_code == 1 and "--modality" in bad.output
