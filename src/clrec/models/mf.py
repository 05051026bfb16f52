"""Matrix factorisation trained with BPR, and the base every dot-product embedding model shares.

:class:`EmbeddingRecommender` owns what BPR-MF and LightGCN have in common: one user and one
item embedding table, seeded initialisation, the call into the shared trainer, scoring by
``user · item`` of cached final embeddings, and save / load. A subclass says how the final
embeddings come from the tables (:meth:`~EmbeddingRecommender.final_embeddings`) and what
one batch's loss is (:meth:`~EmbeddingRecommender.batch_loss`), built on
:meth:`~EmbeddingRecommender.ranking_loss` (BPR + L2, plus the optional APR adversarial term).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.nn import functional

from clrec.data.schema import Dataset
from clrec.encoders.featurizer import ItemFeaturizer
from clrec.errors import ClrecError
from clrec.losses.bpr import BPRLoss
from clrec.models.base import Recommender, Validator
from clrec.models.embedding import (
    PooledUserModel,
    PooledUsers,
    Similarity,
    UserState,
)
from clrec.training.adversarial import adversarial_loss, check_adversarial
from clrec.training.sampling import NegativeSampler
from clrec.training.trainer import TrainerConfig, train_pairwise


def resolve_device(device: str | None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ClrecError(f"unknown torch device {device!r} ({err})") from None


class EmbeddingTables(nn.Module):
    """The trainable layer-0 embeddings: ``user`` (U, D) and ``item`` (I, D)."""

    def __init__(self, user: Tensor, item: Tensor) -> None:
        super().__init__()
        self.user = nn.Parameter(user)  # (U, D)
        self.item = nn.Parameter(item)  # (I, D)

    @classmethod
    def random(cls, n_users: int, n_items: int, dim: int, std: float, seed: int) -> EmbeddingTables:
        """Normal(0, std²) tables drawn from a private generator (global RNG untouched)."""
        generator = torch.Generator().manual_seed(seed)
        user = torch.randn(n_users, dim, generator=generator) * std
        item = torch.randn(n_items, dim, generator=generator) * std
        return cls(user, item)


class EmbeddingRecommender(PooledUserModel, Recommender):
    """Scores ``user · item`` of learned embeddings; trained with BPR by the shared trainer.

    As an :class:`~clrec.models.embedding.EmbeddingModel` its users are ID vectors: a trained
    user's vector does not follow later events, and a user it never saw is the mean of their
    items' vectors. It reads no content, so it cannot embed new items.

    Hyper-parameters (all named, all saved): ``embedding_size`` D; Adam ``lr``; L2
    ``reg_weight`` (see :class:`~clrec.losses.bpr.BPRLoss`); ``batch_size`` triples per step;
    at most ``epochs`` epochs; validation every ``eval_every`` epochs; stop after
    ``patience`` validations without a better ``ndcg@10`` (0 = never), or after the first
    epoch that ends past ``time_limit_minutes`` of training (None = no limit); ``init_std`` of
    the normal initialisation; ``seed`` for initialisation and sampling; ``device`` (None → CUDA
    if available, else CPU); ``num_threads`` torch CPU threads while fitting (None → leave
    torch's setting); ``progress`` bars. ``adversarial_eps`` > 0 turns on adversarial
    training (APR, :mod:`clrec.training.adversarial`): every batch also pays
    ``adversarial_weight`` × the BPR loss of its scored vectors moved ``adversarial_eps``
    (per row) in the direction that increases that loss; 0 = off, training unchanged.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        lr: float,
        reg_weight: float,
        batch_size: int,
        epochs: int,
        eval_every: int,
        patience: int,
        time_limit_minutes: float | None,
        init_std: float,
        seed: int,
        device: str | None,
        num_threads: int | None,
        progress: bool,
        adversarial_eps: float,
        adversarial_weight: float,
    ) -> None:
        if embedding_size < 1:
            raise ClrecError(f"embedding_size must be at least 1, got {embedding_size}")
        if reg_weight < 0:
            raise ClrecError(f"reg_weight must be ≥ 0, got {reg_weight}")
        if not init_std > 0:
            raise ClrecError(f"init_std must be positive, got {init_std}")
        if num_threads is not None and num_threads < 1:
            raise ClrecError(f"num_threads must be at least 1, got {num_threads}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ClrecError(f"seed must be an integer ≥ 0, got {seed!r}")
        check_adversarial(adversarial_eps, adversarial_weight)
        self.trainer_config = TrainerConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            eval_every=eval_every,
            patience=patience,
            progress=progress,
            time_limit_minutes=time_limit_minutes,
        )
        self.embedding_size = embedding_size
        self.lr = lr
        self.reg_weight = reg_weight
        self.batch_size = batch_size
        self.epochs = epochs
        self.eval_every = eval_every
        self.patience = patience
        self.time_limit_minutes = time_limit_minutes
        self.init_std = init_std
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.progress = progress
        self.adversarial_eps = adversarial_eps
        self.adversarial_weight = adversarial_weight
        self.loss = BPRLoss(reg_weight)
        self._ranking_only = BPRLoss()  # the adversary attacks the ranking part, not L2
        self.tables: EmbeddingTables | None = None
        self.best_epoch = 0
        self.stopped_by_time = False  # the time limit ended the last fit early
        self._history: list[dict[str, float]] = []
        self._user_final: Tensor | None = None  # (U, D) cached for scoring
        self._item_final: Tensor | None = None  # (I, D) cached for scoring
        self._users: PooledUsers | None = None

    # ------------------------------------------------------------------ what subclasses say
    @abstractmethod
    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """Full ``(U, D)`` user and ``(I, D)`` item embeddings that scores are dot products of."""

    @abstractmethod
    def batch_loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        """BPR loss (plus L2) of one batch of ``(B,)`` index tensors."""

    def prepare(self, train: Dataset, device: torch.device) -> None:
        """Build whatever beyond the tables the model needs from ``train`` (e.g. a graph)."""

    def ranking_loss(
        self,
        users: Tensor,
        positives: Tensor,
        negatives: Tensor,
        reg_embeddings: tuple[Tensor, ...] | None = None,
    ) -> Tensor:
        """BPR + L2 of ``(B, D)`` scored vectors; with ``adversarial_eps`` > 0 plus the APR
        term ``adversarial_weight · BPR(vectors + Δ)`` (Δ: worst-case step of norm eps)."""
        loss: Tensor = self.loss(users, positives, negatives, reg_embeddings=reg_embeddings)
        if self.adversarial_eps > 0:
            attacked = adversarial_loss(
                self._ranking_only, (users, positives, negatives), self.adversarial_eps
            )
            loss = loss + self.adversarial_weight * attacked
        return loss

    def params(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (what :meth:`save` writes)."""
        return {
            "embedding_size": self.embedding_size,
            "lr": self.lr,
            "reg_weight": self.reg_weight,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "eval_every": self.eval_every,
            "patience": self.patience,
            "time_limit_minutes": self.time_limit_minutes,
            "init_std": self.init_std,
            "seed": self.seed,
            "device": self.device,
            "num_threads": self.num_threads,
            "progress": self.progress,
            "adversarial_eps": self.adversarial_eps,
            "adversarial_weight": self.adversarial_weight,
        }

    # ------------------------------------------------------------------ the contract
    @property
    def history(self) -> list[dict[str, float]]:
        return self._history

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        device = resolve_device(self.device)
        previous_threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            self.tables = EmbeddingTables.random(
                train.n_users, train.n_items, self.embedding_size, self.init_std, self.seed
            ).to(device)
            self.prepare(train, device)
            sampler = NegativeSampler(
                train.interactions["user"].to_numpy(dtype=np.int64),
                train.interactions["item"].to_numpy(dtype=np.int64),
                train.n_items,
                seed=self.seed,
            )
            validate = None if validator is None else partial(self._validate, validator)
            result = train_pairwise(
                self.tables,
                self.batch_loss,
                sampler,
                self.trainer_config,
                device=device,
                validate=validate,
            )
            self._history = result.history
            self.best_epoch = result.best_epoch
            self.stopped_by_time = result.stopped_by_time
            self.refresh()  # the restored best state, not the last validated one
        finally:
            torch.set_num_threads(previous_threads)
        return self

    def _validate(self, validator: Validator) -> dict[str, float]:
        """Refresh the scoring cache, then let ``validator`` score this model."""
        self.refresh()
        return validator(self)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the cached final embeddings from the current tables."""
        users, items = self.final_embeddings()
        self._user_final = users.detach()
        self._item_final = items.detach()
        self._users = None

    @torch.no_grad()
    def score(self, users: np.ndarray) -> np.ndarray:
        users_final, items_final = self._finals()
        index = torch.as_tensor(np.asarray(users, dtype=np.int64), device=users_final.device)
        scores = users_final[index] @ items_final.T  # (B, I)
        return scores.to(device="cpu", dtype=torch.float32).numpy()

    # ------------------------------------------------------------------ EmbeddingModel

    @property
    def similarity(self) -> Similarity:
        return "dot"

    @property
    def has_prior(self) -> bool:
        return False

    @property
    def featurizer(self) -> ItemFeaturizer | None:
        return None

    def history_vectors(self) -> np.ndarray:
        return self.item_vectors()

    def index_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, dtype=np.float32)

    def embed_items(self, content: Mapping[str, np.ndarray]) -> np.ndarray:
        raise ClrecError(f"a {self.name!r} model reads no content, so it cannot embed items")

    def score_user(self, state: UserState, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, dtype=np.float32) @ self.user_vector(state)  # (C,)

    def pooled_users(self) -> PooledUsers:
        if self._users is None:
            users, items = self.user_vectors(), self.item_vectors()
            self._users = PooledUsers(
                history_vectors=items,
                trained=users,
                history=sp.csr_matrix((users.shape[0], items.shape[0]), dtype=np.float32),
                id_table=None,
                half_life=None,
                similarity="dot",
            )
        return self._users

    def save(self, directory: str | Path) -> Path:
        if self.tables is None or self._user_final is None or self._item_final is None:
            raise ClrecError(f"{type(self).__name__}.save called before fit")
        out = self._start_save(
            directory,
            params=self.params(),
            best_epoch=self.best_epoch,
            stopped_by_time=self.stopped_by_time,
            history=self._history,
        )
        state = {
            "user": self.tables.user.detach().cpu(),
            "item": self.tables.item.detach().cpu(),
            "user_final": self._user_final.cpu(),
            "item_final": self._item_final.cpu(),
        }
        torch.save(state, out / "weights.pt")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        root = Path(directory)
        meta = cls._read_manifest(root)
        model = cls.from_config(meta["params"])
        device = resolve_device(model.device)
        state = torch.load(root / "weights.pt", map_location="cpu", weights_only=True)
        model.tables = EmbeddingTables(state["user"], state["item"]).to(device)
        model._user_final = state["user_final"].to(device)
        model._item_final = state["item_final"].to(device)
        model.best_epoch = int(meta.get("best_epoch", 0))
        model.stopped_by_time = bool(meta.get("stopped_by_time", False))
        model._history = list(meta.get("history", []))
        return model

    def _tables(self) -> EmbeddingTables:
        if self.tables is None:
            raise ClrecError(f"{type(self).__name__} has no embeddings yet; call fit first")
        return self.tables


