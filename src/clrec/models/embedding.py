"""The contract between an embedding model and everything that serves it.

An *embedding model* ranks items by dot products of user and item vectors (cosine similarity
when both are L2-normalised), possibly plus a prior fused into the score. Every such model
(BPR-MF, LightGCN, the clrec model) implements :class:`EmbeddingModel`, and the serving
artifact, the service and the real-time user path use it through nothing else: no
``isinstance`` checks on model classes, no private fields, no formula of their own.

Two vector spaces, because the clrec model pools *un-normalised* item vectors into a user:

* **history space** (:meth:`EmbeddingModel.history_vectors`): what a user's history pools and
  what :meth:`EmbeddingModel.embed_items` gives a new item; the service persists API items in it;
* **index space** (:meth:`EmbeddingModel.item_vectors`, :meth:`EmbeddingModel.index_vectors`):
  what scores are dot products in, what the ANN index holds.

A user is a :class:`UserState`: the model's own row (a trained user) or none (a user the
model never saw), plus what their history contributes. :meth:`EmbeddingModel.add_event` folds
one new interaction in at O(D) for the pooled part, so a user's next recommendation follows
what they just did; :meth:`EmbeddingModel.user_vector` and :meth:`EmbeddingModel.score_user` read
the state. Item rows at or beyond the model's ``n_items`` (or ``None``) name items the model
never saw (added later from their content): they are pooled by their vector alone and have
no prior.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.encoders.featurizer import ItemFeaturizer

Similarity = Literal["cosine", "dot"]
# what a model's explanations can split: "history" — a trained user's score over their history
# items (a new user's always splits); "content" — the item's side over its content modalities
ExplanationKind = Literal["history", "content"]
# recency weights are kept relative to a running scale; below this the scale is folded back
# into the weights (amortised O(1) per event), so nothing underflows
_MIN_SCALE = 1e-100
# a counterfactual history whose remaining weight is below this share of the whole holds
# nothing but the rounding residue of the subtraction
_EMPTY_SHARE = 1e-9


@dataclass
class UserState:
    """What a user's vector and prior are built from, kept so each event costs O(D).

    ``items`` / ``weights`` are the user's training history as model item rows with weights
    relative to ``scale`` (recency decay multiplies ``scale`` instead of every past weight),
    ``new_items`` / ``new_weights`` the same for later events (repeated rows add up): the
    prior's input. ``pooled`` / ``weight`` are the weighted sum of the history's
    vectors and its total weight, relative to ``scale`` too; a trained user's are computed at
    their first event (None until then: the trained vector serves). ``keys`` are the items
    pooled (without recency an item counts once). ``fixed`` is a vector the history does not
    move (a trained user of a model whose users are ID vectors). ``vector`` caches the
    index-space vector.
    """

    user: int | None
    id_part: np.ndarray  # (D,) float64: the user's ID vector (zeros for a new user)
    items: np.ndarray  # (H,) int64 model item rows
    weights: np.ndarray  # (H,) float64 relative weights
    new_items: list[int] = field(default_factory=list)
    new_weights: list[float] = field(default_factory=list)
    pooled: np.ndarray | None = None  # (D,) float64: Σ w̃ · history vector
    weight: float = 0.0  # Σ w̃
    scale: float = 1.0  # actual weights = scale · w̃
    keys: set[int] | None = None
    fixed: np.ndarray | None = None  # (D,) index space
    vector: np.ndarray | None = None  # (D,) index space, cached


@dataclass(frozen=True)
class Attribution:
    """One score split into the user's ID part and one term per history item: ``score =
    user + history.sum() + other`` (exact for pooled-history models: the pooled mean and the
    EASE prior are both sums over the history). ``other`` is the history the model does not
    know as items (items added after training, profile texts): one term for all of it."""

    score: float
    user: float  # the ID part's term
    items: np.ndarray  # (H,) model item rows of the history
    history: np.ndarray  # (H,) each history item's term
    other: float = 0.0


@runtime_checkable
class EmbeddingModel(Protocol):
    """What serving needs from a model that ranks by ``user · item`` vectors."""

    name: str

    @property
    def n_users(self) -> int:
        """Users the model was trained with (rows of :meth:`user_vectors`)."""

    @property
    def n_items(self) -> int:
        """Items the model knows (rows of :meth:`item_vectors`)."""

    @property
    def similarity(self) -> Similarity:
        """``cosine``: index-space vectors are unit length; ``dot``: raw dot products."""

    @property
    def has_prior(self) -> bool:
        """Whether :meth:`score` adds more than the scaled dot product (so the top of an ANN
        search by dot product must be re-scored)."""

    @property
    def featurizer(self) -> ItemFeaturizer | None:
        """The fitted item featuriser (None: the model reads no content)."""

    @property
    def explanations(self) -> frozenset[ExplanationKind]:
        """What :meth:`explain` and :meth:`explain_item` can split beyond the ID parts."""

    def item_vectors(self) -> np.ndarray:
        """``(I, D)`` float32 index-space item vectors."""

    def history_vectors(self) -> np.ndarray:
        """``(I, D)`` float32 history-space item vectors."""

    def index_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """History-space ``(n, D)`` → index space ``(n, D)`` float32."""

    def user_vectors(self) -> np.ndarray:
        """``(U, D)`` float32 index-space vectors of the trained users, as trained."""

    def embed_items(self, content: Mapping[str, np.ndarray]) -> np.ndarray:
        """History-space vectors ``(n, D)`` of new items from their content matrices (what
        :meth:`ItemFeaturizer.transform` gives); refused by a model that reads no content."""

    def user_state(self, user: int | None) -> UserState:
        """A trained user (their row) as trained, or a new user (None) with no history."""

    def add_event(self, state: UserState, item: int | None, vector: np.ndarray) -> None:
        """Fold one interaction, newer than all before, into ``state``: ``item`` is the model
        row (None or ≥ ``n_items``: an item the model never saw), ``vector`` its history-space
        vector ``(D,)``."""

    def user_vector(self, state: UserState) -> np.ndarray:
        """The user's index-space vector ``(D,)``."""

    def score_user(self, state: UserState, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The model's scores ``(C,)`` of the user over items with index-space ``vectors``
        ``(C, D)`` and model rows ``items`` ``(C,)`` (-1 or ≥ ``n_items``: no prior)."""

    def explain(self, state: UserState, vector: np.ndarray, item: int) -> Attribution:
        """The user's score of one item (index-space ``vector`` ``(D,)``, model row ``item``,
        -1 for an item the model does not know) split into the user's ID part and one term
        per history item; a user the history does not move is all ID part."""

    def explain_item(
        self,
        state: UserState,
        vector: np.ndarray,
        item: int,
        content: Mapping[str, np.ndarray] | None,
    ) -> dict[str, float]:
        """The same score split over the item's side (history-space ``vector`` ``(D,)``,
        model row ``item``): ``"id"`` (the item's vector apart from its content), one term per
        content modality when ``content`` (the featuriser's ``(1, d_m)`` matrices) is given
        and the model reads content, and ``"prior"`` for a model with one; they sum to the
        score."""

    def user_state_without(self, state: UserState, item: int) -> UserState:
        """A copy of ``state`` whose history never held model row ``item`` (the
        counterfactual user of an explanation; every other history entry keeps its
        weight)."""


def as_numpy(tensor: Tensor) -> np.ndarray:
    """A float32 C-contiguous numpy copy of ``tensor`` (on the CPU)."""
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` ``(n, D)`` scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)  # (n, 1)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class PooledUsers:
    """Users as ``ID vector + weighted mean of their history's vectors`` (then normalised for
    cosine models), built from the training history and extended event by event.

    ``id_table`` ``(U, D)``: the trained users' ID vectors (None: users are their trained
    vectors only, and the history moves new users alone). ``history`` ``(U, I)``: each trained
    user's training items with their weights (recency weights, or 1). ``half_life``: the k-th
    most recent item weighs ``0.5 ** (k / half_life)`` (None: all weigh 1 and an item counts
    once). ``trained`` ``(U, D)``: the trained users' index-space vectors, returned as they are
    until a user's first event.
    """

    def __init__(
        self,
        *,
        history_vectors: np.ndarray,
        trained: np.ndarray,
        history: sp.csr_matrix,
        id_table: np.ndarray | None,
        half_life: float | None,
        similarity: Similarity,
    ) -> None:
        self.history_vectors = history_vectors  # (I, D) float32
        self.trained = trained  # (U, D) float32
        self.history = history  # (U, I) CSR float32
        self.id_table = id_table  # (U, D) float32 or None
        self.decay = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
        self.similarity = similarity

    def state(self, user: int | None) -> UserState:
        """A trained user with their training history (O(1): views), or a new user."""
        dim = self.history_vectors.shape[1]
        if user is None:
            return UserState(None, np.zeros(dim), np.zeros(0, dtype=np.int64), np.zeros(0))
        if not 0 <= user < self.trained.shape[0]:
            raise ClrecError(f"user {user} is outside 0..{self.trained.shape[0] - 1}")
        start, stop = self.history.indptr[user], self.history.indptr[user + 1]
        return UserState(
            user,
            np.zeros(dim) if self.id_table is None else self.id_table[user].astype(np.float64),
            self.history.indices[start:stop].astype(np.int64),  # (H,)
            self.history.data[start:stop].astype(np.float64),  # (H,)
            fixed=self.trained[user] if self.id_table is None else None,
            vector=self.trained[user],
        )

    def add(self, state: UserState, item: int | None, vector: np.ndarray) -> None:
        """Fold one newer interaction in: O(D) for the pooled part (a trained user's first
        event also pools their training history once)."""
        state.pooled, state.weight, state.keys = self._pooled(state)
        key = -1 if item is None or item >= self.history_vectors.shape[0] else int(item)
        if self.decay == 1.0 and key >= 0 and key in state.keys:
            return  # without recency an item counts once, as in training
        state.scale *= self.decay
        if state.scale < _MIN_SCALE:  # fold the scale back into the relative weights
            state.pooled = state.pooled * state.scale
            state.weight *= state.scale
            state.weights = state.weights * state.scale
            state.new_weights = [w * state.scale for w in state.new_weights]
            state.scale = 1.0
        relative = 1.0 / state.scale  # the new interaction's actual weight is 1
        state.pooled = state.pooled + relative * np.asarray(vector, dtype=np.float64)
        state.weight += relative
        if key >= 0:
            state.keys.add(key)
            state.new_items.append(key)
            state.new_weights.append(relative)
        state.vector = None

    def _pooled(self, state: UserState) -> tuple[np.ndarray, float, set[int]]:
        """``state``'s pooled sum ``(D,)``, total weight and pooled rows: as kept, or (a
        trained user before their first event) pooled from the training history."""
        if state.pooled is not None and state.keys is not None:
            return state.pooled, state.weight, state.keys
        rows = self.history_vectors[state.items].astype(np.float64)  # (H, D)
        return state.weights @ rows, float(state.weights.sum()), set(state.items.tolist())

    def vector(self, state: UserState) -> np.ndarray:
        """``(D,)`` index-space vector of ``state``."""
        if state.fixed is not None:
            return state.fixed
        if state.vector is None:
            vector = state.id_part.copy()  # (D,)
            if state.pooled is not None and state.weight > 0:
                vector += state.pooled / state.weight  # the scale cancels in the mean
            if self.similarity == "cosine":
                vector = normalized(vector[None, :])[0]
            state.vector = np.asarray(vector, dtype=np.float32)
        return state.vector

    def parts(self, state: UserState) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The user's vector as a sum: the history rows ``(H,)`` (each once), each row's
        term of the pooled mean ``(H, D)``, the term ``(D,)`` of what the history holds that
        the model does not know as items (added items, profile texts; zeros without), and
        the factor applied to the sum (``1 / ‖sum‖`` for cosine models, else 1).
        ``vector(state)`` equals ``factor · (id_part + terms.sum(0) + other)``."""
        unique, summed = self.history_weights(state)  # (H,), (H,)
        total_weight = float(summed.sum())
        if state.pooled is not None and state.weight > 0:  # may hold more than model items
            total_weight = state.weight * state.scale
        share = summed / total_weight if total_weight > 0 else summed  # (H,)
        terms = share[:, None] * self.history_vectors[unique].astype(np.float64)  # (H, D)
        other = np.zeros_like(state.id_part)  # (D,)
        if state.pooled is not None and state.weight > 0:
            other = state.pooled / state.weight - terms.sum(axis=0)
            other[np.abs(other) < 1e-12] = 0.0
        factor = 1.0
        if self.similarity == "cosine":
            whole = state.id_part + terms.sum(axis=0) + other  # (D,)
            factor = 1.0 / max(float(np.linalg.norm(whole)), 1e-12)
        return unique, terms, other, factor

    def history_weights(self, state: UserState) -> tuple[np.ndarray, np.ndarray]:
        """The history's model rows ``(H,)``, each once (sorted), and their summed actual
        weights ``(H,)`` (a repeated row adds up)."""
        rows, weights = self.prior_input(state)  # (n,), (n,)
        unique, inverse = np.unique(rows, return_inverse=True)
        return unique, np.bincount(inverse, weights=weights.astype(np.float64))

    def without(self, state: UserState, row: int) -> UserState:
        """A copy of ``state`` whose history never held model row ``row`` (the
        counterfactual user): its entries leave the pooled sum and the prior's input; the ID
        part and every other entry keep their weights, what the history holds beyond the
        model's items (added items, profile texts) included. Without recency weights this is
        the user who posted the same events without ``row``; with them, replaying those
        events would also make each older item one step more recent."""
        pooled, weight, keys = self._pooled(state)  # relative weights, as ``state``'s
        keep = state.items != row  # (H,)
        events = list(zip(state.new_items, state.new_weights, strict=True))
        new = [(i, w) for i, w in events if i != row]
        removed = float(state.weights[~keep].sum()) + sum(w for i, w in events if i == row)
        if removed > 0:
            pooled = pooled - removed * self.history_vectors[row].astype(np.float64)  # (D,)
            whole, weight = weight, weight - removed
            if not keep.any() and not new and weight <= _EMPTY_SHARE * whole:
                pooled, weight = np.zeros_like(pooled), 0.0  # nothing left but rounding
        return UserState(
            state.user,
            state.id_part.copy(),
            state.items[keep],
            state.weights[keep],
            [i for i, _ in new],
            [w for _, w in new],
            pooled=pooled,
            weight=weight,
            scale=state.scale,
            keys=keys - {row},
            fixed=state.fixed,
        )

    @staticmethod
    def prior_input(state: UserState) -> tuple[np.ndarray, np.ndarray]:
        """The prior's input: model item rows ``(H,)`` and their actual weights ``(H,)``."""
        items = np.concatenate([state.items, np.asarray(state.new_items, dtype=np.int64)])
        weights = np.concatenate([state.weights, np.asarray(state.new_weights, dtype=np.float64)])
        return items, (weights * state.scale).astype(np.float32)


