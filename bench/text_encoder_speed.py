"""Text encoder throughput and agreement on real ML-1M item texts.

Methods, all on the same texts and the same CPU threads:

* ``plain``: ``SentenceTransformer(path).encode(texts)`` with default settings — what a user
  would write (batch 32, the model's max_seq_length of 256 tokens).
* ``fp32``: our torch path (:class:`clrec.encoders.text.TextEncoder`, max_length 128,
  batch 64, length-sorted batches).
* ``onnx-int8``: our fast path (ONNX Runtime, fused graph, per-channel int8 weights).
* with ``--equal-length``: also fp32 and onnx-int8 at the plain path's 256 tokens, so the
  speed-up from truncation and the one from int8 can be told apart.

Texts are what ``clrec encode ml-1m`` encodes: the default ML-1M template
``{title} | {genres} | {abstract}`` (DBpedia abstracts where present). The methods run
interleaved over ``--rounds`` slices of the texts, so load from other processes falls on
all of them alike. Model loading and the one-off ONNX export are timed apart. Agreement is
the cosine of each text's vector with the fp32 path's (mean and min over texts).

Usage: ``python bench/text_encoder_speed.py [--items N] [--threads 2] [--rounds 4]``;
prints a Markdown table and the machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
import torch

from clrec.data.registry import default_data_root, load
from clrec.encoders.onnx_text import agreement
from clrec.encoders.text import TextEncoder, TextEncoderConfig, default_template, resolve_model


@dataclass
class Method:
    """One way of encoding: a name, its truncation, and texts → (n, d) vectors."""

    name: str
    max_length: int
    encode: Callable[[list[str]], np.ndarray]
    setup_seconds: float
    seconds: float = 0.0
    parts: list[np.ndarray] = field(default_factory=list)


def ml1m_texts(n_items: int | None, seed: int) -> list[str]:
    """The ML-1M item texts (default template), a seeded subset when ``n_items`` is set."""
    dataset = load("ml-1m", default_data_root())
    rendered = default_template(dataset).render_table(dataset.items, dataset.item_fields)
    texts = [t for t in rendered if t is not None]
    if n_items is not None and n_items < len(texts):
        chosen = np.random.default_rng(seed).choice(len(texts), n_items, replace=False)
        texts = [texts[i] for i in chosen]
    return texts


def plain_method(threads: int) -> Method:
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    model = SentenceTransformer(str(resolve_model("minilm").directory), device="cpu")
    model.encode(["warm up"])

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts), dtype=np.float32)

    return Method(
        "plain SentenceTransformer.encode",
        int(model.max_seq_length),
        encode,
        time.perf_counter() - start,
    )


def our_method(name: str, config: TextEncoderConfig) -> Method:
    start = time.perf_counter()
    encoder = TextEncoder(config)
    encoder.encode(["warm up"])  # loads the model (and exports / quantises for onnx-int8)
    return Method(name, config.max_length, encoder.encode, time.perf_counter() - start)


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("torch", "transformers", "sentence-transformers", "onnxruntime")
    )
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {threads} threads used; Python "
        f"{platform.python_version()}; {versions}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="texts to encode (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved slices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--equal-length",
        action="store_true",
        help="also run our paths at the plain path's 256 tokens",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clrec-bench-onnx-") as onnx_dir:
        run(args, onnx_dir)


def run(args: argparse.Namespace, onnx_dir: str) -> None:
    """Encode, time and compare; ``onnx_dir`` receives the exported int8 model."""
    torch.set_num_threads(args.threads)
    texts = ml1m_texts(args.items or None, args.seed)
    load_before = os.getloadavg()
    base = TextEncoderConfig(threads=args.threads, progress=False, onnx_dir=onnx_dir)
    methods = [
        plain_method(args.threads),
        our_method("clrec fp32 (torch)", base),
        our_method(
            "clrec onnx-int8",
            TextEncoderConfig(
                threads=args.threads, progress=False, onnx_dir=onnx_dir, backend="onnx-int8"
            ),
        ),
    ]
    if args.equal_length:
        methods += [
            our_method(
                "clrec fp32 (torch), 256 tokens",
                TextEncoderConfig(threads=args.threads, progress=False, max_length=256),
            ),
            our_method(
                "clrec onnx-int8, 256 tokens",
                TextEncoderConfig(
                    threads=args.threads,
                    progress=False,
                    max_length=256,
                    onnx_dir=onnx_dir,
                    backend="onnx-int8",
                ),
            ),
        ]

    bounds = np.linspace(0, len(texts), args.rounds + 1).astype(int)
    for round_, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = texts[lo:hi]
        # Rotate the order each round so no method always runs first.
        for offset in range(len(methods)):
            method = methods[(round_ + offset) % len(methods)]
            start = time.perf_counter()
            method.parts.append(method.encode(part))
            method.seconds += time.perf_counter() - start

    vectors = {m.name: np.concatenate(m.parts) for m in methods}
    reference = vectors["clrec fp32 (torch)"]
    plain = methods[0]
    plain_speed = len(texts) / plain.seconds
    tokens = [len(t.split()) for t in texts]
    print(
        f"{len(texts):,} ML-1M item texts (title | genres | abstract; mean {np.mean(tokens):.0f} "
        f"words, max {max(tokens)}), {args.rounds} interleaved rounds\n"
    )
    # Agreement with our fp32 path at its default 128 tokens (the brief's reference), and
    # with an fp32 run at the method's own truncation (plain ST = fp32 at 256 tokens).
    same_length = {m.max_length: vectors[m.name] for m in methods if "fp32" in m.name}
    print(
        "| method | max tokens | items/s | vs plain | setup s "
        "| cos to fp32 (128): mean | min | cos to fp32 at same length: mean | min |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method in methods:
        speed = len(texts) / method.seconds
        mean, worst = agreement(vectors[method.name], reference)
        own = same_length.get(method.max_length)
        if own is not None:
            own_mean, own_worst = agreement(vectors[method.name], own)
            same = f"{own_mean:.4f} | {own_worst:.4f}"
        else:
            same = "— | —"
        print(
            f"| {method.name} | {method.max_length} | {speed:.1f} | {speed / plain_speed:.2f}× "
            f"| {method.setup_seconds:.1f} | {mean:.4f} | {worst:.4f} | {same} |"
        )
    load_after = os.getloadavg()
    print(f"\nmachine: {machine(args.threads)}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
