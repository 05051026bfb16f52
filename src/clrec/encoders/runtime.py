"""Runtime settings the text and image encoders share: torch threads and the ONNX folder.

Both encoders scope torch's (process-wide) thread count to their own work and keep their
exported ONNX graphs in one cache folder; these two helpers say how, in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for a block and restore them (the setting is global)."""
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_onnx_dir() -> Path:
    """Where exported ONNX graphs live unless an encoder's ``onnx_dir`` says otherwise."""
    return Path.home() / ".cache" / "clrec" / "onnx"
