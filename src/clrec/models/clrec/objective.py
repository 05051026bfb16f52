"""The clrec model's training plan: an epoch's batches and one batch's loss.

The supervised loss is a softmax over the whole catalogue computed per user (one ``(B, I)``
logit block serves all of a batch's users' positives, so an epoch costs ``U × I`` logits, not
``|R| × I``), the same softmax against ``softmax_samples`` items drawn once per batch
(``sampled_softmax``: ``U × K``), SimpleX's cosine contrastive loss against the same shared
samples (``cosine_contrastive``: a margin on the negatives' cosines instead of a softmax),
BPR / BCE with sampled negatives, or MSE on explicit ratings. Contrastive terms (weights in
:class:`~clrec.losses.objective.LossWeights`): intra-user (two items of one user),
cross-user (two users of one item) mixed by the founding document's ``α``; content–behaviour
alignment (an item's ID side vs its content side); augmentation (SimGCL noise views); and a
social view (friends) when the data has a user graph.
``contrastive_mode`` ``joint`` adds the contrastive terms to every batch; ``separate`` gives
them their own batches, a ``contrastive_share`` of each epoch. With ``adversarial_eps`` > 0
the supervised loss is also paid at adversarially perturbed user and item vectors (APR,
:mod:`clrec.training.adversarial`); the contrastive terms are left as they are. With
``denoise_drop_rate`` > 0 (softmax objectives) each batch leaves out its share of positive
pairs with the largest loss, the truncated loss against noisy positives
(:func:`clrec.losses.softmax.truncated_mean`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from clrec.data.schema import Dataset
from clrec.errors import ClrecError
from clrec.losses.alignment import alignment_loss
from clrec.losses.augmentation import view_contrast_loss
from clrec.losses.bce import bce_loss
from clrec.losses.bpr import bpr_loss, l2_penalty
from clrec.losses.cosine_contrastive import cosine_contrastive_loss
from clrec.losses.cross_user import cross_user_loss
from clrec.losses.intra_user import intra_user_loss
from clrec.losses.mse import mse_loss
from clrec.losses.objective import combine
from clrec.losses.social import social_loss
from clrec.losses.softmax import catalogue_softmax_loss, sampled_catalogue_softmax_loss
from clrec.models.clrec.config import SAMPLED, ClrecConfig
from clrec.models.clrec.network import ClrecNetwork, StepRows
from clrec.training.adversarial import adversarial_loss
from clrec.training.pairs import ContrastivePairSampler, FriendPairs
from clrec.training.sampling import NegativeSampler

NOT_A_NEGATIVE = -1e9  # a sampled item's score where it is the user's own positive


@dataclass(frozen=True)
class Batch:
    """One step's users (and, for separate contrastive batches, its kind) and its seed."""

    users: np.ndarray  # (B,) int64
    kind: Literal["supervised", "contrastive", "joint"]
    seed: int
    epoch: int = 1


@dataclass
class Supervision:
    """A batch's supervised draws: positive pairs (batch row, item) and, by objective, the
    shared sampled items with their accidental hits, a negative per pair, or the ratings."""

    pair_rows: np.ndarray  # (P,) row in the batch
    positives: np.ndarray  # (P,) item
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hits: np.ndarray | None = None  # (B, K) bool: a sampled item is the row's own positive
    correction: np.ndarray | None = None  # (K,) −log(K · q) of non-uniform samples
    targets: np.ndarray | None = None  # (P,) ratings


@dataclass
class StepPlan:
    """Everything one step draws, and the user and item rows its losses read (``item_rows``
    None: every item, as the full-catalogue softmax needs)."""

    users: np.ndarray  # (B,) the batch
    supervised: Supervision | None
    intra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # owners, first, second
    cross: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # item, user, user
    aligned: np.ndarray | None = None  # items whose ID and content sides are aligned
    augmented: np.ndarray | None = None  # items of the SimGCL views
    social: tuple[np.ndarray, np.ndarray] | None = None  # user, friend
    user_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    item_rows: np.ndarray | None = None
    block: sp.csr_matrix | None = None  # the user rows' pooling weights (history_cap applied)


