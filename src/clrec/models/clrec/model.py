"""The clrec model as a :class:`~clrec.models.base.Recommender` and an
:class:`~clrec.models.embedding.EmbeddingModel`: fit, score, serve, save and load.

Scores are ``sim(u, i) / τ`` (cosine or dot similarity of the final vectors) plus, with the
EASE prior, ``w · prior(u, i) / σ``: :meth:`ClrecRecommender.fused_scores` is the one place
that formula lives, used by batch scoring (evaluation) and by a single user's state (serving,
real-time users) alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from clrec.data.schema import Dataset
from clrec.encoders.featurizer import ItemFeaturizer
from clrec.errors import ClrecError
from clrec.models.base import Recommender, Validator
from clrec.models.clrec.config import NOT_DECISIVE, ClrecConfig
from clrec.models.clrec.network import ClrecNetwork, history_matrix
from clrec.models.clrec.objective import TrainingPlan
from clrec.models.clrec.prior import (
    SearchBudget,
    check_prior_size,
    choose_weight,
    fit_prior,
    history_scores,
)
from clrec.models.ease import EASE
from clrec.models.embedding import (
    Attribution,
    ExplanationKind,
    PooledUserModel,
    PooledUsers,
    Similarity,
    UserState,
    as_numpy,
    normalized,
)
from clrec.models.fusion import ModalityFusion
from clrec.models.mf import resolve_device
from clrec.training.loop import LoopConfig, run_training

Scores = TypeVar("Scores", np.ndarray, Tensor)
WEIGHTS_FILE = "weights.pt"
HISTORY_FILE = "history.npz"


class ClrecRecommender(PooledUserModel, Recommender):
    """Contrastive fusion of pretrained content with collaborative signals (see
    :mod:`clrec.models.clrec`)."""

    name = "clrec"

    def __init__(self, **params: Any) -> None:
        self.config = ClrecConfig.from_params(params)
        self.network: ClrecNetwork | None = None
        self.featurizer_: ItemFeaturizer | None = None
        self.prior: EASE | None = None
        self.prior_scale = 0.0  # w: weight of the normalised prior scores
        self.prior_norm = 1.0  # 1 / σ of the prior's scores
        self.prior_search: list[dict[str, float]] = []
        self.best_epoch = 0
        self.stopped_by_time = False  # the time limit ended the last fit early
        self._history: list[dict[str, float]] = []
        self._user_final: Tensor | None = None  # (U, D) index space, cached for scoring
        self._item_final: Tensor | None = None  # (I, D) index space
        self._item_pooled: Tensor | None = None  # (I, D) history space
        self._train_history: sp.csr_matrix | None = None  # (U, I) what users pool
        self._network_state: dict[str, Tensor] = {}  # a loaded model's weights
        self._fusion: ModalityFusion | None = None  # a loaded model's content fusion
        self._users: PooledUsers | None = None

    @property
    def history(self) -> list[dict[str, float]]:
        return self._history

    # ------------------------------------------------------------------ training
    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        config = self.config
        device = resolve_device(config.device)
        started = time.monotonic()
        previous_threads = torch.get_num_threads()
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        try:
            content: dict[str, np.ndarray] = {}
            self.featurizer_ = None
            if config.content.modalities:
                self.featurizer_, content = ItemFeaturizer.fit_transform(train, config.content)
                if not content:  # the data offers none of what was asked for
                    self.featurizer_ = None
            if config.prior == "ease":
                check_prior_size(train.n_items)
            self.network = ClrecNetwork(config, train.n_users, train.n_items, content).to(device)
            self._train_history = history_matrix(train, config)
            self.network.attach_graph(self._train_history, device)
            plan = TrainingPlan(config, self.network, train, device)
            result = run_training(
                self.network,
                plan.epoch_batches,
                plan.batch_loss,
                self._loop_config(),
                validate=None if validator is None else partial(self._validate, validator),
                fingerprint=self._fingerprint(train),
            )
            self._history = result.history
            self.best_epoch = result.best_epoch
            self.stopped_by_time = result.stopped_by_time
            self.refresh()
            if config.prior == "ease":
                limit = config.time_limit_minutes
                deadline = None if limit is None else started + 60 * limit
                budget = SearchBudget(config.progress, deadline)
                self._fuse_prior(train, self._train_history, validator, budget)
        finally:
            torch.set_num_threads(previous_threads)
        return self

    def _fuse_prior(
        self,
        train: Dataset,
        history: sp.csr_matrix,
        validator: Validator | None,
        budget: SearchBudget,
    ) -> None:
        """Fit the EASE prior on the pooled history, then choose its weight on validation
        (both within the fit's time limit)."""
        fitted = fit_prior(self.config, train, history, validator, budget)
        if fitted is None:
            self.prior, self.prior_scale, self.prior_search = None, 0.0, []
            return
        self.prior, self.prior_norm, self.prior_search = fitted
        ndcg_with = None if validator is None else partial(self._ndcg_with_prior, validator)
        self.prior_scale, searched = choose_weight(self.config, ndcg_with, budget)
        self.prior_search += searched

    def _ndcg_with_prior(self, validator: Validator, weight: float) -> float:
        """Validation NDCG@10 of the model with the prior at ``weight``."""
        self.prior_scale = weight
        return validator(self).get("ndcg@10", 0.0)

    def _loop_config(self) -> LoopConfig:
        config = self.config
        return LoopConfig(
            epochs=config.epochs,
            lr=config.lr,
            optimizer="lazy_adamw" if config.sparse_updates else "adamw",
            weight_decay=config.weight_decay,
            eval_every=config.eval_every,
            patience=config.patience,
            time_limit_minutes=config.time_limit_minutes,
            progress=config.progress,
            checkpoint_dir=config.checkpoint_dir,
            log_dir=config.log_dir,
        )

    def _fingerprint(self, train: Dataset) -> dict[str, Any]:
        """What decides the result; resuming with other threads, logs or bars is fine."""
        decisive = {k: v for k, v in self.config.to_params().items() if k not in NOT_DECISIVE}
        return {
            "params": json.dumps(decisive, sort_keys=True, default=str),
            "users": train.n_users,
            "items": train.n_items,
            "pairs": len(train.interactions),
        }

    def _validate(self, validator: Validator) -> dict[str, float]:
        self.refresh()
        return validator(self)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the cached user and item vectors from the network."""
        network = self._network()
        network.eval()
        users, items, _, _ = network.embeddings()
        self._user_final = self._index_space(users.detach())
        self._item_final = self._index_space(items.detach())
        self._item_pooled = items.detach()
        self._users = None

    def _index_space(self, vectors: Tensor) -> Tensor:
        if self.config.similarity == "cosine":
            return nn.functional.normalize(vectors, dim=1)
        return vectors

    # ------------------------------------------------------------------ scoring
    def fused_scores(self, similarities: Scores, prior: Scores | None) -> Scores:
        """The model's score from index-space dot products and the prior's scores (same
        shape): ``sim / τ + w · prior / σ`` (the logits the model was trained on, plus the
        prior)."""
        scores = similarities / self.config.temperature
        if prior is not None and self.prior is not None and self.prior_scale:
            scores = scores + (self.prior_scale * self.prior_norm) * prior
        return scores

    @torch.no_grad()
    def score(self, users: np.ndarray) -> np.ndarray:
        users_final, items_final = self._finals()
        rows = np.asarray(users, dtype=np.int64)
        index = torch.as_tensor(rows, device=users_final.device)
        similarities = users_final[index] @ items_final.T  # (B, I)
        prior = None
        if self.prior is not None and self.prior_scale:
            prior = torch.from_numpy(self.prior.score(rows)).to(similarities.device)  # (B, I)
        scores = self.fused_scores(similarities, prior)
        return scores.to(device="cpu", dtype=torch.float32).numpy()

    # ------------------------------------------------------------------ EmbeddingModel

    @property
    def similarity(self) -> Similarity:
        return self.config.similarity

    @property
    def has_prior(self) -> bool:
        return self.prior is not None and bool(self.prior_scale)

    @property
    def featurizer(self) -> ItemFeaturizer | None:
        return self.featurizer_

    @property
    def explanations(self) -> frozenset[ExplanationKind]:
        """History terms when users pool their history (no graph propagation on top);
        content terms when the model reads content."""
        kinds: set[ExplanationKind] = set()
        if self.config.use_history and self.config.n_layers == 0:
            kinds.add("history")
        if self.featurizer_ is not None:
            kinds.add("content")
        return frozenset(kinds)

    def history_vectors(self) -> np.ndarray:
        if self._item_pooled is None:
            raise ClrecError("the clrec model has no vectors yet; call fit first")
        return as_numpy(self._item_pooled)

    def index_vectors(self, vectors: np.ndarray) -> np.ndarray:
        if self.config.similarity == "cosine":
            return normalized(vectors)
        return np.asarray(vectors, dtype=np.float32)

    def embed_items(self, content: Mapping[str, np.ndarray]) -> np.ndarray:
        """History-space vectors ``(n, D)`` from content alone (a brand-new item, or a new
        user's profile text read as an item): ``content[m]`` is ``(n, d_m)`` for the model's
        modalities (NaN rows or a missing key: the item lacks that modality)."""
        return np.asarray(self._content_terms(content).sum(axis=1), dtype=np.float32)

    @torch.no_grad()
    def _content_terms(self, content: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each modality's term ``(n, M, D)`` of the fused content vectors (modalities in the
        fusion's order; their sum is :meth:`embed_items`)."""
        fusion = self._content_fusion()
        unknown = sorted(set(content) - set(fusion.names))
        if unknown:
            raise ClrecError(
                f"the model has no content modality {', '.join(unknown)}; "
                f"it reads: {', '.join(fusion.names)}"
            )
        sizes = {len(matrix) for matrix in content.values()}
        if len(sizes) != 1:
            raise ClrecError("embed_items needs the same number of rows in every modality")
        n = sizes.pop()
        features: dict[str, Tensor] = {}
        present: dict[str, Tensor] = {}
        for name in fusion.names:
            width = fusion.in_dims[name]
            given = content.get(name)
            matrix = (
                torch.full((n, width), torch.nan)
                if given is None
                else torch.as_tensor(np.asarray(given, dtype=np.float32))
            )
            if matrix.shape != (n, width):
                raise ClrecError(
                    f"modality {name!r} needs {width}-d vectors, got {tuple(matrix.shape)}"
                )
            present[name] = ~torch.isnan(matrix).any(dim=1)  # (n,)
            features[name] = torch.nan_to_num(matrix, nan=0.0)  # (n, d_m)
        fusion.eval()
        return as_numpy(fusion.parts(features, present))  # (n, M, D)

    def score_user(self, state: UserState, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        similarities = np.asarray(vectors, dtype=np.float32) @ self.user_vector(state)  # (C,)
        prior = None
        if self.prior is not None and self.prior_scale:
            history, weights = self.pooled_users().prior_input(state)
            prior = history_scores(self.prior, history, weights, np.asarray(items, np.int64))
        return np.asarray(self.fused_scores(similarities, prior), dtype=np.float32)

    def explain(self, state: UserState, vector: np.ndarray, item: int) -> Attribution:
        """The score of ``item`` (its index-space ``vector`` ``(D,)``) for ``state``, split
        exactly into the ID part and one term per history item: ``sim / τ`` is linear in the
        user vector ``factor · (id + Σ_h a_h v_h)``, and the prior is ``Σ_h w_h B[h, item]``.
        A user whose vector the history does not move has only the prior's history terms."""
        users = self.pooled_users()
        dot = super().explain(state, vector, item)  # the similarity's split
        tau = self.config.temperature
        rows, user, history, other = dot.items, dot.user / tau, dot.history / tau, dot.other / tau
        if self.prior is not None and self.prior_scale and 0 <= item < self.n_items:
            assert self.prior.weights is not None
            unique, summed = users.history_weights(state)  # sorted, as ``rows``
            if not len(rows):  # a user the history does not move: the prior still reads it
                rows, history = unique, np.zeros(len(unique))
            known = rows < self.prior.weights.shape[0]
            prior = np.zeros(len(rows))
            prior[known] = summed[known] * self.prior.weights[rows[known], item]
            history = history + (self.prior_scale * self.prior_norm) * prior
        return Attribution(user + float(history.sum()) + other, user, rows, history, other)

    def explain_item(
        self,
        state: UserState,
        vector: np.ndarray,
        item: int,
        content: Mapping[str, np.ndarray] | None,
    ) -> dict[str, float]:
        """``sim / τ`` is linear in the history-space item vector ``id + Σ_m a_m h_m`` (the
        fusion's weighted modality terms; divided by its norm for cosine models), so it
        splits into the ID part and one term per modality; the prior is its own term."""
        user = self.user_vector(state).astype(np.float64)  # (D,) index space
        whole = np.asarray(vector, dtype=np.float64)  # (D,) history space
        factor = 1.0 / self.config.temperature
        if self.config.similarity == "cosine":
            factor /= max(float(np.linalg.norm(whole)), 1e-12)
        parts: dict[str, float] = {}
        rest = whole
        if content is not None and self.featurizer_ is not None:
            terms = self._content_terms(content)[0].astype(np.float64)  # (M, D)
            for name, term in zip(self._content_fusion().names, terms, strict=True):
                parts[name] = factor * float(user @ term)
            rest = whole - terms.sum(axis=0)
        split = {"id": factor * float(user @ rest), **parts}
        if self.prior is not None and self.prior_scale and 0 <= item < self.n_items:
            history, weights = self.pooled_users().prior_input(state)
            prior = history_scores(self.prior, history, weights, np.asarray([item], np.int64))
            split["prior"] = float((self.prior_scale * self.prior_norm) * prior[0])
        return split

    def pooled_users(self) -> PooledUsers:
        if self._users is None:
            if self._train_history is None:
                raise ClrecError("the clrec model has no training history; call fit first")
            follows = self.config.use_history and self.config.n_layers == 0
            self._users = PooledUsers(
                history_vectors=self.history_vectors(),
                trained=self.user_vectors(),
                history=self._train_history,
                id_table=as_numpy(self._user_ids()) if follows else None,
                half_life=self.config.history_half_life,
                similarity=self.config.similarity,
            )
        return self._users

    def _user_ids(self) -> Tensor:
        """The trained users' ID vectors ``(U, D)``."""
        if self.network is not None:
            return self.network.user_table.detach()
        return self._network_state["user_table"]

    def _content_fusion(self) -> ModalityFusion:
        """The trained content fusion (rebuilt from the saved weights after :meth:`load`)."""
        if self.network is not None and self.network.fusion is not None:
            return self.network.fusion
        if self._fusion is None:
            featurizer = self.featurizer_
            if featurizer is None:
                raise ClrecError("this clrec model reads no content, so it cannot embed items")
            fusion = ModalityFusion(
                {name: featurizer.dims[name] for name in featurizer.names},
                self.config.embedding_size,
                kind=self.config.fusion,
                hidden=self.config.fusion_hidden,
                modality_dropout=self.config.modality_dropout,
            )
            prefix = "fusion."
            saved = self._network_state.items()
            fusion.load_state_dict({k[len(prefix) :]: v for k, v in saved if k.startswith(prefix)})
            self._fusion = fusion
        return self._fusion

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        users_final, items_final = self._finals()
        if self._item_pooled is None or self._train_history is None:
            raise ClrecError("clrec.save called before fit")
        state = self._network_state if self.network is None else self.network.state_dict()
        out = self._start_save(
            directory,
            params=self.config.to_params(),
            best_epoch=self.best_epoch,
            stopped_by_time=self.stopped_by_time,
            history=self._history,
            prior_scale=self.prior_scale,
            prior_norm=self.prior_norm,
            prior_search=self.prior_search,
        )
        if self.featurizer_ is not None:
            self.featurizer_.save(out)
        if self.prior is not None:
            self.prior.save(out / "prior")
        sp.save_npz(out / HISTORY_FILE, self._train_history)
        torch.save(
            {
                "network": {k: v.cpu() for k, v in state.items()},
                "user_final": users_final.cpu(),
                "item_final": items_final.cpu(),
                "item_pooled": self._item_pooled.cpu(),
            },
            out / WEIGHTS_FILE,
        )
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        root = Path(directory)
        meta = cls._read_manifest(root)
        model = cls.from_config(meta["params"])
        if not (root / HISTORY_FILE).is_file():
            raise ClrecError(
                f"{root}: this clrec model was saved by an older clrec (no {HISTORY_FILE}); "
                "train it again"
            )
        device = resolve_device(model.config.device)
        state = torch.load(root / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model._user_final = state["user_final"].to(device)
        model._item_final = state["item_final"].to(device)
        model._item_pooled = state["item_pooled"].to(device)
        model._network_state = dict(state["network"])
        model._train_history = sp.load_npz(root / HISTORY_FILE).tocsr()
        model.best_epoch = int(meta.get("best_epoch", 0))
        model.stopped_by_time = bool(meta.get("stopped_by_time", False))
        model._history = list(meta.get("history", []))
        model.prior_scale = float(meta.get("prior_scale", 0.0))
        model.prior_norm = float(meta.get("prior_norm", 1.0))
        model.prior_search = list(meta.get("prior_search", []))
        if (root / "prior").is_dir():
            model.prior = EASE.load(root / "prior")
        if (root / "featurizer.json").is_file():
            model.featurizer_ = ItemFeaturizer.load(root)
        return model

    def _network(self) -> ClrecNetwork:
        if self.network is None:
            raise ClrecError("clrec model has no network yet; call fit first")
        return self.network
