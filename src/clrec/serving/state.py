"""What a running service knows: the artifact's model, the items, the users, and the store
replayed on top — and every answer it gives, computed through the model's
:class:`~clrec.models.embedding.EmbeddingModel` contract (the service holds no scoring or
featurising formula of its own).

:meth:`ServiceState.load` loads the artifact (checksums verified), indexes its item vectors,
measures the index's recall@10 against exact search on a sample of user vectors
(:attr:`ServiceState.index_report`), then replays the store:

* items added or updated through the API enter the index with their *stored* vectors (no
  re-encoding at restart; only an item stored under another artifact, whose vector belongs to
  another model, is re-embedded from its stored fields);
* events extend each user's history and state (:class:`~clrec.serving.users.UserTable`): a
  user the artifact does not know but who has events is a *store-only* user.

Retrieval takes the top ``k`` candidates from the index by the user's vector (``k +
rescore_margin`` when the model's score is more than the dot product: an EASE prior), seen and
excluded items filtered inside the search, and scores them with the model's own
:meth:`~clrec.models.embedding.EmbeddingModel.score_user` (an item added through the API has
no prior column and scores by its vector alone, as a cold item does in the model).

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clrec.errors import ClrecError
from clrec.models.embedding import UserState
from clrec.models.explaining import UserExplainer
from clrec.serving.artifact import Artifact, load_artifact
from clrec.serving.encoding import OverloadedError, QueuedEncoder
from clrec.serving.idempotency import Idempotency
from clrec.serving.items import INDEX_CACHE_DIR, ItemTable
from clrec.serving.results import (
    Contribution,
    Explanation,
    HistoryEntry,
    NotFoundError,
    Placement,
    PutResult,
    QueryResult,
    Scored,
)
from clrec.serving.settings import ServiceSettings
from clrec.serving.store import Event, Store, StoredEvent, StoredItem, StoreError
from clrec.serving.users import COLD_START_ROUTE, UserTable

if TYPE_CHECKING:
    from clrec.ranking.stage import RerankStage

logger = logging.getLogger("clrec.serving")

_SYNC_BATCH = 10_000  # stored events applied per hold of the memory lock


def artifact_key(artifact: Artifact) -> str:
    """A stable identity of an artifact: the sha256 of its manifest's file digests."""
    files = json.dumps(artifact.manifest["files"], sort_keys=True).encode()
    return hashlib.sha256(files).hexdigest()


