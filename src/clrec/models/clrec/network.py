"""The clrec model's network: ID tables, content fusion and the pooled-history graph.

Representations (all ``D``-dimensional):

* item ``i``: ``e_i = id_i + content_i`` — a trained ID vector (zero for an item with no
  training interaction) plus the fused projection of its content modalities
  (:class:`~clrec.models.fusion.ModalityFusion`). During training the ID part is dropped
  for a random share of items (``id_dropout``, as in DropoutNet), so the content path alone
  must score well: that is what lets a brand-new item be recommended from its text / image.
* user ``u``: ``id_u + Σ_i w_ui e_i / Σ_i w_ui`` over their training items — the user's ID
  vector plus the (optionally recency-weighted) mean of their items' vectors (the user-level
  feature matrix of the founding document); a new user is represented from items alone.
* optional LightGCN propagation of both over the user–item graph (``n_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from clrec.data.schema import Dataset
from clrec.losses.augmentation import simgcl_noise
from clrec.models.clrec.config import ClrecConfig
from clrec.models.fusion import ModalityFusion
from clrec.models.lightgcn import normalized_adjacency, propagate, to_torch_csr


def recency_weights(interactions: pd.DataFrame, half_life: float | None) -> np.ndarray | None:
    """Per-interaction history weights ``0.5 ** (k / half-life)``, k = 0 for each user's
    latest item (None when the setting is off or the data has no timestamps)."""
    clock = next((c for c in ("timestamp", "position") if c in interactions.columns), None)
    if half_life is None or clock is None:
        return None
    order = interactions.groupby("user")[clock].rank(method="first", ascending=False) - 1.0
    weights: np.ndarray = 0.5 ** (order.to_numpy(dtype=np.float64) / half_life)
    return weights


def history_matrix(train: Dataset, config: ClrecConfig) -> sp.csr_matrix:
    """The training history ``(U, I)`` float32: each user's items weighted by recency
    (repeated pairs add up), or 1 per distinct item without ``history_half_life``. Users pool
    it (row-normalised) and the EASE prior reads it."""
    inter = train.interactions
    users = inter["user"].to_numpy(dtype=np.int64)
    items = inter["item"].to_numpy(dtype=np.int64)
    weights = recency_weights(inter, config.history_half_life)
    values = np.ones(len(users), dtype=np.float32) if weights is None else weights
    matrix = sp.csr_matrix(
        (values.astype(np.float32), (users, items)), shape=(train.n_users, train.n_items)
    )
    matrix.sum_duplicates()
    if weights is None:
        matrix.data[:] = 1.0
    return matrix


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
        self.pooling: sp.csr_matrix | None = None  # (U, I) row-normalised, scipy
        self.history: Tensor | None = None  # (U, I) row-normalised sparse CSR
        self.history_t: Tensor | None = None  # (I, U) its transpose, for the backward pass
        self.adjacency: Tensor | None = None  # (U + I, U + I) sparse CSR
        self.isolated: Tensor | None = None  # (U + I,) bool: nodes without edges

    def attach_graph(self, history: sp.csr_matrix, device: torch.device) -> None:
        """Build the pooling and propagation matrices from the training history ``(U, I)``
        (see :func:`history_matrix`): a user pools the weighted mean of their items."""
        n_users, n_items = self.user_table.shape[0], self.item_table.shape[0]
        binary = history.copy()
        binary.data[:] = 1.0
        known = np.asarray(binary.sum(axis=0)).ravel() > 0
        self.item_known = torch.from_numpy(known).to(device)
        degree = np.asarray(binary.sum(axis=1), dtype=np.float32).ravel()
        totals = np.asarray(history.sum(axis=1), dtype=np.float32).ravel()
        scale = sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0))
        pooling = (scale @ history).tocsr()
        self.pooling = pooling  # (U, I) scipy CSR: a step slices its users' rows
        self.history = to_torch_csr(pooling, device)
        self.history_t = to_torch_csr(pooling.T.tocsr(), device)
        if self.config.n_layers:
            users, items = binary.nonzero()
            self.adjacency = to_torch_csr(
                normalized_adjacency(users, items, n_users, n_items), device
            )
            node_degree = np.concatenate([degree, np.asarray(binary.sum(axis=0)).ravel()])
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

    def pooling_block(
        self, users: np.ndarray, rng: np.random.Generator | None = None
    ) -> sp.csr_matrix | None:
        """The rows of ``users`` in the pooling matrix ``(n_u, I)`` (row-normalised weights;
        None without pooled history); with ``history_cap`` and ``rng``, a row longer than the
        cap is replaced by ``history_cap`` draws of its items (uniform, with replacement: a
        cost of ``cap`` per user however long the history), its weights renormalised."""
        if not self.config.use_history or self.pooling is None:
            return None
        block: sp.csr_matrix = self.pooling[users]
        cap = self.config.history_cap
        lengths = np.diff(block.indptr)  # (n_u,)
        heavy = np.flatnonzero(lengths > cap) if cap is not None else np.zeros(0, np.int64)
        if cap is None or rng is None or not len(heavy):
            return block
        starts = block.indptr[heavy]  # (h,)
        picks = starts[:, None] + (rng.random((len(heavy), cap)) * lengths[heavy, None]).astype(
            np.int64
        )  # (h, cap) positions in the block's data
        light = np.flatnonzero(lengths <= cap)
        rows = np.concatenate([np.repeat(light, lengths[light]), np.repeat(heavy, cap)])
        positions = np.concatenate(
            [np.arange(block.nnz)[np.repeat(lengths <= cap, lengths)], picks.ravel()]
        )
        sampled = sp.csr_matrix(
            (block.data[positions], (rows, block.indices[positions])), shape=block.shape
        )
        sampled.sum_duplicates()  # an item drawn twice counts twice
        totals = np.asarray(sampled.sum(axis=1)).ravel()  # (n_u,)
        sampled.data /= np.repeat(totals, np.diff(sampled.indptr)).astype(np.float32)
        return sampled

    def rows(
        self,
        users: np.ndarray,
        items: np.ndarray | None,
        generator: torch.Generator | None = None,
        noise_eps: float = 0.0,
        block: sp.csr_matrix | None = None,
    ) -> StepRows:
        """The vectors of ``users`` and ``items`` only (sorted unique rows; ``items`` None:
        every item), what one step needs: its cost grows with the rows and their histories,
        not with the catalogue. ``block`` is the users' pooling block
        (:meth:`pooling_block`; None: their full rows); ``items`` must hold every item it
        names. The ID-dropout and modality-dropout draws are taken for the
        given item rows, in order, so with every item given they are the full pass's draws.
        With LightGCN propagation (``n_layers``) the whole graph is needed: every row."""
        if self.config.n_layers:
            all_users, all_items, item_id, content = self.embeddings(generator, noise_eps)
            return StepRows(None, all_users, None, all_items, item_id, content)
        index = None if items is None else torch.as_tensor(items, device=self.item_table.device)
        sparse = self.config.sparse_updates  # the tables' gradients name the rows looked up
        item_id = (
            self.item_table
            if index is None
            else nn.functional.embedding(index, self.item_table, sparse=sparse)
        )  # (n_i, D)
        known = self.item_known if index is None else self.item_known[index]  # (n_i,)
        item_id = item_id * known.unsqueeze(1)
        content = None
        if self.fusion is not None:
            features = {m: v if index is None else v[index] for m, v in self.content.items()}
            present = {m: v if index is None else v[index] for m, v in self.present.items()}
            content = self.fusion(features, present, generator)  # (n_i, D)
        kept_id = item_id
        if self.training and self.config.id_dropout > 0:
            draws = torch.rand(item_id.shape[0], generator=generator).to(item_id.device)
            kept_id = item_id * (draws >= self.config.id_dropout).unsqueeze(1)
        vectors = kept_id if content is None else kept_id + content  # (n_i, D)
        user_index = torch.as_tensor(users, device=self.user_table.device)
        user_vectors = nn.functional.embedding(user_index, self.user_table, sparse=sparse)
        if block is None:
            block = self.pooling_block(users)  # (n_u, I) scipy, its users' rows only
        if block is not None:
            if items is not None:  # columns → positions among the given items
                block = sp.csr_matrix(
                    (block.data, np.searchsorted(items, block.indices), block.indptr),
                    shape=(len(users), len(items)),
                )
            device = vectors.device
            pooled = _SparseMM.apply(  # type: ignore[no-untyped-call]
                to_torch_csr(block, device), to_torch_csr(block.T.tocsr(), device), vectors
            )
            user_vectors = user_vectors + pooled  # (n_u, D)
        if noise_eps > 0:
            user_vectors = simgcl_noise(user_vectors, noise_eps, generator)
            vectors = simgcl_noise(vectors, noise_eps, generator)
        return StepRows(users, user_vectors, items, vectors, item_id, content)


@dataclass(frozen=True)
class StepRows:
    """One step's vectors: ``users`` ``(n_u, D)`` for the user rows ``user_index`` and
    ``items`` ``(n_i, D)`` (with their ID and content parts) for ``item_index`` (None: every
    row, in order). :meth:`user_at` / :meth:`item_at` map model rows to positions."""

    user_index: np.ndarray | None
    users: Tensor
    item_index: np.ndarray | None
    items: Tensor
    item_id: Tensor
    content: Tensor | None

    def user_at(self, rows: np.ndarray) -> Tensor:
        """Positions ``(n,)`` of the model's user ``rows`` in :attr:`users`."""
        return _positions(self.user_index, rows, self.users.device)

    def item_at(self, rows: np.ndarray) -> Tensor:
        """Positions ``(n,)`` of the model's item ``rows`` in :attr:`items`."""
        return _positions(self.item_index, rows, self.items.device)


def _positions(index: np.ndarray | None, rows: np.ndarray, device: torch.device) -> Tensor:
    rows = np.asarray(rows, dtype=np.int64)
    found = rows if index is None else np.searchsorted(index, rows)
    return torch.as_tensor(found, device=device)