class BPRMF(EmbeddingRecommender):
    """Matrix factorisation with BPR (Rendle et al. 2009): score = ``e_u · e_i``.

    Defaults (tuned on ML-1M, ratings ≥ 3, validation NDCG@10): a small initialisation
    (std 0.02, like RecBole's Xavier init) generalises far better than std 0.1; an L2 weight
    of 1e-2 lets Adam run at 2e-3 without the early overfitting seen with no L2 at that
    rate; the best epoch lands around 60.

    ``sparse_updates``: look the batch's rows up with sparse gradients and train with
    SparseAdam, so a step updates (and costs) only the rows it touched instead of both whole
    tables — what keeps an epoch linear in the data on large catalogues (``bench/scaling.py``).
    Lazy Adam is a different optimiser from Adam (a row's moments only move when it is in a
    batch), so results differ from the dense default.
    """

    name = "bpr"

    def __init__(
        self,
        embedding_size: int = 64,
        lr: float = 2e-3,
        reg_weight: float = 1e-2,
        batch_size: int = 4096,
        epochs: int = 300,
        eval_every: int = 1,
        patience: int = 10,
        time_limit_minutes: float | None = None,
        init_std: float = 0.02,
        seed: int = 2020,
        device: str | None = None,
        num_threads: int | None = None,
        progress: bool = True,
        adversarial_eps: float = 0.0,
        adversarial_weight: float = 1.0,
        sparse_updates: bool = False,
    ) -> None:
        super().__init__(
            embedding_size=embedding_size,
            lr=lr,
            reg_weight=reg_weight,
            batch_size=batch_size,
            epochs=epochs,
            eval_every=eval_every,
            patience=patience,
            time_limit_minutes=time_limit_minutes,
            init_std=init_std,
            seed=seed,
            device=device,
            num_threads=num_threads,
            progress=progress,
            adversarial_eps=adversarial_eps,
            adversarial_weight=adversarial_weight,
        )
        if not isinstance(sparse_updates, bool):
            raise ClrecError(f"sparse_updates must be true or false, got {sparse_updates!r}")
        self.sparse_updates = sparse_updates
        if sparse_updates:
            self.trainer_config = replace(self.trainer_config, optimizer="sparse_adam")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "sparse_updates": self.sparse_updates}

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        tables = self._tables()
        return tables.user, tables.item

    def batch_loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> Tensor:
        tables = self._tables()
        sparse = self.sparse_updates  # sparse gradients: only the looked-up rows
        return self.ranking_loss(
            functional.embedding(users, tables.user, sparse=sparse),  # (B, D)
            functional.embedding(positives, tables.item, sparse=sparse),  # (B, D)
            functional.embedding(negatives, tables.item, sparse=sparse),  # (B, D)
        )
