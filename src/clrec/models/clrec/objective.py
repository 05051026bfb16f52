"""The clrec model's training plan: an epoch's batches and one batch's loss.

The supervised loss is a softmax over the whole catalogue computed per user (one ``(B, I)``
logit block serves all of a batch's users' positives, so an epoch costs ``U × I`` logits, not
``|R| × I``), the same softmax against ``softmax_samples`` items drawn once per batch
(``sampled_softmax``: ``U × K``), BPR / BCE with sampled negatives, or MSE on explicit
ratings. Contrastive terms (weights in :class:`~clrec.losses.objective.LossWeights`):
intra-user (two items of one user), cross-user (two users of one item) mixed by the founding
document's ``α``; content–behaviour alignment (an item's ID side vs its content side);
augmentation (SimGCL noise views); and a social view (friends) when the data has a user graph.
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
from dataclasses import dataclass
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
from clrec.losses.cross_user import cross_user_loss
from clrec.losses.intra_user import intra_user_loss
from clrec.losses.mse import mse_loss
from clrec.losses.objective import combine
from clrec.losses.social import social_loss
from clrec.losses.softmax import catalogue_softmax_loss, sampled_catalogue_softmax_loss
from clrec.models.clrec.config import ClrecConfig
from clrec.models.clrec.network import ClrecNetwork
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
