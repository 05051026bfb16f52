"""What a running service knows: the artifact, an item index, and the store replayed on top.

:meth:`ServiceState.load` loads the artifact (checksums verified), indexes its item vectors,
measures the index's recall@10 against exact search on a sample of user vectors
(:attr:`ServiceState.index_report`), then replays the store:

* items added or updated through the API enter the index with their *stored* vectors (no
  re-encoding at restart; only an item stored under another artifact, whose vector belongs to
  another model, is re-embedded from its stored fields);
* events extend each user's history. A user the artifact does not know but who has events
  is a *store-only* user, whose vector is the mean of their items' vectors
  (:meth:`clrec.serving.artifact.Artifact.user_from_items`).

Retrieval takes the top ``k`` candidates from the index (``k + rescore_margin`` for a known
user of a model whose score is more than the dot product: an EASE prior), seen and excluded
items filtered inside the search, and re-scores them exactly: known users with
:meth:`~clrec.serving.artifact.Artifact.score` (the model's own score, EASE prior included;
an item added through the API has no prior column and scores by its vector alone, as a cold
item does in the model), everyone else by the float32 dot product with their query vector.

Items are identified by external ids everywhere outside this module; internally an item is
its row in the index (artifact items first, in artifact order, then API items in the order
this process first saw them).

Thread-safe: one lock serialises searches and in-memory updates (the index allows no search
during an update) and is never held while the database or an encoder works, so searches on
the event loop never wait for either; a second lock serialises content encoding, a third one
writes of items (database, then memory) and a fourth one syncs. With several worker
processes each one holds its own state; :meth:`ServiceState.maybe_sync` pulls what the others
wrote to the shared database every ``sync_interval_s`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from clrec.errors import ClrecError
from clrec.serving.artifact import Artifact, load_artifact
from clrec.serving.index import VectorIndex
from clrec.serving.settings import ServiceSettings
from clrec.serving.store import Event, Store, StoredEvent, StoredItem, StoreError

if TYPE_CHECKING:
    from clrec.ranking.stage import RerankStage

logger = logging.getLogger("clrec.serving")

COLD_START_ROUTE = "POST /v1/recommendations"
_RECALL_K = 10
_RECALL_SEED = 0
INDEX_CACHE_DIR = "index-cache"
"""Folder of ``data_dir`` where built HNSW graphs are kept between restarts."""
_SYNC_BATCH = 10_000  # stored events applied per hold of the memory lock


class NotFoundError(ClrecError):
    """An unknown user or item (the service answers 404)."""


class Scored(NamedTuple):
    """One result: external item id, score, title (None when the catalogue has none). A
    named tuple: a response builds up to ``max_k`` of them, and a frozen dataclass costs
    several times more to create."""

    id: str
    score: float
    title: str | None


class HistoryEntry(NamedTuple):
    """One item of a user's history: external id, title, an image URL (or None) and where the
    interaction comes from (``"trained"``: the run's data set; ``"events"``: the API)."""

    id: str
    title: str | None
    image: str | None
    source: Literal["trained", "events"]


@dataclass(frozen=True)
class Placement:
    """Where an item lands for a user: its 1-based rank among the items the user would be
    recommended (seen items excluded), its score, and how many items compete."""

    user: str
    rank: int
    score: float
    candidates: int
    seen: bool


@dataclass(frozen=True)
class PutResult:
    """The outcome of :meth:`ServiceState.put_item`."""

    id: str
    created: bool
    title: str | None
    placement: Placement | None


@dataclass(frozen=True)
class QueryResult:
    """Results of an anonymous query and the given item ids the service does not know."""

    items: list[Scored]
    ignored: list[str]


class _Rows:
    """A growable float32 matrix ``(N, D)``: amortised O(1) appends, in-place updates."""

    def __init__(self, initial: np.ndarray) -> None:
        self._buf = np.array(initial, dtype=np.float32, copy=True, order="C")  # (cap, D)
        self._count = initial.shape[0]

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self._count]

    def append(self, vector: np.ndarray) -> None:
        if self._count == self._buf.shape[0]:
            grown = np.empty((max(16, 2 * self._count), self._buf.shape[1]), dtype=np.float32)
            grown[: self._count] = self._buf[: self._count]
            self._buf = grown
        self._buf[self._count] = vector
        self._count += 1

    def set(self, row: int, vector: np.ndarray) -> None:
        self._buf[row] = vector


