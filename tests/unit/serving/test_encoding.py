"""The encoder's bounded queue (clrec.serving.encoding): with ``max_waiting`` callers inside,
the next is refused at once; when they finish, callers are served again; profile texts come
from the cache without the encoder."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import numpy as np
import pytest

from clrec.serving.artifact import Artifact
from clrec.serving.encoding import OverloadedError, QueuedEncoder


class SlowArtifact:
    """Stands in for an artifact whose encoder blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def embed_items(self, rows: list[dict[str, Any]]) -> np.ndarray:
        self.calls += 1
        self.release.wait(timeout=10)
        return np.full((len(rows), 2), float(len(str(rows[0]))), dtype=np.float32)


def test_the_queue_is_bounded_and_drains() -> None:
    slow = SlowArtifact()
    encoder = QueuedEncoder(cast(Artifact, slow), max_waiting=2)
    results: list[np.ndarray] = []
    waiting = [
        threading.Thread(target=lambda: results.append(encoder.embed_row({"title": "a"})))
        for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 5
    while encoder._waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(OverloadedError, match="2 requests are waiting"):
        encoder.embed_row({"title": "b"})
    assert time.monotonic() - started < 0.5  # refused at once, not after the queue
    slow.release.set()
    for thread in waiting:
        thread.join(timeout=10)
    assert len(results) == 2 and encoder._waiting == 0
    encoder.embed_row({"title": "c"})  # served again


def test_profile_texts_are_cached() -> None:
    slow = SlowArtifact()
    slow.release.set()
    encoder = QueuedEncoder(cast(Artifact, slow), cache_size=2)
    first = encoder.embed_profile("title", "one")
    assert slow.calls == 1
    np.testing.assert_array_equal(encoder.embed_profile("title", "one"), first)
    assert slow.calls == 1  # from the cache
    encoder.embed_profile("title", "two")
    encoder.embed_profile("title", "three")  # evicts "one", the least recently used
    encoder.embed_profile("title", "one")
    assert slow.calls == 4
