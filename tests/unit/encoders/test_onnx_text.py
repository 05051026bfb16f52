"""ONNX int8 fast path on the tiny BERT: agreement with fp32, export reuse, batching order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clrec.encoders.text import TextEncoder, TextEncoderConfig
from tiny_bert import make_tiny_bert

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = [
    "the film",
    "a love story of war and music in the city at night",
    "space robot",
    "a comedy of the family and the dog",
    "the king and the queen of the world",
    "crime thriller",
    "a horror movie at night in the city with a man and a woman",
    "animation for children",
]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random BERT of :mod:`tiny_bert`, saved once for this module."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


def test_int8_agrees_with_fp32_and_export_is_reused(tiny_bert_dir: Path, onnx_dir: Path) -> None:
    from clrec.encoders.onnx_text import agreement, row_cosines

    fp32 = TextEncoderConfig(model=str(tiny_bert_dir), threads=1, progress=False, batch_size=3)
    int8 = replace(fp32, backend="onnx-int8", onnx_dir=str(onnx_dir))
    reference = TextEncoder(fp32).encode(TEXTS)
    fast_encoder = TextEncoder(int8)
    fast = fast_encoder.encode(TEXTS)
    assert fast.shape == reference.shape and fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, rtol=1e-5)
    mean, worst = agreement(fast, reference)
    assert mean >= 0.99 and worst >= 0.99, (mean, worst)
    # Far closer than two different texts are: the rows are the same texts, in order.
    assert worst > (reference @ reference.T)[~np.eye(len(TEXTS), dtype=bool)].max()
    np.testing.assert_allclose(row_cosines(reference, reference), 1.0, rtol=1e-6)

    exported = sorted(onnx_dir.glob("*.onnx"))
    assert len(exported) == 1 and "int8" in exported[0].name
    stamp = exported[0].stat().st_mtime_ns
    again = TextEncoder(int8).encode(TEXTS[:3])  # loads the file, no new export
    assert exported[0].stat().st_mtime_ns == stamp
    assert sorted(onnx_dir.glob("*.onnx")) == exported
    assert not [p for p in onnx_dir.iterdir() if p.name.startswith(".export-")]
    # Activations are quantised per batch, so another batch moves values slightly.
    np.testing.assert_allclose(again, fast[:3], atol=2e-3)


def test_int8_batches_restore_order(tiny_bert_dir: Path, onnx_dir: Path) -> None:
    config = TextEncoderConfig(
        model=str(tiny_bert_dir),
        threads=1,
        progress=False,
        batch_size=2,
        backend="onnx-int8",
        onnx_dir=str(onnx_dir),
    )
    encoder = TextEncoder(config)
    together = encoder.encode(TEXTS)
    alone = np.stack([encoder.encode([text])[0] for text in TEXTS])
    # Dynamic int8 quantises activations per batch, so padding partners move values a little.
    cosines = (together * alone).sum(axis=1)
    assert cosines.min() > 0.99