class TrainingPlan:
    """Batches and per-batch losses of one fit: samplers built once from the training data."""

    def __init__(
        self, config: ClrecConfig, network: ClrecNetwork, train: Dataset, device: torch.device
    ) -> None:
        self.config = config
        self.network = network
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
        self.sampling_q, self.sampling_cdf = sampling_distribution(matrix, self.config)
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
        """Supervised and / or contrastive loss of one batch, with its parts for the logs.

        Every random draw of the batch comes first (:meth:`_plan`), so the step knows which
        user and item rows it needs and computes only those (:meth:`ClrecNetwork.rows`)."""
        config = self.config
        generator = torch.Generator().manual_seed(batch.seed)
        rng = np.random.default_rng(batch.seed)
        self.pairs.rng = rng  # every draw of this batch from its own seed: exact resumption
        if self.friends is not None:
            self.friends.rng = rng
        plan = self._plan(batch, rng)
        rows = self.network.rows(plan.user_rows, plan.item_rows, generator, block=plan.block)
        supervised = None
        if plan.supervised is not None:
            rate = self.denoise_rate(batch.epoch)
            supervised = self._supervised(batch.users, plan.supervised, rows, rate)
        terms = self._contrastive(plan, rows, generator)
        total, parts = combine(supervised, terms, config.weights)
        if config.l2_weight > 0:
            index = torch.as_tensor(batch.users, device=self.device)
            table = self.network.user_table
            penalty = l2_penalty(
                nn.functional.embedding(index, table, sparse=config.sparse_updates)
            )
            total = total + config.l2_weight * penalty
            parts["l2"] = float(penalty.detach())
        return total, parts

    # ------------------------------------------------------------------ drawing the step
    def _plan(self, batch: Batch, rng: np.random.Generator) -> StepPlan:
        """Every index the batch's losses read, drawn in a fixed order from ``rng``, and the
        user and item rows they need (with the items those users pool)."""
        config, weights = self.config, self.config.weights
        supervised = None
        if batch.kind != "contrastive":
            supervised = self._supervised_draws(batch.users, rng)
        plan = StepPlan(batch.users, supervised)
        if batch.kind != "supervised" and self.uses_contrast:
            if weights.contrastive > 0:
                plan.intra = self.pairs.intra_user(batch.users)
                plan.cross = self.pairs.cross_user(self._batch_items(batch.users))
            if weights.alignment > 0 and self.network.fusion is not None:
                plan.aligned = self._batch_items(batch.users)
            if weights.augmentation > 0:
                plan.augmented = self._batch_items(batch.users)
            if weights.social > 0 and self.friends is not None:
                plan.social = self.friends.sample(batch.users)
        users = [batch.users]
        if plan.cross is not None:
            users += [plan.cross[1], plan.cross[2]]
        if plan.social is not None:
            users += list(plan.social)
        plan.user_rows = np.unique(np.concatenate(users)).astype(np.int64)
        plan.block = self.network.pooling_block(plan.user_rows, rng)  # drawn last
        if supervised is None or config.supervised != "softmax":  # else: the whole catalogue
            pooled = np.zeros(0, dtype=np.int64) if plan.block is None else plan.block.indices
            items = [pooled.astype(np.int64)]
            if supervised is not None:
                items += [supervised.positives, supervised.negatives]
            if plan.intra is not None:
                items += [plan.intra[1], plan.intra[2]]
            items += [part for part in (plan.aligned, plan.augmented) if part is not None]
            plan.item_rows = np.unique(np.concatenate(items)).astype(np.int64)
        return plan

    def _supervised_draws(self, users: np.ndarray, rng: np.random.Generator) -> Supervision:
        """The batch's positive pairs and, by objective, its sampled items or negatives."""
        config = self.config
        rows = self.matrix[users]
        row_index, item_index = rows.nonzero()
        drawn = Supervision(row_index.astype(np.int64), item_index.astype(np.int64))
        if config.supervised in SAMPLED:
            n_items = rows.shape[1]
            count = min(config.softmax_samples, n_items)
            if self.sampling_cdf is None:
                sampled = rng.integers(0, n_items, size=count)  # (K,)
            else:  # by the sampling distribution: its CDF searched, O(K log I)
                sampled = np.searchsorted(self.sampling_cdf, rng.random(count), side="right")
                sampled = np.minimum(sampled, n_items - 1)
                assert self.sampling_q is not None
                drawn.correction = -np.log(count * self.sampling_q[sampled])  # (K,)
            drawn.negatives = sampled.astype(np.int64)
            drawn.hits = rows[:, sampled].toarray() > 0  # (B, K)
        elif config.supervised == "mse":
            assert self.ratings is not None
            drawn.targets = np.asarray(self.ratings[users][row_index, item_index]).ravel()
        elif config.supervised in ("bpr", "bce"):
            assert self.negatives is not None
            self.negatives.rng = rng
            drawn.negatives = np.asarray(self.negatives.sample(users[row_index]), np.int64)
        return drawn

    # ------------------------------------------------------------------ the losses
    def _supervised(
        self, users: np.ndarray, drawn: Supervision, rows: StepRows, drop_rate: float
    ) -> Tensor:
        """The batch's supervised loss; with ``adversarial_eps`` > 0 plus the APR term: the
        same loss on the scored vectors moved by their worst-case step (per row, norm eps)."""
        config = self.config
        user_vectors = self._similarity_space(rows.users[rows.user_at(users)])  # (B, D)
        items_space = self._similarity_space(rows.items)  # (n_i, D)
        loss_of = self._supervised_loss(drawn, rows, drop_rate)
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
        self, drawn: Supervision, rows: StepRows, drop_rate: float = 0.0
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """The supervised loss as a function of the batch users' ``(B, D)`` vectors and the
        step's ``(n_i, D)`` item vectors (similarity space), its targets and negatives drawn
        once, so an adversarial second evaluation sees the same ones. ``drop_rate``: the
        truncated loss's share (softmax objectives)."""
        config = self.config
        pair_rows = torch.as_tensor(drawn.pair_rows, device=self.device)  # (P,) into the batch
        positives = rows.item_at(drawn.positives)  # (P,)
        tau = config.temperature
        if config.supervised == "softmax":

            def softmax(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                logits = user_vectors @ items_space.T  # (B, I)
                return catalogue_softmax_loss(logits, pair_rows, positives, tau, drop_rate)

            return softmax
        if config.supervised in SAMPLED:
            sampled = rows.item_at(drawn.negatives)  # (K,)
            hits = torch.as_tensor(drawn.hits, device=self.device)  # (B, K)

            def scored(user_vectors: Tensor, items_space: Tensor) -> tuple[Tensor, Tensor]:
                """The pairs' ``(P,)`` scores and the rows' ``(B, K)`` scores of the shared
                samples, each row's own positives among them masked as no negative."""
                scores = user_vectors @ items_space[sampled].T  # (B, K)
                pair_vectors = user_vectors[pair_rows]  # (P, D)
                positive_scores = (pair_vectors * items_space[positives]).sum(dim=1)  # (P,)
                return positive_scores, scores.masked_fill(hits, NOT_A_NEGATIVE)

            if config.supervised == "cosine_contrastive":

                def cosine_contrastive(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                    positive_scores, sampled_scores = scored(user_vectors, items_space)
                    return cosine_contrastive_loss(
                        positive_scores,
                        sampled_scores,
                        pair_rows,
                        config.margin,
                        config.negative_weight,
                        drop_rate,
                    )

                return cosine_contrastive
            correction: float | Tensor = math.log(self.n_items / len(drawn.negatives))
            if drawn.correction is not None:
                correction = torch.as_tensor(drawn.correction, dtype=torch.float32)

            def sampled_softmax(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                positive_scores, sampled_scores = scored(user_vectors, items_space)
                return sampled_catalogue_softmax_loss(
                    positive_scores, sampled_scores, pair_rows, tau, correction, drop_rate
                )

            return sampled_softmax
        if config.supervised == "mse":
            target = torch.as_tensor(drawn.targets, device=self.device)  # (P,)

            def mse(user_vectors: Tensor, items_space: Tensor) -> Tensor:
                pair_vectors = user_vectors[pair_rows]  # (P, D)
                positive_scores = (pair_vectors * items_space[positives]).sum(dim=1)  # (P,)
                # the predicted rating is the score the model serves: similarity / temperature
                return mse_loss(positive_scores / tau, target)

            return mse
        negatives = rows.item_at(drawn.negatives)  # (P,)

        def sampled_loss(user_vectors: Tensor, items_space: Tensor) -> Tensor:
            pair_vectors = user_vectors[pair_rows]  # (P, D)
            positive_scores = (pair_vectors * items_space[positives]).sum(dim=1)  # (P,)
            negative_scores = (pair_vectors * items_space[negatives]).sum(dim=1)  # (P,)
            if config.supervised == "bpr":
                return bpr_loss(positive_scores / tau, negative_scores / tau)
            scores = torch.cat([positive_scores, negative_scores]) / tau  # (2P,)
            ones, zeros = torch.ones_like(positive_scores), torch.zeros_like(negative_scores)
            return bce_loss(scores, torch.cat([ones, zeros]))

        return sampled_loss

    def _contrastive(
        self, plan: StepPlan, rows: StepRows, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """The contrastive terms the plan drew pairs for."""
        config = self.config
        tau = config.contrast_temperature
        terms: dict[str, Tensor] = {}
        device = self.device
        if plan.intra is not None and len(plan.intra[0]) > 1:
            owners, first, second = plan.intra
            terms["intra_user"] = intra_user_loss(
                rows.items[rows.item_at(first)],
                rows.items[rows.item_at(second)],
                tau,
                users=torch.as_tensor(owners, device=device),
            )
        if plan.cross is not None and len(plan.cross[0]) > 1:
            shared, first_user, second_user = plan.cross
            terms["cross_user"] = cross_user_loss(
                rows.users[rows.user_at(first_user)],
                rows.users[rows.user_at(second_user)],
                tau,
                items=torch.as_tensor(shared, device=device),
            )
        if plan.aligned is not None and rows.content is not None:
            index = torch.as_tensor(plan.aligned, device=device)
            has_content = torch.stack(
                [self.network.present[m][index] for m in self.network.content_names]
            ).any(0)
            index = index[has_content]
            if len(index) > 1:
                at = rows.item_at(index.cpu().numpy())
                terms["alignment"] = alignment_loss(
                    rows.item_id[at], rows.content[at], tau, ids=index
                )
        if plan.augmented is not None:  # two noisy views of the batch's users and items
            batch = np.unique(plan.users)
            block = plan.block
            if block is not None:  # the batch users' rows of the step's (capped) pooling
                block = block[np.searchsorted(plan.user_rows, batch)]
            views = [
                self.network.rows(batch, plan.item_rows, generator, config.noise_eps, block)
                for _ in range(2)
            ]
            u = [view.user_at(plan.users) for view in views]
            i = [view.item_at(plan.augmented) for view in views]
            terms["augmentation"] = view_contrast_loss(
                views[0].users[u[0]], views[1].users[u[1]], tau
            ) + view_contrast_loss(views[0].items[i[0]], views[1].items[i[1]], tau)
        if plan.social is not None and len(plan.social[0]) > 1:
            sources, friends = plan.social
            terms["social"] = social_loss(
                rows.users[rows.user_at(sources)],
                rows.users[rows.user_at(friends)],
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


def sampling_distribution(
    matrix: sp.csr_matrix, config: ClrecConfig
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The sampled items' probabilities ``q`` ``(I,)`` and their CDF (None, None for
    uniform sampling): popularity ``count ** popularity_exponent``, or half uniform and half
    that ("mixed"; every item keeps a chance)."""
    if config.supervised not in SAMPLED or config.negative_sampling == "uniform":
        return None, None
    counts = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()  # (I,)
    popular = counts**config.popularity_exponent
    popular = popular / popular.sum() if popular.sum() > 0 else np.full(len(counts), 1.0)
    q = popular
    if config.negative_sampling == "mixed":
        q = 0.5 * popular + 0.5 / len(counts)
    q = q / q.sum()
    return q, np.cumsum(q)
