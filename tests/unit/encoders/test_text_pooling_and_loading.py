"""Text encoder on a tiny random BERT: pooling maths, batching order, loading, privacy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from clrec.encoders.text import (
    TextEncoder,
    TextEncoderConfig,
    length_sorted_batches,
    pad_batch,
    pool_numpy,
    pool_torch,
    resolve_model,
    text_identity,
)
from clrec.errors import ClrecError
from tiny_bert import make_tiny_bert

TEXTS = [
    "the film",
    "a love story of war and music in the city at night",
    "space",
    "a comedy",
    "the king and the queen of the world",
    "robot dog",
    "a story",
]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random BERT of :mod:`tiny_bert`, saved once for this module."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# --------------------------------------------------------------------------- maths


def test_mean_pooling_and_normalisation_match_a_hand_computation() -> None:
    hidden = np.array(
        [
            [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],  # third token is padding
            [[0.0, 3.0], [0.0, 1.0], [0.0, 2.0]],
        ],
        dtype=np.float32,
    )  # (B=2, L=3, H=2)
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    # Hand: mean of unmasked tokens, then divide by its Euclidean norm.
    first = np.array([2.0, 3.0]) / np.sqrt(13.0)
    second = np.array([0.0, 1.0])
    got = pool_numpy(hidden, mask, "mean", normalize=True)
    np.testing.assert_allclose(got, [first, second], rtol=1e-6)
    np.testing.assert_allclose(pool_numpy(hidden, mask, "mean", normalize=False)[0], [2.0, 3.0])
    torch_got = pool_torch(torch.from_numpy(hidden), torch.from_numpy(mask), "mean", True)
    np.testing.assert_allclose(torch_got.numpy(), got, rtol=1e-6)


def test_cls_pooling_takes_the_first_token() -> None:
    hidden = np.arange(12, dtype=np.float32).reshape(2, 3, 2)  # (B, L, H)
    mask = np.ones((2, 3), dtype=np.int64)
    np.testing.assert_allclose(pool_numpy(hidden, mask, "cls", False), [[0, 1], [6, 7]])
    normed = pool_numpy(hidden, mask, "cls", True)
    np.testing.assert_allclose(normed[1], np.array([6, 7]) / np.hypot(6, 7), rtol=1e-6)
    torch_got = pool_torch(torch.from_numpy(hidden), torch.from_numpy(mask), "cls", True)
    np.testing.assert_allclose(torch_got.numpy(), normed, rtol=1e-6)


def test_length_sorted_batches_cover_every_position_once_longest_first() -> None:
    lengths = [3, 9, 1, 9, 4, 7, 2]
    batches = length_sorted_batches(lengths, batch_size=3)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    assert order[:2].tolist() == [1, 3]  # stable among equal lengths
    # Writing each batch's results to its positions restores input order.
    restored = np.empty(len(lengths), dtype=np.int64)
    for batch in batches:
        restored[batch] = np.asarray(lengths)[batch] * 10
    assert restored.tolist() == [v * 10 for v in lengths]


def test_pad_batch_right_pads_to_the_longest() -> None:
    encoded = {"input_ids": [[5, 6], [7, 8, 9], [1]], "attention_mask": [[1, 1], [1, 1, 1], [1]]}
    batch = pad_batch(encoded, np.array([2, 0]), pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 0], [5, 6]]
    assert batch["attention_mask"].tolist() == [[1, 0], [1, 1]]


# --------------------------------------------------------------------------- encoder


def _config(model: Path, **overrides: object) -> TextEncoderConfig:
    base = TextEncoderConfig(model=str(model), threads=1, progress=False, batch_size=3)
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_encoder_output_shape_norm_and_order(tiny_bert_dir: Path) -> None:
    encoder = TextEncoder(_config(tiny_bert_dir))
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Each text alone (no padding, no sorting) gives the same vector: order is restored and
    # padding does not leak into the mean.
    alone = np.stack([encoder.encode([text])[0] for text in TEXTS])
    np.testing.assert_allclose(vectors, alone, atol=1e-5)
    assert encoder.calls == 2 * len(TEXTS)
    assert encoder.encode([]).shape == (0, 32)


def test_encoder_matches_transformers_with_hand_pooling(tiny_bert_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    model = AutoModel.from_pretrained(str(tiny_bert_dir)).eval()
    batch = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, L, H)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1)
    expected = expected / expected.norm(dim=1, keepdim=True)
    got = TextEncoder(_config(tiny_bert_dir)).encode(TEXTS[:3])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    raw = TextEncoder(_config(tiny_bert_dir, pooling="cls", normalize=False)).encode(TEXTS[:3])
    np.testing.assert_allclose(raw, hidden[:, 0].numpy(), atol=1e-5)


def test_truncation_to_max_length(tiny_bert_dir: Path) -> None:
    long_text = " ".join(["love war music"] * 40)
    short = TextEncoder(_config(tiny_bert_dir, max_length=8))
    prefix = "love war music love war music"  # 6 words + [CLS] + [SEP] = 8 tokens
    np.testing.assert_allclose(short.encode([long_text]), short.encode([prefix]), atol=1e-5)


def test_personal_data_is_masked_before_encoding(tiny_bert_dir: Path) -> None:
    from clrec.encoders.privacy import PrivacyMasker

    encoder = TextEncoder(_config(tiny_bert_dir))
    raw = "contact me at jane.doe@example.com"
    masked = PrivacyMasker().mask(raw)
    assert "jane" not in masked
    np.testing.assert_allclose(encoder.encode([raw]), encoder.encode([masked]), atol=1e-6)


def test_mask_is_called_for_every_text(
    tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    class Spy:
        def __init__(self, extra_patterns: tuple[str, ...] = (), enabled: bool = True) -> None:
            pass

        def mask(self, text: str) -> str:
            seen.append(text)
            return "the film"

    import clrec.encoders.privacy as privacy

    monkeypatch.setattr(privacy, "PrivacyMasker", Spy)
    encoder = TextEncoder(_config(tiny_bert_dir))
    vectors = encoder.encode(["secret one", "secret two"])
    assert seen == ["secret one", "secret two"]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_identity_names_model_and_output_settings(tiny_bert_dir: Path) -> None:
    base = _config(tiny_bert_dir)
    identity = text_identity(base)
    assert tiny_bert_dir.name in identity and resolve_model(str(tiny_bert_dir)).digest in identity
    assert text_identity(replace(base, batch_size=50, threads=2)) == identity
    for change in ({"max_length": 64}, {"pooling": "cls"}, {"normalize": False}):
        assert text_identity(replace(base, **change)) != identity  # type: ignore[arg-type]
    assert text_identity(replace(base, backend="onnx-int8")) != identity


def test_bad_model_paths_raise_clrec_error(tmp_path: Path) -> None:
    with pytest.raises(ClrecError, match="no such directory"):
        TextEncoder(TextEncoderConfig(model=str(tmp_path / "missing")))
    with pytest.raises(ClrecError, match=r"config\.json"):
        TextEncoder(TextEncoderConfig(model=str(tmp_path)))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ClrecError):
        TextEncoder(TextEncoderConfig(model=str(broken), progress=False)).encode(["x"])
    # A hub name is never downloaded.
    with pytest.raises(ClrecError, match="never downloaded"):
        TextEncoder(TextEncoderConfig(model="bert-base-uncased"))


@pytest.mark.parametrize(
    "settings",
    [{"pooling": "max"}, {"backend": "tf"}, {"max_length": 1}, {"batch_size": 0}, {"threads": 0}],
)
def test_bad_settings_raise(settings: dict[str, object]) -> None:
    with pytest.raises(ClrecError):
        TextEncoderConfig(**settings)  # type: ignore[arg-type]


def test_sentence_transformers_folder_with_module_subfolder(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    root = tmp_path / "st-model"
    shutil.copytree(tiny_bert_dir, root / "0_Transformer")
    (root / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "0_Transformer",
                    "type": "sentence_transformers.models.Transformer",
                }
            ]
        )
    )
    files = resolve_model(str(root))
    assert files.directory == (root / "0_Transformer").resolve()
    got = TextEncoder(_config(root)).encode(TEXTS[:2])
    np.testing.assert_allclose(
        got, TextEncoder(_config(tiny_bert_dir)).encode(TEXTS[:2]), atol=1e-6
    )


def test_max_length_beyond_the_model_raises(tiny_bert_dir: Path) -> None:
    encoder = TextEncoder(_config(tiny_bert_dir, max_length=4096))
    with pytest.raises(ClrecError, match="exceeds"):
        encoder.encode(["the film"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_raises(tiny_bert_dir: Path) -> None:
    with pytest.raises(ClrecError, match="CUDA"):
        TextEncoder(_config(tiny_bert_dir, device="cuda")).encode(["the film"])
    with pytest.raises(ClrecError, match="device"):
        TextEncoder(_config(tiny_bert_dir, device="toaster")).encode(["the film"])