def artifact_key(artifact: Artifact) -> str:
    """A stable identity of an artifact: the sha256 of its manifest's file digests."""
    files = json.dumps(artifact.manifest["files"], sort_keys=True).encode()
    return hashlib.sha256(files).hexdigest()


class ServiceState:
    """The artifact, its item index and the store's items and events, ready to answer."""

    def __init__(self, settings: ServiceSettings, artifact: Artifact, store: Store) -> None:
        """Index ``artifact``'s items; :meth:`load` also measures the index and replays the
        store (use it rather than this constructor)."""
        self.settings = settings
        self.artifact = artifact
        self.store = store
        self.artifact_key = artifact_key(artifact)
        self._lock = threading.RLock()  # memory: index, tables, histories
        self._embed_lock = threading.Lock()  # the content encoders
        self._write_lock = threading.Lock()  # item writes, so database and memory agree
        self._sync_lock = threading.Lock()  # reads of what other processes wrote
        self._n_artifact_items = artifact.n_items
        # extra candidates for known users when the model's score re-orders the dot product
        self._margin = settings.rescore_margin if artifact.prior_weight else 0
        self._ids: list[str] = list(artifact.item_ids)
        self._row: dict[str, int] = dict(artifact.item_index)
        self._vectors = _Rows(artifact.item_vectors)  # (N, D) float32, the index's rows
        self._titles: list[str | None] = _catalogue_titles(artifact)
        self._overridden: set[int] = set()  # artifact items whose vector the API replaced
        self._content: dict[int, dict[str, str | None]] = {}  # API items' fields
        self._history: dict[str, set[int]] = {}  # user -> items from events
        self._derived: dict[str, np.ndarray] = {}  # store-only user -> cached (D,) vector
        self._last_event = 0
        self._last_revision = 0
        self._last_sync = time.monotonic()
        self.rerank: RerankStage | None = None  # the language-model ranking stage, if loaded
        self._rerank_lock = threading.Lock()
        self.replay_report: dict[str, int] = {
            "items": 0,
            "reembedded_items": 0,
            "skipped_items": 0,
            "events": 0,
            "skipped_events": 0,
        }
        started = time.perf_counter()
        self.index, source = _artifact_index(settings, artifact, self.artifact_key)
        self.index_report: dict[str, Any] = {
            "kind": settings.index.kind,
            "precision": settings.index.precision,
            "items": self.index.size,
            "dim": self.index.dim,
            "source": source,
            "build_seconds": round(time.perf_counter() - started, 4),
        }

    # ------------------------------------------------------------------ start-up
    @classmethod
    def load(cls, settings: ServiceSettings, store: Store) -> ServiceState:
        """Load and verify the artifact, build the index, measure it, replay the store, and
        load the ranking stage when the artifact has one (unless ``settings.ranker`` is off)."""
        artifact = load_artifact(settings.artifact, verify=settings.verify_artifact)
        state = cls(settings, artifact, store)
        if artifact.has_ranker and settings.ranker != "off":
            state.rerank = artifact.rerank_stage(settings.ranker)
        state._measure_index()
        state._warm_up()
        state.sync()
        logger.info(
            "index ready: %s",
            ", ".join(f"{k}={v}" for k, v in state.index_report.items()),
        )
        logger.info(
            "store replayed: %s", ", ".join(f"{k}={v}" for k, v in state.replay_report.items())
        )
        return state

    def _measure_index(self) -> None:
        """recall@10 of the index against exact search, on a sample of user vectors."""
        users = self.artifact.user_vectors
        if users.shape[0] == 0:
            self.index_report["recall@10"] = None
            return
        rng = np.random.default_rng(_RECALL_SEED)
        count = min(self.settings.recall_sample, users.shape[0])
        sample = users[np.sort(rng.choice(users.shape[0], count, replace=False))]  # (S, D)
        started = time.perf_counter()
        recall = self.index.recall_against_exact(
            sample, k=min(_RECALL_K, self.index.size), reference=self._vectors.view
        )
        self.index_report["recall@10"] = round(recall, 4)
        self.index_report["recall_sample"] = count
        self.index_report["recall_seconds"] = round(time.perf_counter() - started, 4)

    def _warm_up(self) -> None:
        """Load the lazily loaded parts (EASE prior, content encoders) now, not on the first
        request, and before threads race to load them."""
        if self.artifact.n_users and self.artifact.n_items:
            self.artifact.score(0, np.array([0]))
        if self.artifact.content_modalities and self.artifact.n_items:
            first = self.artifact.catalogue.iloc[0]
            row = {c: _text(first[c]) for c in self.artifact.catalogue.columns if c != "id"}
            try:
                self.artifact.embed_items([row])
            except ClrecError as error:  # the first item may lack content; not fatal
                logger.debug("content encoder warm-up skipped: %s", error)

    # ------------------------------------------------------------------ store sync
    def sync(self) -> dict[str, int]:
        """Apply items and events written to the store since the last sync (by any process);
        idempotent. Returns how many of each were read. The database is read (and a foreign
        item re-embedded) outside the memory lock; each batch is applied under it."""
        with self._sync_lock:
            stored_items = self.store.load_items(self._last_revision)
            for row in stored_items:
                vector = self._stored_vector(row)
                if vector is not None:
                    with self._lock:
                        self._set_item(row.id, vector, row.content)
                self._last_revision = max(self._last_revision, row.revision)
            count = 0
            batch: list[StoredEvent] = []
            for event in self.store.iter_events(self._last_event):
                batch.append(event)
                if len(batch) == _SYNC_BATCH:
                    count += self._apply_events(batch)
            count += self._apply_events(batch)
            self._last_sync = time.monotonic()
        return {"items": len(stored_items), "events": count}

    def sync_due(self) -> bool:
        """Whether ``sync_interval_s`` has passed since the last sync."""
        interval = self.settings.sync_interval_s
        return interval is not None and time.monotonic() - self._last_sync >= interval

    def maybe_sync(self) -> None:
        """:meth:`sync` when ``sync_interval_s`` has passed; a database failure is logged and
        the request is answered from memory."""
        if not self.sync_due():
            return
        try:
            self.sync()
        except StoreError as error:
            self._last_sync = time.monotonic()  # do not retry on every request
            logger.warning("store sync failed: %s", error)

    def _stored_vector(self, row: StoredItem) -> np.ndarray | None:
        """A stored item's vector in this model's space: as stored, or re-embedded (and
        stored again) when it was written under another artifact; None when it cannot be."""
        vector = row.vector
        if row.artifact_key != self.artifact_key or vector.shape != (self.artifact.dim,):
            # stored under another artifact: that model's vector means nothing here
            try:
                vector = self._embed_row(row.content)
            except ClrecError as error:
                self.replay_report["skipped_items"] += 1
                logger.warning("API item skipped: it cannot be embedded by this model: %s", error)
                return None
            with self._write_lock:
                self.store.upsert_item(row.id, row.content, vector, self.artifact_key)
            self.replay_report["reembedded_items"] += 1
        self.replay_report["items"] += 1
        return vector

    def _apply_events(self, batch: list[StoredEvent]) -> int:
        """Add stored events to the histories (under the memory lock); empties ``batch``."""
        count = len(batch)
        with self._lock:
            for event in batch:
                row = self._row.get(event.item)
                if row is None:  # an item of another artifact, never re-added here
                    self.replay_report["skipped_events"] += 1
                    continue
                self._history.setdefault(event.user, set()).add(row)
                self._derived.pop(event.user, None)
                self.replay_report["events"] += 1
        self._last_event = max([self._last_event, *(e.id for e in batch)])
        batch.clear()
        return count

    def _set_item(self, item_id: str, vector: np.ndarray, content: Mapping[str, str | None]) -> int:
        """Add or replace an item in the index and the tables; returns its row."""
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)  # (1, D)
        row = self._row.get(item_id)
        if row is None:
            row = int(self.index.add(vector)[0])
            self._ids.append(item_id)
            self._row[item_id] = row
            self._vectors.append(vector[0])
            self._titles.append(None)
        else:
            self.index.update(np.array([row]), vector)
            self._vectors.set(row, vector[0])
            if row < self._n_artifact_items:
                self._overridden.add(row)
            self._derived.clear()  # users derived from this item move with it
        self._content[row] = dict(content)
        title = content.get("title")
        if title is not None:
            self._titles[row] = title
        elif row >= self._n_artifact_items:
            self._titles[row] = None
        return row

    # ------------------------------------------------------------------ queries
    @property
    def n_items(self) -> int:
        return len(self._ids)

    @property
    def n_users(self) -> int:
        """Users the artifact knows plus store-only users."""
        return self.artifact.n_users + len(self._store_only_users())

    def _store_only_users(self) -> list[str]:
        """Users known only by recorded events (no trained vector), sorted."""
        with self._lock:
            return sorted(u for u in self._history if u not in self.artifact.user_index)

    def has_item(self, item_id: str) -> bool:
        return item_id in self._row

    def history(self, user_id: str) -> list[str]:
        """The items recorded for ``user_id`` through events (sorted)."""
        with self._lock:
            return sorted(self._ids[r] for r in self._history.get(user_id, ()))

    def user_history(self, user_id: str, limit: int) -> tuple[list[HistoryEntry], int]:
        """Up to ``limit`` of the items ``user_id`` interacted with, and how many there are:
        first the items recorded through events (``source="events"``, sorted by id), then the
        run's own interactions from the artifact (``source="trained"``, artifact order; the
        artifact keeps no time). ``image`` is the catalogue's image field when it holds an
        http(s) URL a browser can show (never a local path, never an API item's field).
        NotFoundError for a user the service does not know."""
        with self._lock:
            user = self.artifact.user_index.get(user_id)
            recorded = self._history.get(user_id, set())
            if user is None and not recorded:
                raise NotFoundError(
                    f"unknown user {user_id!r}: no trained vector and no recorded events"
                )
            trained = [] if user is None else self.artifact.seen_items(user).tolist()
            rows: list[tuple[int, Literal["trained", "events"]]] = [
                (r, "events") for r in sorted(recorded, key=self._ids.__getitem__)
            ]
            rows += [(r, "trained") for r in trained if r not in recorded]
            catalogue = self.artifact.catalogue
            kinds: Mapping[str, str] = self.artifact.manifest["content"].get("item_fields", {})
            images = [n for n, kind in kinds.items() if kind == "image" and n in catalogue]
            entries = []
            for row, source in rows[:limit]:
                image = None
                if row < self._n_artifact_items:
                    for name in images:
                        value = _text(catalogue[name].iat[row])
                        if value and value.startswith(("https://", "http://")):
                            image = value
                            break
                entries.append(HistoryEntry(self._ids[row], self._titles[row], image, source))
            return entries, len(rows)

    def find_users(self, prefix: str, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` known user ids starting with ``prefix`` (artifact users in artifact
        order, then users known only by recorded events, sorted), and how many match."""
        found = [u for u in self.artifact.user_ids if u.startswith(prefix)]
        found += [u for u in self._store_only_users() if u.startswith(prefix)]
        return found[:limit], len(found)

    def recommend_user(
        self,
        user_id: str,
        k: int,
        *,
        exclude_seen: bool = True,
        exclude_ids: Iterable[str] = (),
    ) -> list[Scored]:
        """Top ``k`` items for a known user (artifact or store-only); NotFoundError for a
        user with neither a trained vector nor events."""
        with self._lock:
            user = self.artifact.user_index.get(user_id)
            history = self._history.get(user_id, set())
            if user is None and not history:
                raise NotFoundError(
                    f"unknown user {user_id!r}: no trained vector and no recorded events; "
                    f"for a new user use {COLD_START_ROUTE} with items they liked or a "
                    "profile_text"
                )
            parts = [np.fromiter((self._row[i] for i in exclude_ids if i in self._row), np.int64)]
            if exclude_seen:
                parts.append(np.fromiter(history, np.int64, len(history)))
                if user is not None:
                    parts.append(self.artifact.seen_items(user))
            excluded = np.concatenate(parts)  # (E,) duplicates allowed
            if user is not None:
                query = self.artifact.user_vectors[user]  # (D,)
                rows, dots = self._candidates(query, k, excluded, self._margin)
                if self._margin:  # the model's score is more than the dot product
                    scores = self._model_scores(user, rows)
                else:
                    scores = dots * np.float32(self.artifact.score_scale)
            else:
                query = self._history_vector(user_id)
                rows, scores = self._candidates(query, k, excluded)
            return self._top(rows, scores, k)

    def rerank_user(
        self,
        user_id: str,
        k: int,
        *,
        exclude_seen: bool = True,
        exclude_ids: Iterable[str] = (),
    ) -> list[Scored]:
        """Top ``k`` after the ranking stage: the retriever's top ``depth`` (at least ``k``)
        re-ordered by the cross-encoder's click probability, which becomes the score. The
        user's context is the one built at export for a user the run knew, else composed from
        the titles of their recorded items."""
        stage = self.rerank
        if stage is None:
            raise ClrecError(
                "this service has no ranking stage: the artifact was exported without "
                "--ranker, or the service runs with the ranker off"
            )
        candidates = self.recommend_user(
            user_id, max(k, stage.depth), exclude_seen=exclude_seen, exclude_ids=exclude_ids
        )
        with self._lock:
            titles = [self._titles[r] or "" for r in sorted(self._history.get(user_id, ()))]
            texts = [stage.item_text(c.id, self._content.get(self._row[c.id])) for c in candidates]
        context = stage.context(user_id, titles)
        with self._rerank_lock:  # one forward pass at a time: torch uses every core already
            probabilities = stage.scores(context, texts)  # (C,)
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [
            Scored(candidates[i].id, float(probabilities[i]), candidates[i].title) for i in order
        ]

    def recommend_anonymous(
        self, item_ids: Sequence[str], profile_text: str | None, k: int
    ) -> QueryResult:
        """Top ``k`` for a user known only by a few items and/or a profile text (embedded
        as if it were an item's text field). Unknown item ids are ignored and reported."""
        known: list[int] = []
        ignored: list[str] = []
        for item in dict.fromkeys(item_ids):
            row = self._row.get(item)
            if row is None:
                ignored.append(item)
            else:
                known.append(row)
        profile = None if profile_text is None else self._embed_profile(profile_text)  # (D,)
        if not known and profile is None:
            raise ClrecError(
                "none of the given items is known to the service and no profile_text was "
                "given: nothing to recommend from"
            )
        with self._lock:
            query = self._mean_vector(known, profile)
            rows, scores = self._candidates(query, k, set(known))
            return QueryResult(self._top(rows, scores, k), ignored)

    def similar_items(self, item_id: str, k: int) -> list[Scored]:
        """The ``k`` items whose vectors score highest against ``item_id``'s (itself left
        out): cosine similarity for cosine models, the dot product otherwise."""
        with self._lock:
            row = self._row.get(item_id)
            if row is None:
                raise NotFoundError(f"unknown item {item_id!r}")
            query = self._vectors.view[row].copy()  # (D,)
            rows, scores = self._candidates(query, k, {row})
            return self._top(rows, scores, k)

    # ------------------------------------------------------------------ writes
    def put_item(
        self,
        item_id: str,
        content: Mapping[str, str | None],
        *,
        for_user: str | None = None,
    ) -> PutResult:
        """Embed ``content`` with the model's own encoders, persist it, and add or update the
        item in the index: it is recommendable when this returns. With ``for_user``, also
        report where the item lands in that user's ranking."""
        if for_user is not None and not self._known_user(for_user):
            raise NotFoundError(f"unknown user {for_user!r} (for_user)")
        vector = self._embed_row(content)  # (D,)
        with self._write_lock:
            created = item_id not in self._row
            self.store.upsert_item(item_id, content, vector, self.artifact_key)
            with self._lock:
                row = self._set_item(item_id, vector, content)
                placement = None if for_user is None else self._placement(for_user, row)
                return PutResult(item_id, created, self._titles[row], placement)

    def record_events(self, batch: Sequence[Event]) -> int:
        """Persist ``batch`` (one transaction, committed before this returns), then add it
        to the users' histories: their recommendations exclude the items at once, and
        store-only users' vectors move. Events naming unknown items are refused whole."""
        unknown = sorted({e.item for e in batch if e.item not in self._row})
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ClrecError(
                f"unknown item(s) {shown}{more}: add an item with PUT /v1/items/{{item_id}} "
                "before recording events for it; nothing was recorded"
            )
        written = self.store.record_events(batch)
        with self._lock:
            for event in batch:
                self._history.setdefault(event.user, set()).add(self._row[event.item])
                self._derived.pop(event.user, None)
        return written

    # ------------------------------------------------------------------ helpers
    def _known_user(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self.artifact.user_index or bool(self._history.get(user_id))

    def _candidates(
        self, query: np.ndarray, k: int, excluded: np.ndarray | Collection[int], margin: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``(C,)`` of the index's top ``k + margin`` for ``query``, excluded rows
        filtered inside the search, and their exact float32 dot products ``(C,)`` with
        ``query`` (the index's own scores when it stores float32 vectors)."""
        want = min(k + margin, self.index.size)
        if not isinstance(excluded, np.ndarray):
            excluded = np.fromiter(excluded, dtype=np.int64, count=len(excluded))  # (E,)
        ids, scores = self.index.search(query[None, :], want, exclude=[excluded])  # (1, want)
        found = ids[0] >= 0  # (want,)
        rows = ids[0][found]  # (C,)
        if self.index.storage_dtype != np.float32:  # float16 / int8 scores are approximate
            return rows, self._vectors.view[rows] @ query
        return rows, scores[0][found]

    def _model_scores(self, user: int, rows: np.ndarray) -> np.ndarray:
        """The model's exact scores ``(C,)`` of a known user over ``rows``: the artifact's
        score for its own items (with the EASE prior), corrected where the API replaced an
        item's vector; the scaled dot product for API-added items (no prior column)."""
        scores = np.empty(len(rows), dtype=np.float32)  # (C,)
        vector = self.artifact.user_vectors[user]  # (D,)
        scale = np.float32(self.artifact.score_scale)
        own = rows < self._n_artifact_items  # (C,)
        if own.any():
            scores[own] = self.artifact.score(user, rows[own])
            for position in np.flatnonzero(own) if self._overridden else ():
                row = int(rows[position])
                if row in self._overridden:
                    old = self.artifact.item_vectors[row] @ vector
                    new = self._vectors.view[row] @ vector
                    scores[position] += scale * (new - old)
        if (~own).any():
            scores[~own] = scale * (self._vectors.view[rows[~own]] @ vector)
        return scores

    def _top(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Scored]:
        order = np.argsort(-scores, kind="stable")[:k]
        ids, titles = self._ids, self._titles
        return [
            Scored(ids[row], score, titles[row])
            for row, score in zip(rows[order].tolist(), scores[order].tolist(), strict=True)
        ]

    def _history_vector(self, user_id: str) -> np.ndarray:
        """A store-only user's vector from their items (cached until their history or one
        of its items changes)."""
        cached = self._derived.get(user_id)
        if cached is None:
            cached = self._mean_vector(sorted(self._history[user_id]), None)
            self._derived[user_id] = cached
        return cached

    def _mean_vector(self, rows: Sequence[int], extra: np.ndarray | None) -> np.ndarray:
        """The mean of the items' vectors (and ``extra``), L2-normalised for cosine models:
        :meth:`Artifact.user_from_items` itself when every row is an unchanged artifact item."""
        plain = extra is None and all(
            r < self._n_artifact_items and r not in self._overridden for r in rows
        )
        if plain:
            return self.artifact.user_from_items(np.asarray(rows, dtype=np.int64))
        parts = [self._vectors.view[np.asarray(rows, dtype=np.int64)]]  # (n, D)
        if extra is not None:
            parts.append(extra[None, :])
        mean = np.concatenate(parts).mean(axis=0, dtype=np.float32)  # (D,)
        if self.artifact.similarity == "cosine":
            mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return np.asarray(mean, dtype=np.float32)

    def _placement(self, user_id: str, row: int) -> Placement:
        """Rank and score of ``row`` among every item ``user_id`` has not seen."""
        user = self.artifact.user_index.get(user_id)
        history = self._history.get(user_id, set())
        seen = set(history)
        if user is not None:
            seen.update(self.artifact.seen_items(user).tolist())
        everything = np.arange(self.n_items, dtype=np.int64)  # (N,)
        if user is not None:
            scores = self._model_scores(user, everything)  # (N,)
        else:
            scores = self._vectors.view @ self._history_vector(user_id)  # (N,)
        open_rows = np.ones(self.n_items, dtype=bool)
        open_rows[list(seen)] = False
        open_rows[row] = True
        rank = 1 + int((scores[open_rows] > scores[row]).sum())
        return Placement(user_id, rank, float(scores[row]), int(open_rows.sum()), row in seen)

    def _embed_row(self, content: Mapping[str, str | None]) -> np.ndarray:
        """One item's vector ``(D,)`` from its fields, through the model's encoders."""
        if not self.artifact.content_modalities:
            raise ClrecError(
                f"this {self.artifact.model_name!r} model reads no content, so items cannot "
                "be added or changed through the API; retrain with a content model (clrec "
                "with content modalities) to serve new items"
            )
        with self._embed_lock:
            return self.artifact.embed_items([dict(content)])[0]

    def _embed_profile(self, text: str) -> np.ndarray:
        """A profile text's vector ``(D,)``: embedded as the first text field of an item."""
        if not self.artifact.content_modalities:
            raise ClrecError(
                f"this {self.artifact.model_name!r} model reads no content, so a profile_text "
                "cannot be used; send the items the user liked instead"
            )
        fields: dict[str, str] = self.artifact.manifest["content"]["item_fields"]
        text_fields = [name for name, kind in fields.items() if kind == "text"]
        if not text_fields:
            raise ClrecError(
                "the catalogue has no text field to read a profile_text as; send items instead"
            )
        try:
            with self._embed_lock:
                return self.artifact.embed_items([{text_fields[0]: text}])[0]
        except ClrecError as error:
            raise ClrecError(
                f"the profile_text gives no content this model can read ({error}); send "
                "items instead or describe the user in the catalogue's terms"
            ) from None


def _artifact_index(
    settings: ServiceSettings, artifact: Artifact, key: str
) -> tuple[VectorIndex, str]:
    """The index of the artifact's items and where it came from (``"built"`` or
    ``"cache"``). An HNSW graph, whose build dominates start-up (about 40 s for 100k items on
    2 cores), is kept in ``data_dir/index-cache/`` under a digest of the artifact and the
    index settings, so a restart loads it; a cached index that does not hold exactly the
    artifact's vectors is rebuilt."""
    config = settings.index
    if config.kind != "hnsw" or not settings.index_cache:
        return VectorIndex.build(artifact.item_vectors, config), "built"
    digest = hashlib.sha256(
        json.dumps([key, config.structure()], sort_keys=True).encode()
    ).hexdigest()[:24]
    folder = Path(settings.data_dir).expanduser() / INDEX_CACHE_DIR / digest
    if (folder / "index.json").is_file():
        try:
            cached = VectorIndex.load(folder).with_search(config)
            if cached.size == artifact.n_items and np.array_equal(
                cached.vectors(), artifact.item_vectors
            ):
                return cached, "cache"
            logger.warning("cached index %s does not match the artifact; rebuilding", folder)
        except ClrecError as error:
            logger.warning("cached index %s unreadable (%s); rebuilding", folder, error)
    index = VectorIndex.build(artifact.item_vectors, config)
    try:
        index.save(folder)
    except OSError as error:  # a read-only data folder costs start-up time, nothing else
        logger.warning("could not cache the index in %s: %s", folder, error)
    return index, "built"


def _catalogue_titles(artifact: Artifact) -> list[str | None]:
    if "title" not in artifact.catalogue.columns:
        return [None] * artifact.n_items
    return [_text(value) for value in artifact.catalogue["title"].tolist()]


def _text(value: object) -> str | None:
    """A catalogue cell as text (None for a missing value)."""
    if value is None:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


__all__ = [
    "COLD_START_ROUTE",
    "INDEX_CACHE_DIR",
    "HistoryEntry",
    "NotFoundError",
    "Placement",
    "PutResult",
    "QueryResult",
    "Scored",
    "ServiceState",
    "artifact_key",
]
