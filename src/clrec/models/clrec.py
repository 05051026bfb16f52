"""The clrec model: ID embeddings fused with pretrained content, trained with contrastive terms.

Representations (all ``D``-dimensional):

* item ``i``: ``e_i = id_i + content_i`` — a trained ID vector (zero for an item with no
  training interaction) plus the fused projection of its content modalities
  (:class:`~clrec.models.fusion.ModalityFusion`). During training the ID part is dropped
  for a random share of items (``id_dropout``, as in DropoutNet), so the content path alone
  must score well: that is what lets a brand-new item be recommended from its text / image.
* user ``u``: ``id_u + mean_{i ∈ history(u)} e_i`` — the user's ID vector plus the pooled
  vectors of their training items (the user-level feature matrix of the founding document);
  a new user is represented from a handful of items alone.
* optional LightGCN propagation of both over the user–item graph (``n_layers``).

Scores are cosine (or dot) similarities. The supervised loss is a softmax over the whole
catalogue computed per user (one ``(B, I)`` logit block serves all of a batch's users'
positives, so an epoch costs ``U × I`` logits, not ``|R| × I``), the same softmax against
``softmax_samples`` items drawn once per batch (``sampled_softmax``: ``U × K``), BPR / BCE
with sampled negatives, or MSE on explicit ratings. Contrastive terms (weights in
:class:`~clrec.losses.objective.LossWeights`): intra-user (two items of one user),
cross-user (two users of one item) mixed by the document's ``α``; content–behaviour
alignment (an item's ID side vs its content side); augmentation (SimGCL noise views); and a
social view (friends) when the data has a user graph. ``contrastive_mode`` ``joint`` adds the
contrastive terms to every batch; ``separate`` gives them their own batches, a
``contrastive_share`` of each epoch. With ``adversarial_eps`` > 0 the supervised loss is also
paid at adversarially perturbed user and item vectors (APR, :mod:`clrec.training.adversarial`);
the contrastive terms are left as they are. With ``denoise_drop_rate`` > 0 (softmax
objectives) each batch leaves out its share of positive pairs with the largest loss, the
truncated loss against noisy positives (:func:`clrec.losses.softmax.truncated_mean`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError
from torch import Tensor, nn

from clrec.config import validation_error
from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.losses.alignment import alignment_loss
from clrec.losses.augmentation import simgcl_noise, view_contrast_loss
from clrec.losses.bce import bce_loss
from clrec.losses.bpr import bpr_loss, l2_penalty
from clrec.losses.cross_user import cross_user_loss
from clrec.losses.intra_user import intra_user_loss
from clrec.losses.mse import mse_loss
from clrec.losses.objective import LossWeights, combine
from clrec.losses.social import social_loss
from clrec.losses.softmax import catalogue_softmax_loss, sampled_catalogue_softmax_loss
from clrec.models.base import Recommender, Validator
from clrec.models.content import ContentConfig, build_content
from clrec.models.ease import EASE
from clrec.models.fusion import FusionKind, ModalityFusion
from clrec.models.lightgcn import normalized_adjacency, propagate, to_torch_csr
from clrec.models.mf import resolve_device
from clrec.training.adversarial import adversarial_loss, check_adversarial
from clrec.training.loop import LoopConfig, run_training
from clrec.training.pairs import ContrastivePairSampler, FriendPairs
from clrec.training.sampling import NegativeSampler

Supervised = Literal["softmax", "sampled_softmax", "bpr", "bce", "mse"]
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PRIOR_REGS = (10.0, 50.0, 250.0, 1000.0)
NOT_A_NEGATIVE = -1e9  # a sampled item's score where it is the user's own positive
MAX_PRIOR_ITEMS = 30_000  # EASE solves an items × items system
# settings that do not change a fit's result: a checkpoint resumes across them
NOT_DECISIVE = (
    "progress",
    "num_threads",
    "log_dir",
    "checkpoint_dir",
    "device",
    "time_limit_minutes",
)
Similarity = Literal["cosine", "dot"]


@dataclass(frozen=True)
class ClrecConfig:
    """Every hyper-parameter of :class:`ClrecRecommender` (all saved with the model)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    embedding_size: int = 64
    # representation
    content: ContentConfig = field(default_factory=ContentConfig)
    fusion: FusionKind = "attention"
    fusion_hidden: int = 0
    modality_dropout: float = 0.1
    id_dropout: float = 0.1
    use_history: bool = True
    # the k-th most recent training item of a user weighs 0.5 ** (k / half-life) in the
    # user's pooled history (needs timestamps or sequence positions; None: all weigh the same)
    history_half_life: float | None = None
    n_layers: int = 0
    similarity: Similarity = "cosine"
    # collaborative prior: a closed-form item-item model (EASE, λ = prior_reg) fused with the
    # embedding scores after training: score = sim / τ + w · prior / σ(prior). λ (from
    # PRIOR_REGS) and w (from PRIOR_WEIGHTS) are chosen on validation NDCG@10 unless given;
    # "none": the pure embedding model (needed beyond MAX_PRIOR_ITEMS items)
    prior: Literal["none", "ease"] = "ease"
    prior_reg: float | None = None
    prior_weight: float | None = None
    # objective
    supervised: Supervised = "softmax"
    # sampled_softmax: the softmax against this many items drawn uniformly once per batch (with
    # the log(I / K) correction), for catalogues where B × I scores per step cost too much
    softmax_samples: int = 2048
    temperature: float = 0.2  # on cosine similarities; 0.2 beat 0.1 on ML-1M, Office, Scientific
    contrast_temperature: float = 0.2
    # intra / cross-user contrast at 0.5 (α 0.5) and content–behaviour alignment at 0.1: the
    # setting that helped on Amazon Scientific / Office and ML-1M cold items (BENCHMARKS.md)
    weights: LossWeights = field(
        default_factory=lambda: LossWeights(contrastive=0.5, alignment=0.1)
    )
    l2_weight: float = 0.0
    noise_eps: float = 0.1
    # APR adversarial training (clrec.training.adversarial): the supervised loss is also paid
    # at the scored vectors moved eps (per row) the worst way, times the weight; 0 = off
    adversarial_eps: float = 0.0
    adversarial_weight: float = 1.0
    # truncated loss against noisy positives (clrec.losses.softmax.truncated_mean; softmax
    # objective): each batch leaves out this share of its positive pairs with the largest
    # loss, the share rising linearly from 0 over the first denoise_warmup_epochs epochs
    denoise_drop_rate: float = 0.0
    denoise_warmup_epochs: int = 5
    contrastive_mode: Literal["joint", "separate"] = "joint"
    contrastive_share: float = 0.3
    # optimisation
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 128  # users per step (each brings all of their training items)
    contrastive_batch_size: int = 1024
    epochs: int = 100
    eval_every: int = 1
    patience: int = 8
    # wall-clock cap on training: stop after the first epoch that ends past it (None: no cap)
    time_limit_minutes: float | None = None
    init_std: float = 0.1
    seed: int = 2020
    device: str | None = None
    num_threads: int | None = None
    progress: bool = True
    checkpoint_dir: str | None = None
    log_dir: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.embedding_size >= 1, "embedding_size must be at least 1"),
            (0 <= self.id_dropout < 1, "id_dropout must be in [0, 1)"),
            (self.n_layers >= 0, "n_layers must be ≥ 0"),
            (
                self.history_half_life is None or self.history_half_life > 0,
                "history_half_life must be positive",
            ),
            (self.temperature > 0, "temperature must be positive"),
            (self.contrast_temperature > 0, "contrast_temperature must be positive"),
            (self.l2_weight >= 0, "l2_weight must be ≥ 0"),
            (self.noise_eps >= 0, "noise_eps must be ≥ 0"),
            (0 <= self.contrastive_share < 1, "contrastive_share must be in [0, 1)"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.contrastive_batch_size >= 2, "contrastive_batch_size must be at least 2"),
            (self.init_std > 0, "init_std must be positive"),
            (
                self.time_limit_minutes is None
                or (math.isfinite(self.time_limit_minutes) and self.time_limit_minutes > 0),
                "time_limit_minutes must be positive and finite",
            ),
            (self.prior_reg is None or self.prior_reg > 0, "prior_reg must be positive"),
            (
                self.supervised in ("softmax", "sampled_softmax", "bpr", "bce", "mse"),
                "unknown supervised loss",
            ),
            (self.softmax_samples >= 1, "softmax_samples must be at least 1"),
            (0 <= self.denoise_drop_rate < 1, "denoise_drop_rate must be in [0, 1)"),
            (self.denoise_warmup_epochs >= 0, "denoise_warmup_epochs must be ≥ 0"),
            (
                self.denoise_drop_rate == 0 or "softmax" in self.supervised,
                "denoise_drop_rate needs a softmax objective",
            ),
            (self.similarity in ("cosine", "dot"), "similarity must be 'cosine' or 'dot'"),
            (self.contrastive_mode in ("joint", "separate"), "unknown contrastive_mode"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClrecError(f"clrec model: {message}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ClrecError(f"num_threads must be at least 1, got {self.num_threads}")
        check_adversarial(self.adversarial_eps, self.adversarial_weight)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ClrecError(f"seed must be an integer ≥ 0, got {self.seed!r}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ClrecConfig:
        """From a config's ``model.params`` (``content`` and ``weights`` as nested mappings);
        values are coerced as a YAML user expects (``"1e-2"`` → 0.01, lists → tuples)."""
        try:
            config: ClrecConfig = TypeAdapter(cls).validate_python(params)
        except ValidationError as err:
            raise validation_error(err, "clrec model parameters") from None
        return config

    def to_params(self) -> dict[str, Any]:
        """JSON-ready form that :meth:`from_params` reads back."""
        plain: dict[str, Any] = TypeAdapter(type(self)).dump_python(self, mode="json")
        return plain


@dataclass(frozen=True)
class Batch:
    """One step's users (and, for separate contrastive batches, its kind) and its seed."""

    users: np.ndarray  # (B,) int64
    kind: Literal["supervised", "contrastive", "joint"]
    seed: int
    epoch: int = 1


class _SparseMM(torch.autograd.Function):
    """``H @ X`` for a fixed sparse ``H`` whose transpose is precomputed: the backward is
    ``Hᵀ @ grad`` with the same fast CSR kernel (torch's generic sparse backward is slow)."""

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, transpose: Tensor, dense: Tensor) -> Tensor:
        ctx.transpose = transpose
        product: Tensor = torch.sparse.mm(matrix, dense)
        return product

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor]:
        return None, None, torch.sparse.mm(ctx.transpose, grad)


class ClrecNetwork(nn.Module):
    """The trainable parts and the fixed graph / content buffers of the model."""

    def __init__(
        self,
        config: ClrecConfig,
        n_users: int,
        n_items: int,
        content: dict[str, np.ndarray],
    ) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        dim = config.embedding_size
        self.user_table = nn.Parameter(
            torch.randn(n_users, dim, generator=generator) * config.init_std
        )
        self.item_table = nn.Parameter(
            torch.randn(n_items, dim, generator=generator) * config.init_std
        )
        # nn.Linear initialises from torch's global generator: seed it here (and leave the
        # caller's global state as it was), so a seed fixes the whole network
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.fusion = (
                ModalityFusion(
                    {name: matrix.shape[1] for name, matrix in content.items()},
                    dim,
                    kind=config.fusion,
                    hidden=config.fusion_hidden,
                    modality_dropout=config.modality_dropout,
                )
                if content
                else None
            )
        self.content_names = sorted(content)
        self.content: dict[str, Tensor] = {}
        self.present: dict[str, Tensor] = {}
        for name in self.content_names:
            matrix = torch.from_numpy(np.ascontiguousarray(content[name], dtype=np.float32))
            present = ~torch.isnan(matrix).any(dim=1)  # (I,)
            self.content[name] = torch.nan_to_num(matrix, nan=0.0)  # (I, d_m)
            self.present[name] = present
        self.item_known = torch.zeros(n_items, dtype=torch.bool)
        self.history: Tensor | None = None  # (U, I) row-normalised sparse CSR
        self.history_t: Tensor | None = None  # (I, U) its transpose, for the backward pass
        self.adjacency: Tensor | None = None  # (U + I, U + I) sparse CSR
        self.isolated: Tensor | None = None  # (U + I,) bool: nodes without edges

    def attach_graph(
        self,
        users: np.ndarray,
        items: np.ndarray,
        device: torch.device,
        pair_weights: np.ndarray | None = None,
    ) -> None:
        """Build the history and propagation matrices from the training pairs; the history
        is a weighted mean when ``pair_weights`` (e.g. recency) are given."""
        n_users, n_items = self.user_table.shape[0], self.item_table.shape[0]
        matrix = sp.csr_matrix(
            (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        known = np.asarray(matrix.sum(axis=0)).ravel() > 0
        self.item_known = torch.from_numpy(known).to(device)
        degree = np.asarray(matrix.sum(axis=1), dtype=np.float32).ravel()
        weighted = matrix
        if pair_weights is not None:
            weighted = sp.csr_matrix(
                (pair_weights.astype(np.float32), (users, items)), shape=(n_users, n_items)
            )
            weighted.sum_duplicates()
        totals = np.asarray(weighted.sum(axis=1), dtype=np.float32).ravel()
        scale = sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0))
        history = (scale @ weighted).tocsr()
        self.history = to_torch_csr(history, device)
        self.history_t = to_torch_csr(history.T.tocsr(), device)
        if self.config.n_layers:
            self.adjacency = to_torch_csr(
                normalized_adjacency(users, items, n_users, n_items), device
            )
            node_degree = np.concatenate([degree, np.asarray(matrix.sum(axis=0)).ravel()])
            self.isolated = torch.from_numpy(node_degree == 0).to(device)
        self.content = {k: v.to(device) for k, v in self.content.items()}
        self.present = {k: v.to(device) for k, v in self.present.items()}

    def item_content(self, generator: torch.Generator | None = None) -> Tensor | None:
        """Fused content vectors ``(I, D)`` (None without content)."""
        if self.fusion is None:
            return None
        fused: Tensor = self.fusion(self.content, self.present, generator)
        return fused

    def embeddings(
        self, generator: torch.Generator | None = None, noise_eps: float = 0.0
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Final ``(U, D)`` users, ``(I, D)`` items, and the items' ID and content parts."""
        item_id = self.item_table * self.item_known.unsqueeze(1)  # (I, D)
        content = self.item_content(generator)  # (I, D) or None
        kept_id = item_id
        if self.training and self.config.id_dropout > 0:
            draws = torch.rand(item_id.shape[0], generator=generator).to(item_id.device)
            kept_id = item_id * (draws >= self.config.id_dropout).unsqueeze(1)
        items = kept_id if content is None else kept_id + content  # (I, D)
        users: Tensor = self.user_table  # (U, D)
        if self.config.use_history and self.history is not None and self.history_t is not None:
            pooled = _SparseMM.apply(self.history, self.history_t, items)  # type: ignore[no-untyped-call]
            users = users + pooled  # (U, D)
        if self.config.n_layers and self.adjacency is not None and self.isolated is not None:
            stacked = torch.cat([users, items])  # (U + I, D)
            if noise_eps > 0:
                stacked = simgcl_noise(stacked, noise_eps, generator)
            mean = propagate(self.adjacency, stacked, self.config.n_layers)
            # a node without edges keeps its own vector instead of 1/(L+1) of it
            final = torch.where(self.isolated.unsqueeze(1), stacked, mean)
            users, items = final[: users.shape[0]], final[users.shape[0] :]
        elif noise_eps > 0:
            users = simgcl_noise(users, noise_eps, generator)
            items = simgcl_noise(items, noise_eps, generator)
        return users, items, item_id, content


class ClrecRecommender(Recommender):
    """Contrastive fusion of pretrained content with collaborative signals (see module doc)."""

    name = "clrec"

    def __init__(self, **params: Any) -> None:
        self.config = ClrecConfig.from_params(params)
        self.network: ClrecNetwork | None = None
        self.prior: EASE | None = None
        self.prior_scale = 0.0  # w: weight of the normalised prior scores
        self.prior_norm = 1.0  # 1 / σ of the prior's scores
        self.prior_search: list[dict[str, float]] = []
        self.best_epoch = 0
        self.stopped_by_time = False  # the time limit ended the last fit early
        self._history: list[dict[str, float]] = []
        self._user_final: Tensor | None = None  # (U, D) cached for scoring
        self._item_final: Tensor | None = None  # (I, D) cached for scoring
        # a loaded model has no network: its saved weights and content names, to save again
        self._saved_network: tuple[dict[str, Tensor], list[str]] = ({}, [])

    @classmethod
    def from_config(cls, params: dict[str, Any]) -> Self:
        return cls(**params)

    @property
    def history(self) -> list[dict[str, float]]:
        return self._history

    # ------------------------------------------------------------------ training
    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        config = self.config
        device = resolve_device(config.device)
        previous_threads = torch.get_num_threads()
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        try:
            content = build_content(train, config.content) if config.content.modalities else {}
            if config.prior == "ease" and train.n_items > MAX_PRIOR_ITEMS:
                raise ClrecError(
                    f"the EASE prior solves an items × items system; {train.n_items:,} items is "
                    f"beyond {MAX_PRIOR_ITEMS:,}: set model.params.prior=none"
                )
            self.network = ClrecNetwork(config, train.n_users, train.n_items, content).to(device)
            users = train.interactions["user"].to_numpy(dtype=np.int64)
            items = train.interactions["item"].to_numpy(dtype=np.int64)
            self.network.attach_graph(users, items, device, recency_weights(train, config))
            plan = _TrainingPlan(self, train, device)
            loop = LoopConfig(
                epochs=config.epochs,
                lr=config.lr,
                optimizer="adamw",
                weight_decay=config.weight_decay,
                eval_every=config.eval_every,
                patience=config.patience,
                time_limit_minutes=config.time_limit_minutes,
                progress=config.progress,
                checkpoint_dir=config.checkpoint_dir,
                log_dir=config.log_dir,
            )
            # what decides the result; resuming with other threads, logs or bars is fine
            decisive = {k: v for k, v in config.to_params().items() if k not in NOT_DECISIVE}
            fingerprint = {
                "params": json.dumps(decisive, sort_keys=True, default=str),
                "users": train.n_users,
                "items": train.n_items,
                "pairs": len(users),
            }
            validate = None if validator is None else partial(self._validate, validator)
            result = run_training(
                self.network,
                plan.epoch_batches,
                plan.batch_loss,
                loop,
                validate=validate,
                fingerprint=fingerprint,
            )
            self._history = result.history
            self.best_epoch = result.best_epoch
            self.stopped_by_time = result.stopped_by_time
            self.refresh()
            if config.prior == "ease":
                self._fuse_prior(train, validator)
        finally:
            torch.set_num_threads(previous_threads)
        return self

    def _fuse_prior(self, train: Dataset, validator: Validator | None) -> None:
        """Fit the prior (λ by its own validation NDCG@10), scale it to unit spread, then
        pick its weight on validation NDCG@10."""
        regs = PRIOR_REGS if self.config.prior_reg is None else (self.config.prior_reg,)
        self.prior_search = []
        if validator is None or len(regs) == 1:
            self.prior = self._prior_model(train, regs[0] if len(regs) == 1 else 250.0)
        else:
            best_score = -np.inf
            for reg in regs:
                candidate = self._prior_model(train, reg)
                score = validator(candidate).get("ndcg@10", 0.0)
                self.prior_search.append({"reg": reg, "ndcg@10": score})
                if score > best_score:
                    best_score, self.prior = score, candidate
                # items² floats each: only the best so far outlives the next fit
                del candidate
        assert self.prior is not None
        rng = np.random.default_rng(self.config.seed)
        sample = rng.choice(train.n_users, size=min(train.n_users, 512), replace=False)
        spread = float(np.std(self.prior.score(np.sort(sample))))
        self.prior_norm = 1.0 / spread if spread > 0 else 1.0
        if self.config.prior_weight is not None or validator is None:
            self.prior_scale = 1.0 if self.config.prior_weight is None else self.config.prior_weight
            return
        scored = []
        for weight in PRIOR_WEIGHTS:
            self.prior_scale = weight
            scored.append((validator(self).get("ndcg@10", 0.0), weight))
        self.prior_scale = max(scored)[1]
        self.prior_search += [{"weight": w, "ndcg@10": v} for v, w in scored]

    def _prior_model(self, train: Dataset, reg: float) -> EASE:
        """EASE fitted on ``train``; with ``history_half_life`` it reads each user's history
        recency-weighted at scoring time, as the user side of the embeddings does."""
        prior = EASE(reg_weight=reg).fit(train)
        weights = recency_weights(train, self.config)
        if weights is not None:
            inter = train.interactions
            weighted = sp.csr_matrix(
                (
                    weights.astype(np.float32),
                    (
                        inter["user"].to_numpy(dtype=np.int64),
                        inter["item"].to_numpy(dtype=np.int64),
                    ),
                ),
                shape=(train.n_users, train.n_items),
            )
            weighted.sum_duplicates()
            prior.seen = weighted
        return prior

    def _validate(self, validator: Validator) -> dict[str, float]:
        self.refresh()
        return validator(self)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the cached final user and item vectors from the network."""
        network = self._network()
        network.eval()
        users, items, _, _ = network.embeddings()
        self._user_final = self._for_scoring(users)
        self._item_final = self._for_scoring(items)

    def prior_scores(self, users: np.ndarray, device: torch.device) -> Tensor | None:
        """The collaborative prior's ``(B, I)`` scores for ``users`` (None without a prior)."""
        if self.prior is None:
            return None
        return torch.from_numpy(self.prior.score(users)).to(device)

    def _for_scoring(self, vectors: Tensor) -> Tensor:
        if self.config.similarity == "cosine":
            return nn.functional.normalize(vectors.detach(), dim=1)
        return vectors.detach()

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, users: np.ndarray) -> np.ndarray:
        if self._user_final is None or self._item_final is None:
            raise ClrecError("clrec.score called before fit")
        index = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self._user_final.device)
        scores = self._user_final[index] @ self._item_final.T  # (B, I)
        scores /= self.config.temperature  # the logits the model was trained on
        prior = self.prior_scores(np.asarray(users, dtype=np.int64), scores.device)
        if prior is not None and self.prior_scale:
            scores += (self.prior_scale * self.prior_norm) * prior
        return scores.to(device="cpu", dtype=torch.float32).numpy()

    @torch.no_grad()
    def user_from_items(self, items: np.ndarray) -> np.ndarray:
        """A vector ``(D,)`` for a user known only by a few items (cold-start user)."""
        if self._item_final is None:
            raise ClrecError("clrec.user_from_items called before fit")
        index = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self._item_final.device)
        if len(index) == 0:
            raise ClrecError("user_from_items needs at least one item")
        vector = self._for_scoring(self._item_final[index].mean(dim=0, keepdim=True))
        return vector[0].cpu().numpy()

    @torch.no_grad()
    def embed_content(self, content: dict[str, np.ndarray]) -> np.ndarray:
        """Vectors ``(n, D)`` from content alone — a brand-new item, or a new user's profile
        text used as a query. ``content[m]`` is ``(n, d_m)`` for the model's modalities (NaN
        rows or a missing key: the item lacks that modality)."""
        fusion = self._fusion()
        unknown = sorted(set(content) - set(fusion.names))
        if unknown:
            raise ClrecError(
                f"the model has no content modality {', '.join(unknown)}; "
                f"it reads: {', '.join(fusion.names)}"
            )
        sizes = {len(matrix) for matrix in content.values()}
        if len(sizes) != 1:
            raise ClrecError("embed_content needs the same number of rows in every modality")
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
            present[name] = ~torch.isnan(matrix).any(dim=1)
            features[name] = torch.nan_to_num(matrix, nan=0.0)
        fusion.eval()
        vectors = self._for_scoring(fusion(features, present))
        return vectors.cpu().numpy()

    def add_items(self, content: dict[str, np.ndarray]) -> np.ndarray:
        """Append new items scored from their content at once; returns their internal ids."""
        if self._item_final is None:
            raise ClrecError("clrec.add_items called before fit")
        vectors = torch.from_numpy(self.embed_content(content)).to(self._item_final.device)
        first = self._item_final.shape[0]
        self._item_final = torch.cat([self._item_final, vectors])
        if self.prior is not None:
            self.prior = None  # the prior knows nothing of new items: embeddings rank them
            self.prior_scale = 0.0
        return np.arange(first, first + len(vectors))

    def _fusion(self) -> ModalityFusion:
        """The trained content fusion, rebuilt from saved weights after :meth:`load`."""
        if self.network is not None and self.network.fusion is not None:
            return self.network.fusion
        state, names = self._saved_network
        if not names:
            raise ClrecError("this clrec model reads no content, so it cannot embed content")
        prefix = "fusion."
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        dims = {
            name: int(
                weights[
                    f"projections.{name}.weight"
                    if f"projections.{name}.weight" in weights
                    else f"projections.{name}.0.weight"
                ].shape[1]
            )
            for name in names
        }
        fusion = ModalityFusion(
            dims,
            self.config.embedding_size,
            kind=self.config.fusion,
            hidden=self.config.fusion_hidden,
            modality_dropout=self.config.modality_dropout,
        )
        fusion.load_state_dict(weights)
        self._loaded_fusion = fusion
        return fusion

    @torch.no_grad()
    def score_vectors(self, users: np.ndarray) -> np.ndarray:
        """Scores ``(B, I)`` for user vectors ``(B, D)`` (e.g. from :meth:`user_from_items`)."""
        if self._item_final is None:
            raise ClrecError("clrec.score_vectors called before fit")
        query = torch.as_tensor(np.asarray(users, dtype=np.float32), device=self._item_final.device)
        return (query @ self._item_final.T).cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        if self._user_final is None or self._item_final is None:
            raise ClrecError("clrec.save called before fit")
        network_state, content_names = self._saved_network
        if self.network is not None:
            network_state = self.network.state_dict()
            content_names = self.network.content_names
        out = self._start_save(
            directory,
            params=self.config.to_params(),
            best_epoch=self.best_epoch,
            stopped_by_time=self.stopped_by_time,
            history=self._history,
            content=content_names,
            prior_scale=self.prior_scale,
            prior_norm=self.prior_norm,
            prior_search=self.prior_search,
        )
        if self.prior is not None:
            self.prior.save(out / "prior")
        torch.save(
            {
                "network": {k: v.cpu() for k, v in network_state.items()},
                "user_final": self._user_final.cpu(),
                "item_final": self._item_final.cpu(),
            },
            out / "weights.pt",
        )
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        root = Path(directory)
        meta = cls._read_manifest(root)
        model = cls.from_config(meta["params"])
        device = resolve_device(model.config.device)
        state = torch.load(root / "weights.pt", map_location="cpu", weights_only=True)
        model._user_final = state["user_final"].to(device)
        model._item_final = state["item_final"].to(device)
        model.best_epoch = int(meta.get("best_epoch", 0))
        model.stopped_by_time = bool(meta.get("stopped_by_time", False))
        model._history = list(meta.get("history", []))
        model._saved_network = (state["network"], list(meta.get("content", [])))
        model.prior_scale = float(meta.get("prior_scale", 0.0))
        model.prior_norm = float(meta.get("prior_norm", 1.0))
        model.prior_search = list(meta.get("prior_search", []))
        if (root / "prior").is_dir():
            model.prior = EASE.load(root / "prior")
        return model

    def _network(self) -> ClrecNetwork:
        if self.network is None:
            raise ClrecError("clrec model has no network yet; call fit first")
        return self.network


