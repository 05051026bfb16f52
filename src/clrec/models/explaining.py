"""One user's scores explained with the model's own arithmetic, ranks included.

The split of a score comes from the model (:meth:`EmbeddingModel.explain`: the user's ID
part, one term per history item, the rest of the history). A rank is the item's 1-based
place among the items the user has not seen, as recommendations exclude them; the
*counterfactual* rank of a history item ``h`` is the item's place for the user whose history
never held ``h`` (:meth:`EmbeddingModel.user_state_without`: every other entry keeps its
weight; without recency weights, the user the real-time path builds from the same events
without ``h``), among that user's unseen items (``h`` included).

:class:`UserExplainer` scores the whole catalogue once for the user and once per removed
history item, and shares those scorings between the items it explains: a page of ``k``
recommendations with ``c`` counterfactuals each costs at most ``1 + k·c`` catalogue
scorings, fewer when the items share their top contributors (they usually do).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from clrec.models.embedding import Attribution, EmbeddingModel, UserState


def rank_among(scores: np.ndarray, open_rows: np.ndarray, row: int) -> int:
    """The 1-based rank of ``row`` by ``scores`` ``(N,)`` among the rows where ``open_rows``
    ``(N,)`` holds (``row`` itself counted among them; ties rank in its favour)."""
    return 1 + int((scores[open_rows] > scores[row]).sum())


class UserExplainer:
    """Scores, ranks and explanations for one user (``state``) over every item (index-space
    ``vectors`` ``(N, D)``, row ``r`` is model row ``r`` below the model's ``n_items``) with
    the rows ``seen`` ``(S,)`` (duplicates allowed) out of the ranking."""

    def __init__(
        self,
        model: EmbeddingModel,
        vectors: np.ndarray,
        state: UserState,
        seen: np.ndarray,
    ) -> None:
        self.model = model
        self.vectors = vectors  # (N, D) index space
        self.state = state
        self._rows = np.arange(len(vectors), dtype=np.int64)  # (N,)
        self.open = np.ones(len(vectors), dtype=bool)  # (N,) rows the user may be shown
        self.open[np.asarray(seen, dtype=np.int64)] = False
        self.scores = self._scores(state)  # (N,)
        self._without: dict[int, np.ndarray] = {}  # removed history row → (N,) scores

    def _scores(self, state: UserState) -> np.ndarray:
        return self.model.score_user(state, self.vectors, self._rows)

    def rank(self, row: int) -> int:
        """The item's rank for the user."""
        return rank_among(self.scores, self.open, row)

    def competing(self, row: int) -> int:
        """How many items the rank is among (``row`` included)."""
        return int(self.open.sum()) + (0 if self.open[row] else 1)

    def rank_without(self, row: int, removed: int) -> int:
        """The item's rank for the user whose history never held model row ``removed``."""
        scores = self._without.get(removed)
        if scores is None:
            scores = self._scores(self.model.user_state_without(self.state, removed))
            self._without[removed] = scores
        open_rows = self.open.copy()  # (N,)
        open_rows[removed] = True  # no longer seen
        return rank_among(scores, open_rows, row)

    def explain_item(
        self, row: int, vector: np.ndarray, content: Mapping[str, np.ndarray] | None
    ) -> dict[str, float]:
        """The item's score split over its side (history-space ``vector`` ``(D,)``,
        ``content``: its content matrices, or None)."""
        model_row = row if row < self.model.n_items else -1
        return self.model.explain_item(self.state, vector, model_row, content)

    def explain(
        self, row: int, top: int, counterfactuals: int
    ) -> tuple[Attribution, list[tuple[int, float, int | None]]]:
        """The model's split of the item's score, and its ``top`` largest history terms as
        ``(history row, term, rank without it)`` (the rank for the first ``counterfactuals``
        of them, else None)."""
        model_row = row if row < self.model.n_items else -1
        split = self.model.explain(self.state, self.vectors[row], model_row)
        order = np.argsort(-split.history, kind="stable")[:top]  # (top,)
        terms = []
        for place, index in enumerate(order.tolist()):
            removed = int(split.items[index])
            rank = self.rank_without(row, removed) if place < counterfactuals else None
            terms.append((removed, float(split.history[index]), rank))
        return split, terms


__all__ = ["UserExplainer", "rank_among"]
