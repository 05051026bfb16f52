"""The service's content encoder behind a bounded queue: items written through the API and
cold-start profile texts.

Encoding a text runs the language model (milliseconds to tens of milliseconds on a CPU)
under one lock, as the encoders are not thread-safe. Without a bound, a burst of profile
texts piles up behind that lock and every waiting request's latency grows with the queue
(p50 4.5 s in the issue-20 load test). Here at most ``max_waiting`` callers wait; the next
one is answered at once with :class:`OverloadedError` (503 with ``Retry-After``), so latency
stays bounded and the client knows to come back. Profile texts repeat (a landing page's few
prompts), so their vectors are kept in a small LRU cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

from clrec.errors import ClrecError
from clrec.serving.artifact import Artifact

_Result = TypeVar("_Result")

RETRY_AFTER_S = 1
"""Seconds a client is asked to wait after an :class:`OverloadedError`."""


class OverloadedError(ClrecError):
    """Too many requests wait for the encoder (the service answers 503 + Retry-After)."""


class QueuedEncoder:
    """:meth:`Artifact.embed_items` for one row at a time, serialised, with at most
    ``max_waiting`` callers waiting and an LRU cache of ``cache_size`` profile texts."""

    def __init__(self, artifact: Artifact, max_waiting: int = 8, cache_size: int = 1024) -> None:
        self.artifact = artifact
        self.max_waiting = max_waiting
        self.cache_size = cache_size
        self._lock = threading.Lock()  # the encoders
        self._gate = threading.Lock()  # the waiting count and the cache
        self._waiting = 0
        self._profiles: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed_row(self, content: Mapping[str, str | None]) -> np.ndarray:
        """One item's history-space vector ``(D,)`` from its fields; OverloadedError when
        ``max_waiting`` callers already wait."""
        vector: np.ndarray = self._queued(lambda: self.artifact.embed_items([dict(content)]))[0]
        return vector

    def features(self, content: Mapping[str, str | None]) -> dict[str, np.ndarray]:
        """One item's content matrices ``{modality: (1, d_m)}`` (what the model's fusion
        reads), through the same queue."""
        return self._queued(lambda: self.artifact.featurize([dict(content)]))

    def _queued(self, work: Callable[[], _Result]) -> _Result:
        """``work()`` with the encoders to itself; OverloadedError when ``max_waiting``
        callers already wait."""
        with self._gate:
            if self._waiting >= self.max_waiting:
                raise OverloadedError(
                    f"{self._waiting} requests are waiting for the text encoder; retry in "
                    f"{RETRY_AFTER_S} s"
                )
            self._waiting += 1
        try:
            with self._lock:
                return work()
        finally:
            with self._gate:
                self._waiting -= 1

    def embed_profile(self, field: str, text: str) -> np.ndarray:
        """A profile text read as the item field ``field``: from the cache, or encoded."""
        with self._gate:
            cached = self._profiles.get(text)
            if cached is not None:
                self._profiles.move_to_end(text)
                return cached
        vector = self.embed_row({field: text})
        with self._gate:
            self._profiles[text] = vector
            while len(self._profiles) > self.cache_size:
                self._profiles.popitem(last=False)
        return vector

    def item(self, content: Mapping[str, str | None]) -> np.ndarray:
        """One item's history-space vector ``(D,)`` from its fields, through the model; a
        model that reads no content is a clear error."""
        if not self.artifact.content_modalities:
            raise ClrecError(
                f"this {self.artifact.model_name!r} model reads no content, so items cannot "
                "be added or changed through the API; retrain with a content model (clrec "
                "with content modalities) to serve new items"
            )
        return self.embed_row(content)

    def profile(self, text: str) -> np.ndarray:
        """A profile text's history-space vector ``(D,)``: read as the catalogue's first
        text field."""
        if not self.artifact.content_modalities:
            raise ClrecError(
                f"this {self.artifact.model_name!r} model reads no content, so a profile_text "
                "cannot be used; send the items the user liked instead"
            )
        fields = self.artifact.item_fields
        text_fields = [name for name, kind in fields.items() if kind == "text"]
        if not text_fields:
            raise ClrecError(
                "the catalogue has no text field to read a profile_text as; send items instead"
            )
        try:
            return self.embed_profile(text_fields[0], text)
        except OverloadedError:
            raise
        except ClrecError as error:
            raise ClrecError(
                f"the profile_text gives no content this model can read ({error}); send "
                "items instead or describe the user in the catalogue's terms"
            ) from None


__all__ = ["RETRY_AFTER_S", "OverloadedError", "QueuedEncoder"]
