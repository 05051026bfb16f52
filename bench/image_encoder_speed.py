"""Images per second of the EfficientNet-Lite0 image encoder: torch vs ONNX Runtime.

Encodes the first ``--images`` ML-1M posters (read straight from ``ml1m_posters.tar``) with
each backend, no cache, and reports:

* end-to-end images/s of :func:`encode_images` (tar read + JPEG decode + preprocessing + model);
* model-only images/s (the network on already preprocessed batches);
* one-off costs: model load, and the ONNX export (first run only; later runs reuse the file);
* agreement of the two backends' vectors (mean / min cosine).

Usage: ``python bench/image_encoder_speed.py [--images 320] [--threads 2] [--batch-size 32]``
(``--data`` overrides the data root; the default is ``$CLREC_DATA`` or ``../shared/data``).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name

from clrec.data.registry import default_data_root
from clrec.encoders.image import ImageEncoder, ImageEncoderConfig, encode_images


def poster_refs(root: Path, count: int) -> list[str | None]:
    archive = root / "ml-1m-content" / "ml1m_posters.tar"
    with tarfile.open(archive) as tar:
        members = [m.name for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
    return [f"{archive.absolute()}#{name}" for name in members[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    root = args.data or default_data_root(os.environ.get("CLREC_DATA"))
    if root is None:
        raise SystemExit("data root not found: pass --data or set CLREC_DATA")
    refs = poster_refs(Path(root), args.images)
    load_before = os.getloadavg()[0]
    rows = []
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as onnx_dir:
        for backend in ("torch", "onnx"):
            config = ImageEncoderConfig(
                backend=backend,  # type: ignore[arg-type]
                batch_size=args.batch_size,
                threads=args.threads,
                onnx_dir=onnx_dir,
                progress=False,
            )
            start = time.perf_counter()
            encoder = ImageEncoder(config)  # onnx: exports the graph into a fresh folder
            setup = time.perf_counter() - start
            # Warm-up batch: first-call allocations are not part of the steady rate.
            encode_images(refs[: args.batch_size], config, encoder=encoder)

            start = time.perf_counter()
            vectors[backend], summary = encode_images(refs, config, encoder=encoder)
            total = time.perf_counter() - start

            size = encoder.spec.image_size
            batch = np.random.default_rng(0).standard_normal(
                (args.batch_size, 3, size, size), dtype=np.float32
            )
            batches = max(1, args.images // args.batch_size // 2)
            start = time.perf_counter()
            for _ in range(batches):
                encoder.features(batch)
            model_rate = batches * args.batch_size / (time.perf_counter() - start)
            rows.append(
                (backend, summary.encoded, total, summary.encoded / total, model_rate, setup)
            )

    torch_vectors, onnx_vectors = vectors["torch"], vectors["onnx"]
    both = np.isfinite(torch_vectors).all(axis=1) & np.isfinite(onnx_vectors).all(axis=1)
    cosine = (torch_vectors[both] * onnx_vectors[both]).sum(axis=1)

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, {args.threads} threads; "
        f"torch {torch.__version__}, onnxruntime {_ort_version()}; batch {args.batch_size}; "
        f"load average at start {load_before:.1f}\n"
    )
    print(
        "| backend | posters | seconds | images/s end-to-end | images/s model only "
        "| setup s (load; onnx: + export) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for backend, count, total, rate, model_rate, setup in rows:
        print(
            f"| {backend} | {count} | {total:.1f} | {rate:.1f} | {model_rate:.1f} | {setup:.1f} |"
        )
    speedup = rows[1][3] / rows[0][3]
    print(
        f"\nONNX Runtime / torch end-to-end: {speedup:.1f}×; agreement over {int(both.sum())} "
        f"posters: mean cosine {cosine.mean():.6f}, min {cosine.min():.6f}"
    )


def _ort_version() -> str:
    import onnxruntime  # type: ignore[import-untyped]

    return str(onnxruntime.__version__)


if __name__ == "__main__":
    main()
