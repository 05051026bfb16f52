"""Image input: references → bytes (files and tar members) → model-ready pixels.

**Image references** are plain file paths or ``"<path to .tar>#<member>"`` (a member read
straight from an uncompressed or compressed tar without extracting it; ML-1M posters use
this). A ``#`` only splits a reference when the part before the last ``#`` names a ``.tar``,
``.tar.gz`` or ``.tgz`` file.

Preprocessing uses Pillow and numpy only (no torchvision, see ``STACK.md``): RGB conversion,
the EfficientNet evaluation crop, scaling to [-1, 1] with mean = std = 0.5.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from clrec.encoders.image_model import missing_dependency

if TYPE_CHECKING:
    from PIL import Image as PILImage

ResizeMode = Literal["center_crop", "squash"]

# Bump when preprocessing changes what a given image maps to, so cached vectors are refused.
PREPROCESS_VERSION = 1
# EfficientNet's evaluation crop: the central 224/256 of the shorter side, then resized.
CROP_FRACTION = 224 / 256
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Any Pillow mode → RGB; transparent areas become white (product shots, logos)."""
    from PIL import Image

    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit greyscale: rescale 0..65535 to 0..255 instead of clipping above 255.
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        if values.max(initial=0.0) > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def require_pillow() -> None:
    """Fail once, clearly, rather than counting every image as undecodable."""
    try:
        import PIL  # noqa: F401
    except ImportError as error:
        raise missing_dependency("Pillow", error) from error


def preprocess_image(
    data: bytes,
    *,
    image_size: int = 224,
    resize: ResizeMode = "center_crop",
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """Encoded image bytes → ``(3, image_size, image_size)`` float32 model input.

    ``center_crop`` takes the central ``CROP_FRACTION`` square of the shorter side (the
    EfficientNet evaluation protocol); ``squash`` resizes the whole image, ignoring aspect.
    Raises whatever Pillow raises on corrupt or truncated data; callers count those.
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        # JPEG only: let the decoder downscale by 1/2, 1/4, 1/8 when the image is far larger.
        opened.draft("RGB", (image_size, image_size))
        image = ImageOps.exif_transpose(opened)
        image.load()
    image = _to_rgb(image)
    width, height = image.size
    if resize == "center_crop":
        side = min(width, height) * CROP_FRACTION
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
    else:
        box = (0.0, 0.0, float(width), float(height))
    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC, box=box)
    unit = np.asarray(image, dtype=np.float32) / np.float32(255.0)  # (S, S, 3) in [0, 1]
    scaled = (unit - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)  # (3, S, S)


class MissingImageError(Exception):
    """The reference names nothing (no file, no tar member)."""


def split_ref(ref: str) -> tuple[Path, str | None]:
    """``"a.tar#images/1.jpg"`` → (tar path, member); a plain path → (path, None)."""
    head, sep, member = ref.rpartition("#")
    if sep and member and head.lower().endswith(_TAR_SUFFIXES):
        return Path(head), member
    return Path(ref), None


class RefReader:
    """Reads image bytes by reference, keeping each tar open until :meth:`close`."""

    def __init__(self) -> None:
        self._tars: dict[Path, tarfile.TarFile] = {}

    def read(self, ref: str) -> bytes:
        path, member = split_ref(ref)
        if member is None:
            if not path.is_file():
                raise MissingImageError(f"no file {path}")
            return path.read_bytes()
        archive = self._tars.get(path)
        if archive is None:
            if not path.is_file():
                raise MissingImageError(f"no tar file {path}")
            # Kept open across reads (a batch, a whole call) and closed in close().
            archive = self._tars[path] = tarfile.open(path)  # noqa: SIM115
        try:
            info = archive.getmember(member)
        except KeyError as error:
            raise MissingImageError(f"no member {member!r} in {path}") from error
        handle = archive.extractfile(info)
        if handle is None:
            raise MissingImageError(f"{member!r} in {path} is not a regular file")
        with handle:
            return handle.read()

    def close(self) -> None:
        for archive in self._tars.values():
            archive.close()
        self._tars.clear()