def recency_weights(train: Dataset, config: ClrecConfig) -> np.ndarray | None:
    """Per-interaction history weights ``0.5 ** (k / half-life)``, k = 0 for each user's
    latest item (None when the setting is off or the data has no timestamps)."""
    inter = train.interactions
    clock = next((c for c in ("timestamp", "position") if c in inter.columns), None)
    if config.history_half_life is None or clock is None:
        return None
    order = inter.groupby("user")[clock].rank(method="first", ascending=False) - 1.0
    weights: np.ndarray = 0.5 ** (order.to_numpy(dtype=np.float64) / config.history_half_life)
    return weights


class _TrainingPlan:
    """Batches and per-batch losses of one fit: samplers built once from the training data."""

    def __init__(self, model: ClrecRecommender, train: Dataset, device: torch.device) -> None:
        self.config = model.config
        self.network = model._network()
        self.device = device
        inter = train.interactions
        users = inter["user"].to_numpy(dtype=np.int64)
        items = inter["item"].to_numpy(dtype=np.int64)
        self.n_items = train.n_items
        matrix = sp.csr_matrix(
            (np.ones(len(users), dtype=np.float32), (users, items)),
            shape=(train.n_users, train.n_items),
        )
        matrix.sum_duplicates()
        self.matrix = matrix
        self.active_users = np.flatnonzero(np.diff(matrix.indptr) > 0)
        self.pairs = ContrastivePairSampler(
            users, items, train.n_users, train.n_items, self.config.seed
        )
        self.negatives = (
            NegativeSampler(users, items, train.n_items, seed=self.config.seed)
            if self.config.supervised in ("bpr", "bce")
            else None
        )
        self.ratings: sp.csr_matrix | None = None
        if self.config.supervised == "mse":
            if "rating" not in inter.columns:
                raise ClrecError("supervised 'mse' needs explicit ratings; the data has none")
            self.ratings = sp.csr_matrix(
                (inter["rating"].to_numpy(dtype=np.float32), (users, items)),
                shape=matrix.shape,
            )
        self.friends = (
            FriendPairs(
                train.user_relations["user"].to_numpy(dtype=np.int64),
                train.user_relations["other"].to_numpy(dtype=np.int64),
                train.n_users,
                self.config.seed,
            )
            if train.user_relations is not None and self.config.weights.social > 0
            else None
        )
        weights = self.config.weights
        self.uses_contrast = (
            weights.contrastive > 0
            or weights.alignment > 0
            or weights.augmentation > 0
            or weights.social > 0
        )

    def epoch_batches(self, epoch: int) -> list[Batch]:
        """This epoch's batches, drawn from a generator seeded by ``(seed, epoch)``."""
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(self.active_users)
        size = self.config.batch_size
        chunks = [order[start : start + size] for start in range(0, len(order), size)]
        seeds = rng.integers(0, 2**62, size=len(chunks))
        separate = self.config.contrastive_mode == "separate" and self.uses_contrast
        kind: Literal["supervised", "joint"] = "supervised" if separate else "joint"
        batches = [
            Batch(chunk, kind, int(seed), epoch) for chunk, seed in zip(chunks, seeds, strict=True)
        ]
        if separate:
            share = self.config.contrastive_share
            extra = round(len(chunks) * share / (1 - share))
            contrastive_size = self.config.contrastive_batch_size
            for _ in range(extra):
                chosen = rng.choice(
                    self.active_users,
                    size=min(contrastive_size, len(self.active_users)),
                    replace=False,
                )
                batches.append(Batch(chosen, "contrastive", int(rng.integers(0, 2**62)), epoch))
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def batch_loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Supervised and / or contrastive loss of one batch, with its parts for the logs."""
        config = self.config
        generator = torch.Generator().manual_seed(batch.seed)
        rng = np.random.default_rng(batch.seed)
        self.pairs.rng = rng  # every draw of this batch from its own seed: exact resumption
        if self.friends is not None:
            self.friends.rng = rng
        users_all, items_all, item_id, content = self.network.embeddings(generator)
        supervised = None
        if batch.kind != "contrastive":
            supervised = self._supervised(batch, users_all, items_all, rng)
        terms: dict[str, Tensor] = {}
        if batch.kind != "supervised" and self.uses_contrast:
            terms = self._contrastive(
                batch.users, users_all, items_all, item_id, content, generator
            )
        total, parts = combine(supervised, terms, config.weights)
        if config.l2_weight > 0:
            index = torch.as_tensor(batch.users, device=self.device)
            penalty = l2_penalty(self.network.user_table[index])
            total = total + config.l2_weight * penalty
            parts["l2"] = float(penalty.detach())
        return total, parts

    def _supervised(
        self, batch: Batch, users_all: Tensor, items_all: Tensor, rng: np.random.Generator
    ) -> Tensor:
        """The batch's supervised loss; with ``adversarial_eps`` > 0 plus the APR term: the
        same loss on the scored vectors moved by their worst-case step (per row, norm eps)."""
        config = self.config
        u = torch.as_tensor(batch.users, device=self.device)
        user_vectors = self._similarity_space(users_all[u])  # (B, D)
        items_space = self._similarity_space(items_all)  # (I, D)
        loss_of = self._supervised_loss(batch.users, rng, self.denoise_rate(batch.epoch))
        loss = loss_of(user_vectors, items_space)
        if config.adversarial_eps > 0:
            vectors = (user_vectors, items_space)
            attacked = adversarial_loss(loss_of, vectors, config.adversarial_eps, clean=loss)
            loss = loss + config.adversarial_weight * attacked
        return loss

    def denoise_rate(self, epoch: int) -> float:
        """The share of positive pairs the truncated loss leaves out in ``epoch`` (from 1)."""
        config = self.config
        warm = min(1.0, epoch / config.denoise_warmup_epochs) if config.denoise_warmup_epochs else 1
        return config.denoise_drop_rate * warm

    def _supervised_loss(
        self, users: np.ndarray, rng: np.random.Generator, drop_rate: float = 0.0
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """The supervised loss of ``users`` as a function of their ``(B, D)`` vectors and the
        ``(I, D)`` item vectors (similarity space); targets and negatives are drawn here, once,
        so an adversarial second evaluation sees the same ones. ``drop_rate``: the truncated
        loss's share (softmax objective)."""
        config = self.config
        rows = self.matrix[users]
        row_index, item_index = rows.nonzero()
        pair_rows = torch.as_tensor(row_index, device=self.device)  # (P,) index into the batch
        positives = torch.as_tensor(item_index, device=self.device)  # (P,)
        tau = config.temperature
        if config.supervised == "softmax":

            def softmax(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                logits = user_vectors @ items_space.T  # (B, I)
                return catalogue_softmax_loss(logits, pair_rows, positives, tau, drop_rate)

            return softmax
        if config.supervised == "sampled_softmax":
            n_items = rows.shape[1]
            sampled = rng.integers(0, n_items, size=min(config.softmax_samples, n_items))  # (K,)
            hits = torch.as_tensor(rows[:, sampled].toarray() > 0, device=self.device)  # (B, K)
            sampled_index = torch.as_tensor(sampled, device=self.device)
            correction = math.log(n_items / len(sampled))

            def sampled_softmax(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                scores = user_vectors @ items_space[sampled_index].T  # (B, K)
                pair_vectors = user_vectors[pair_rows]  # (P, D)
                positive_scores = (pair_vectors * items_space[positives]).sum(dim=1)  # (P,)
                return sampled_catalogue_softmax_loss(
                    positive_scores,
                    scores.masked_fill(hits, NOT_A_NEGATIVE),
                    pair_rows,
                    tau,
                    correction,
                    drop_rate,
                )

            return sampled_softmax
        if config.supervised == "mse":
            assert self.ratings is not None
            targets = np.asarray(self.ratings[users][row_index, item_index]).ravel()
            target = torch.as_tensor(targets, device=self.device)  # (P,)

            def mse(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                pair_vectors = user_vectors[pair_rows]  # (P, D)
                positive_scores = (pair_vectors * items_space[positives]).sum(dim=1)  # (P,)
                # the predicted rating is the score the model serves: similarity / temperature
                return mse_loss(positive_scores / tau, target)

            return mse
        assert self.negatives is not None
        self.negatives.rng = rng
        sampled = torch.as_tensor(self.negatives.sample(users[row_index]), device=self.device)

        def sampled_loss(user_vectors: Tensor, items_space: Tensor) -> Tensor:
            pair_vectors = user_vectors[pair_rows]  # (P, D)
            positive_scores = (pair_vectors * items_space[positives]).sum(dim=1)  # (P,)
            negative_scores = (pair_vectors * items_space[sampled]).sum(dim=1)  # (P,)
            if config.supervised == "bpr":
                return bpr_loss(positive_scores / tau, negative_scores / tau)
            scores = torch.cat([positive_scores, negative_scores]) / tau  # (2P,)
            ones, zeros = torch.ones_like(positive_scores), torch.zeros_like(negative_scores)
            return bce_loss(scores, torch.cat([ones, zeros]))

        return sampled_loss

    def _contrastive(
        self,
        users: np.ndarray,
        users_all: Tensor,
        items_all: Tensor,
        item_id: Tensor,
        content: Tensor | None,
        generator: torch.Generator,
    ) -> dict[str, Tensor]:
        config = self.config
        weights = config.weights
        tau = config.contrast_temperature
        terms: dict[str, Tensor] = {}
        device = self.device
        if weights.contrastive > 0:
            owners, first, second = self.pairs.intra_user(users)
            if len(owners) > 1:
                terms["intra_user"] = intra_user_loss(
                    items_all[torch.as_tensor(first, device=device)],
                    items_all[torch.as_tensor(second, device=device)],
                    tau,
                    users=torch.as_tensor(owners, device=device),
                )
            batch_items = self._batch_items(users)
            shared, first_user, second_user = self.pairs.cross_user(batch_items)
            if len(shared) > 1:
                terms["cross_user"] = cross_user_loss(
                    users_all[torch.as_tensor(first_user, device=device)],
                    users_all[torch.as_tensor(second_user, device=device)],
                    tau,
                    items=torch.as_tensor(shared, device=device),
                )
        if weights.alignment > 0 and content is not None:
            index = torch.as_tensor(self._batch_items(users), device=device)
            has_content = torch.stack(
                [self.network.present[m][index] for m in self.network.content_names]
            ).any(0)
            index = index[has_content]
            if len(index) > 1:
                terms["alignment"] = alignment_loss(item_id[index], content[index], tau, ids=index)
        if weights.augmentation > 0:
            view_a = self.network.embeddings(generator, noise_eps=config.noise_eps)
            view_b = self.network.embeddings(generator, noise_eps=config.noise_eps)
            u = torch.as_tensor(users, device=device)
            index = torch.as_tensor(self._batch_items(users), device=device)
            terms["augmentation"] = view_contrast_loss(
                view_a[0][u], view_b[0][u], tau
            ) + view_contrast_loss(view_a[1][index], view_b[1][index], tau)
        if weights.social > 0 and self.friends is not None:
            sources, friends = self.friends.sample(users)
            if len(sources) > 1:
                terms["social"] = social_loss(
                    users_all[torch.as_tensor(sources, device=device)],
                    users_all[torch.as_tensor(friends, device=device)],
                    tau,
                    ids=torch.as_tensor(sources, device=device),
                )
        return terms

    def _batch_items(self, users: np.ndarray) -> np.ndarray:
        """The batch users' items, at most ``contrastive_batch_size`` of them (sorted)."""
        items = np.unique(self.matrix[users].indices)
        limit = self.config.contrastive_batch_size
        if len(items) > limit:
            items = np.sort(self.pairs.rng.choice(items, size=limit, replace=False))
        return items

    def _similarity_space(self, vectors: Tensor) -> Tensor:
        if self.config.similarity == "cosine":
            return nn.functional.normalize(vectors, dim=1)
        return vectors