class ServiceState:
    """The artifact's model, its items and index, and the users, ready to answer."""

    def __init__(self, settings: ServiceSettings, artifact: Artifact, store: Store) -> None:
        """Index ``artifact``'s items; :meth:`load` also measures the index and replays the
        store (use it rather than this constructor)."""
        self.settings = settings
        self.artifact = artifact
        self.model = artifact.model
        self.store = store
        self.artifact_key = artifact_key(artifact)
        self._lock = threading.RLock()  # memory: index, tables, histories
        self.encoder = QueuedEncoder(artifact, settings.max_encode_waiting)
        self._write_lock = threading.Lock()  # item writes, so database and memory agree
        self._sync_lock = threading.Lock()  # reads of what other processes wrote
        # extra candidates when the model's score re-orders the index's dot products
        self._margin = settings.rescore_margin if self.model.has_prior else 0
        self._last_event = 0
        self._last_revision = 0
        self._last_sync = self._last_synced_ok = time.monotonic()
        self.sync_failures = 0
        self.rerank: RerankStage | None = None  # the ranking stage, if loaded
        self.replay_report: dict[str, int] = {
            "items": 0,
            "reembedded_items": 0,
            "skipped_items": 0,
            "events": 0,
            "skipped_events": 0,
        }
        started = time.perf_counter()
        self.items = ItemTable(settings, artifact, self.artifact_key)
        self.users = UserTable(
            self.model,
            artifact.user_index,
            artifact.seen_items,
            self.items,
            settings.realtime_users,
        )
        self.index = self.items.index
        self.index_report: dict[str, Any] = {
            "kind": settings.index.kind,
            "precision": settings.index.precision,
            "items": self.index.size,
            "dim": self.index.dim,
            "source": self.items.source,
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
            state.rerank = artifact.rerank_stage()
        state.index_report.update(
            state.items.measure_recall(state.model.user_vectors(), settings.recall_sample)
        )
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

    def _warm_up(self) -> None:
        """Load the content encoders now, not on the first request, and before threads race
        to load them."""
        if self.artifact.content_modalities and self.artifact.n_items:
            try:
                self.artifact.embed_items([self.items.fields(0)])
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
            self._last_sync = self._last_synced_ok = time.monotonic()
        return {"items": len(stored_items), "events": count}

    def sync_age(self) -> float:
        """Seconds since the last successful sync (0 for a lone process that never syncs)."""
        if self.settings.sync_interval_s is None:
            return 0.0
        return time.monotonic() - self._last_synced_ok

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
            self.sync_failures += 1
            logger.warning("store sync failed: %s", error)

    def _stored_vector(self, row: StoredItem) -> np.ndarray | None:
        """A stored item's history-space vector for this model: as stored, or re-embedded
        (and stored again) when it was written under another artifact; None when it cannot
        be."""
        vector = row.vector
        if row.artifact_key != self.artifact_key or vector.shape != (self.artifact.dim,):
            # stored under another artifact: that model's vector means nothing here
            try:
                vector = self.encoder.item(row.content)
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
        """Add stored events to the users (under the memory lock); empties ``batch``."""
        count = len(batch)
        with self._lock:
            for event in batch:
                row = self.items.row.get(event.item)
                if row is None:  # an item of another artifact, never re-added here
                    self.replay_report["skipped_events"] += 1
                    continue
                self.users.record(event.user, row)
                self.replay_report["events"] += 1
        self._last_event = max([self._last_event, *(e.id for e in batch)])
        batch.clear()
        return count

    def _set_item(self, item_id: str, vector: np.ndarray, content: Mapping[str, str | None]) -> int:
        """Add or replace an item (history-space ``vector``); returns its row. Users whose
        state pooled a replaced vector are rebuilt on next use."""
        replaced = item_id in self.items.row
        row = self.items.set(item_id, vector, content)
        if replaced:
            self.users.forget_states()
        return row

    # ------------------------------------------------------------------ queries
    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        """Users the artifact knows plus store-only users."""
        with self._lock:
            return self.artifact.n_users + len(self.users.store_only())

    def has_item(self, item_id: str) -> bool:
        return item_id in self.items.row

    def history(self, user_id: str) -> list[str]:
        """The items recorded for ``user_id`` through events (sorted)."""
        with self._lock:
            return sorted(self.items.ids[r] for r in self.users.seen.get(user_id, ()))

    def user_history(self, user_id: str, limit: int) -> tuple[list[HistoryEntry], int]:
        """Up to ``limit`` of the items ``user_id`` interacted with, and how many there are:
        first the items recorded through events (``source="events"``, sorted by id), then the
        run's own interactions from the artifact (``source="trained"``, artifact order; the
        artifact keeps no time). ``image`` is the catalogue's image field when it holds an
        http(s) URL a browser can show (never a local path, never an API item's field).
        NotFoundError for a user the service does not know."""
        with self._lock:
            user = self.artifact.user_index.get(user_id)
            recorded = self.users.seen.get(user_id, set())
            if user is None and not recorded:
                raise NotFoundError(
                    f"unknown user {user_id!r}: no trained vector and no recorded events"
                )
            trained = [] if user is None else self.artifact.seen_items(user).tolist()
            ids = self.items.ids
            rows: list[tuple[int, Literal["trained", "events"]]] = [
                (r, "events") for r in sorted(recorded, key=ids.__getitem__)
            ]
            rows += [(r, "trained") for r in trained if r not in recorded]
            titles, image = self.items.titles, self.items.image
            entries = [HistoryEntry(ids[r], titles[r], image(r), src) for r, src in rows[:limit]]
            return entries, len(rows)

    def find_users(self, prefix: str, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` known user ids starting with ``prefix`` (artifact users in artifact
        order, then users known only by recorded events, sorted), and how many match."""
        found = [u for u in self.artifact.user_ids if u.startswith(prefix)]
        with self._lock:
            found += [u for u in self.users.store_only() if u.startswith(prefix)]
        return found[:limit], len(found)

    def recommend_user(
        self,
        user_id: str,
        k: int,
        *,
        exclude_seen: bool = True,
        exclude_ids: Iterable[str] = (),
    ) -> list[Scored]:
        """Top ``k`` items for a known user (artifact or store-only), their vector and score
        following their recorded events; NotFoundError for a user with neither a trained
        vector nor events."""
        with self._lock:
            state = self.users.known_state(user_id)
            excluded = self.users.excluded(user_id, state, exclude_ids, exclude_seen)
            return self._recommend(state, k, excluded)

    def rerank_user(
        self,
        user_id: str,
        k: int,
        *,
        exclude_seen: bool = True,
        exclude_ids: Iterable[str] = (),
    ) -> list[Scored]:
        """Top ``k`` after the ranking stage: the union of the retrievers' candidates (the
        model's scores over the exported catalogue, the stage's own retrievers) ordered by
        the LambdaRank score, which becomes the score. The user's history is the exported
        one followed by their recorded events."""
        stage = self.rerank
        if stage is None:
            raise ClrecError(
                "this service has no ranking stage: the artifact was exported without "
                "--ranker, or the service runs with the ranker off"
            )
        with self._lock:
            state = self.users.known_state(user_id)
            excluded = self.users.excluded(user_id, state, exclude_ids, exclude_seen)
            recorded = np.asarray(self.users.events.get(user_id, ()), np.int64)  # oldest first
            model_scores = self._scores(state, np.arange(stage.n_items, dtype=np.int64))
        history = stage.history(user_id, recorded)  # (H,)
        items, scores = stage.rank(model_scores, history, excluded)
        with self._lock:
            return self._top(items, scores.astype(np.float32), k)

    def recommend_anonymous(
        self, item_ids: Sequence[str], profile_text: str | None, k: int
    ) -> QueryResult:
        """Top ``k`` for a user known only by a few items and/or a profile text (read as an
        item's text field and pooled as one more item). Unknown item ids are ignored and
        reported."""
        known: list[int] = []
        ignored: list[str] = []
        for item in dict.fromkeys(item_ids):
            row = self.items.row.get(item)
            if row is None:
                ignored.append(item)
            else:
                known.append(row)
        profile = None if profile_text is None else self.encoder.profile(profile_text)  # (D,)
        if not known and profile is None:
            raise ClrecError(
                "none of the given items is known to the service and no profile_text was "
                "given: nothing to recommend from"
            )
        with self._lock:
            state = self.model.user_state(None)
            for row in known:
                self.model.add_event(state, row, self.items.pooled.view[row])
            if profile is not None:
                self.model.add_event(state, None, profile)
            return QueryResult(self._recommend(state, k, np.asarray(known, np.int64)), ignored)

    def similar_items(self, item_id: str, k: int) -> list[Scored]:
        """The ``k`` items whose index vectors score highest against ``item_id``'s (itself
        left out): cosine similarity for cosine models, the dot product otherwise."""
        with self._lock:
            row = self.items.row.get(item_id)
            if row is None:
                raise NotFoundError(f"unknown item {item_id!r}")
            query = self.items.vectors.view[row].copy()  # (D,)
            rows, scores = self.items.candidates(query, k, {row})
            return self._top(rows, scores, k)

    # ------------------------------------------------------------------ writes
    def put_item(
        self,
        item_id: str,
        content: Mapping[str, str | None],
        *,
        for_user: str | None = None,
    ) -> PutResult:
        """Embed ``content`` with the model's own featuriser and encoders, persist it, and add
        or update the item in the index: it is recommendable when this returns. With
        ``for_user``, also report where the item lands in that user's ranking."""
        with self._lock:
            if for_user is not None and not self.users.knows(for_user):
                raise NotFoundError(f"unknown user {for_user!r} (for_user)")
        vector = self.encoder.item(content)  # (D,) history space
        with self._write_lock:
            created = item_id not in self.items.row
            self.store.upsert_item(item_id, content, vector, self.artifact_key)
            with self._lock:
                row = self._set_item(item_id, vector, content)
                placement = None if for_user is None else self._placement(for_user, row)
                return PutResult(item_id, created, self.items.titles[row], placement)

    def record_events(
        self, batch: Sequence[Event], idempotency: Idempotency | None = None
    ) -> tuple[int, bool]:
        """Persist ``batch`` (one transaction, committed before this returns), then add it
        to the users: their recommendations exclude the items and follow them at once.
        Events naming unknown items are refused whole. Returns the count and whether this
        call wrote it: a retry under a stored ``idempotency`` key — found here, or by the
        database when it raced its twin — writes nothing, changes nothing in memory, and
        returns the first answer's count."""
        if idempotency is not None:
            answered = self.store.answered(idempotency)
            if answered is not None:
                return int(answered["recorded"]), False  # type: ignore[call-overload]
        unknown = sorted({e.item for e in batch if e.item not in self.items.row})
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ClrecError(
                f"unknown item(s) {shown}{more}: add an item with PUT /v1/items/{{item_id}} "
                "before recording events for it; nothing was recorded"
            )
        written = self.store.record_new_events(batch, idempotency)
        if written is None:  # the twin of this retry committed first; it applies the batch
            return self.record_events(batch, idempotency)
        with self._lock:
            for event in batch:
                self.users.record(event.user, self.items.row[event.item])
        return written, True

    # ------------------------------------------------------------------ helpers
    def _recommend(self, state: UserState, k: int, excluded: np.ndarray) -> list[Scored]:
        """Top ``k`` of the index for the user's vector, scored by the model."""
        rows, _ = self.items.candidates(self.model.user_vector(state), k, excluded, self._margin)
        return self._top(rows, self._scores(state, rows), k)

    def _scores(self, state: UserState, rows: np.ndarray) -> np.ndarray:
        """The model's scores ``(C,)`` of the user over item ``rows`` (``(C,)``)."""
        vectors = self.items.vectors.view[rows]  # (C, D) index space
        return self.model.score_user(state, vectors, rows)

    def _top(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Scored]:
        order = np.argsort(-scores, kind="stable")[:k]
        ids, titles = self.items.ids, self.items.titles
        return [
            Scored(ids[row], score, titles[row])
            for row, score in zip(rows[order].tolist(), scores[order].tolist(), strict=True)
        ]

    def explain(self, user_id: str, item_id: str, top: int, counterfactuals: int) -> Explanation:
        """Why ``item_id`` scores what it does for ``user_id``: the model's split of the
        score with its ``top`` largest history terms (the rank without each of the first
        ``counterfactuals``), and the split over the item's side (content matrices from the
        encoder queue when the model reads content)."""
        with self._lock:
            row = self.items.row.get(item_id)
            if row is None:
                raise NotFoundError(f"unknown item {item_id!r}")
            self.users.known_state(user_id)
            fields = self.items.fields(row)
        content = None
        if "content" in self.model.explanations:  # the encoders work outside the memory lock
            try:
                content = self.encoder.features(fields)
            except OverloadedError:
                raise
            except ClrecError:  # no content the featuriser reads: the item side is unsplit
                content = None
        with self._lock:
            explainer = self._explainer(user_id, self.users.known_state(user_id))
            found = self._explanation(explainer, row, top, counterfactuals)
            parts = explainer.explain_item(row, self.items.pooled.view[row], content)
            return replace(found, item_parts=parts)

    def explained_recommendations(
        self, user_id: str, k: int, *, exclude_seen: bool, exclude_ids: Iterable[str], top: int
    ) -> list[tuple[Scored, Explanation]]:
        """:meth:`recommend_user`'s items, each with its explanation (``top`` history terms,
        each with its counterfactual rank)."""
        with self._lock:
            found = self.recommend_user(
                user_id, k, exclude_seen=exclude_seen, exclude_ids=exclude_ids
            )
            explainer = self._explainer(user_id, self.users.known_state(user_id))
            row = self.items.row
            return [(s, self._explanation(explainer, row[s.id], top, top)) for s in found]

    def _explainer(self, user_id: str, state: UserState) -> UserExplainer:
        """Hold the lock. The user's explainer: every item scored, their seen items out."""
        seen = self.users.seen_rows(user_id, state)
        return UserExplainer(self.model, self.items.vectors.view, state, seen)

    def _explanation(
        self, explainer: UserExplainer, row: int, top: int, counterfactuals: int
    ) -> Explanation:
        split, terms = explainer.explain(row, top, counterfactuals)
        ids, titles = self.items.ids, self.items.titles
        return Explanation(
            split.score,
            split.user,
            split.other,
            [Contribution(ids[r], titles[r], value, rank) for r, value, rank in terms],
            explainer.rank(row),
        )

    def _placement(self, user_id: str, row: int) -> Placement:
        """Rank and score of ``row`` among every item ``user_id`` has not seen."""
        explainer = self._explainer(user_id, self.users.known_state(user_id))  # put_item checked
        rank, score = explainer.rank(row), float(explainer.scores[row])
        return Placement(
            user_id, rank, score, explainer.competing(row), not bool(explainer.open[row])
        )


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
