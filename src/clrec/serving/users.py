"""The service's users: what each did through the API, what they have seen, and their model state.

A user the artifact knows starts as trained (:meth:`EmbeddingModel.user_state` of their row);
a user known only by events starts empty. Each recorded event is folded into the user's state
by the model itself (:meth:`EmbeddingModel.add_event`, O(D)), so the next recommendation
follows it; with ``realtime`` off a trained user's state stays as trained (events still
exclude items). When an item's vector changes, the states built with its old vector are
dropped and rebuilt from the recorded events on next use. Not thread-safe:
:class:`~clrec.serving.state.ServiceState` holds its lock around every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from clrec.models.embedding import EmbeddingModel, UserState
from clrec.serving.items import ItemTable
from clrec.serving.results import NotFoundError

COLD_START_ROUTE = "POST /v1/recommendations"


class UserTable:
    """Recorded events per user (in order) and the model states built from them."""

    def __init__(
        self,
        model: EmbeddingModel,
        trained: Mapping[str, int],
        trained_items: Callable[[int], np.ndarray],
        items: ItemTable,
        realtime: bool,
    ) -> None:
        self.model = model
        self.trained = trained  # external id → the model's user row
        self.trained_items = trained_items  # the model's user row → (H,) rows in the run's data
        self.items = items
        self.realtime = realtime
        self.events: dict[str, list[int]] = {}  # user → item rows, oldest first
        self.seen: dict[str, set[int]] = {}  # user → distinct item rows from events
        self._states: dict[str, UserState] = {}

    def knows(self, user_id: str) -> bool:
        return user_id in self.trained or bool(self.seen.get(user_id))

    def store_only(self) -> list[str]:
        """Users known only by recorded events (no trained vector), sorted."""
        return sorted(u for u in self.seen if u not in self.trained)

    def record(self, user_id: str, row: int) -> None:
        """Add one event (item ``row``) to ``user_id``'s history and state."""
        self.events.setdefault(user_id, []).append(row)
        self.seen.setdefault(user_id, set()).add(row)
        state = self._states.get(user_id)
        if state is not None and self._follows(user_id):
            self.model.add_event(state, row, self.items.pooled.view[row])

    def state(self, user_id: str) -> UserState | None:
        """The user's model state (None: the service does not know them)."""
        state = self._states.get(user_id)
        if state is not None:
            return state
        user = self.trained.get(user_id)
        events = self.events.get(user_id, ())
        if user is None and not events:
            return None
        state = self.model.user_state(user)
        if not events or not self._follows(user_id):
            return state  # O(1) for a trained user; nothing to cache
        pooled = self.items.pooled.view
        for row in events:
            self.model.add_event(state, row, pooled[row])
        self._states[user_id] = state
        return state

    def known_state(self, user_id: str) -> UserState:
        """The user's state; NotFoundError for a user with neither a trained vector nor
        recorded events."""
        state = self.state(user_id)
        if state is None:
            raise NotFoundError(
                f"unknown user {user_id!r}: no trained vector and no recorded events; "
                f"for a new user use {COLD_START_ROUTE} with items they liked or a profile_text"
            )
        return state

    def seen_rows(self, user_id: str, state: UserState) -> np.ndarray:
        """Rows ``(S,)`` the user interacted with: recorded through events and, for a
        trained user, in the run's data set (duplicates allowed)."""
        recorded = self.seen.get(user_id, set())
        parts = [np.fromiter(recorded, np.int64, len(recorded))]
        if state.user is not None:
            parts.append(self.trained_items(state.user))
        return np.concatenate(parts)

    def excluded(
        self, user_id: str, state: UserState, exclude_ids: Iterable[str], exclude_seen: bool
    ) -> np.ndarray:
        """Rows ``(E,)`` kept out of a user's list (duplicates allowed): the known
        ``exclude_ids``, and the user's seen items with ``exclude_seen``."""
        row_of = self.items.row
        parts = [np.fromiter((row_of[i] for i in exclude_ids if i in row_of), np.int64)]
        if exclude_seen:
            parts.append(self.seen_rows(user_id, state))
        return np.concatenate(parts)

    def forget_states(self) -> None:
        """Drop every cached state (an item's vector changed): rebuilt on next use."""
        self._states.clear()

    def _follows(self, user_id: str) -> bool:
        """Whether events move this user's state: always for users known only by events."""
        return self.realtime or user_id not in self.trained