class PooledUserModel:
    """The parts of :class:`EmbeddingModel` that BPR-MF, LightGCN and clrec share: the final
    user and item vectors a fit or load sets, and users as :class:`PooledUsers` (each model
    says how in :meth:`pooled_users`)."""

    _user_final: Tensor | None  # (U, D) index space
    _item_final: Tensor | None  # (I, D) index space

    def _finals(self) -> tuple[Tensor, Tensor]:
        if self._user_final is None or self._item_final is None:
            raise ClrecError(f"{type(self).__name__} has no vectors yet; call fit first")
        return self._user_final, self._item_final

    @property
    def n_users(self) -> int:
        return int(self._finals()[0].shape[0])

    @property
    def n_items(self) -> int:
        return int(self._finals()[1].shape[0])

    def item_vectors(self) -> np.ndarray:
        return as_numpy(self._finals()[1])

    def user_vectors(self) -> np.ndarray:
        return as_numpy(self._finals()[0])

    def pooled_users(self) -> PooledUsers:
        """The model's users: its trained vectors, ID table and training history."""
        raise NotImplementedError

    def user_state(self, user: int | None) -> UserState:
        return self.pooled_users().state(user)

    def add_event(self, state: UserState, item: int | None, vector: np.ndarray) -> None:
        self.pooled_users().add(state, item, vector)

    def user_vector(self, state: UserState) -> np.ndarray:
        return self.pooled_users().vector(state)

    @property
    def explanations(self) -> frozenset[ExplanationKind]:
        """BPR-MF and LightGCN: trained users are ID vectors (only a new user's score splits
        over their history) and items are ID vectors."""
        return frozenset()

    def explain(self, state: UserState, vector: np.ndarray, item: int) -> Attribution:
        """The dot product's split (the score of BPR-MF and LightGCN); models with more in
        their score (the clrec model's temperature and prior) extend it."""
        del item  # a plain dot product reads only the vector
        x = np.asarray(vector, dtype=np.float64)  # (D,)
        if state.fixed is not None:
            score = float(np.asarray(state.fixed, np.float64) @ x)
            return Attribution(score, score, np.zeros(0, np.int64), np.zeros(0))
        rows, terms, other, factor = self.pooled_users().parts(state)  # (H,), (H, D), (D,)
        user = factor * float(state.id_part @ x)
        history = factor * (terms @ x)  # (H,)
        rest = factor * float(other @ x)
        return Attribution(user + float(history.sum()) + rest, user, rows, history, rest)

    def explain_item(
        self,
        state: UserState,
        vector: np.ndarray,
        item: int,
        content: Mapping[str, np.ndarray] | None,
    ) -> dict[str, float]:
        """A plain dot product with an ID vector (history space = index space here): all of
        the score is the item's ID part."""
        del item, content
        user = np.asarray(self.user_vector(state), np.float64)  # (D,)
        return {"id": float(user @ np.asarray(vector, np.float64))}

    def user_state_without(self, state: UserState, item: int) -> UserState:
        return self.pooled_users().without(state, item)


__all__ = [
    "Attribution",
    "EmbeddingModel",
    "ExplanationKind",
    "PooledUserModel",
    "PooledUsers",
    "Similarity",
    "UserState",
    "as_numpy",
    "normalized",
]
