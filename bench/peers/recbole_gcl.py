"""SimGCL and XSimGCL as RecBole models (runs in the RecBole venv, never imports clrec).

RecBole-GNN, which ships these two, is not on the package index, so the peer harness brings
them in as subclasses of RecBole 1.2.1's own LightGCN, written here from the papers:

* SimGCL (Yu et al., SIGIR 2022): two extra forward passes per batch in which every
  propagation layer's output gets uniform noise of norm ``eps`` in the sign direction of the
  embedding; InfoNCE (temperature ``temperature``) between the two views of the batch's
  distinct users and of its distinct positive items, weighted by ``lambda``. The final
  embedding is the mean of the propagated layers (layer 0 excluded, as in the paper).
* XSimGCL (Yu et al., TKDE 2023): one noisy forward pass; the contrast is between the final
  embedding and the ``layer_cl``-th layer's output of that same pass.

The contrastive loss is the mean over the batch (the authors' form; ``../shared/ANCHORS.md``
explains why not the summed one). Defaults are the papers' settings for a 2-layer model.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.lightgcn import LightGCN
from torch import Tensor
from torch.nn import functional as F  # noqa: N812  (the usual torch alias)

SIMGCL_DEFAULTS: dict[str, float | int] = {
    "embedding_size": 64,
    "n_layers": 2,
    "reg_weight": 1e-4,
    "lambda": 0.5,
    "eps": 0.1,
    "temperature": 0.2,
}
XSIMGCL_DEFAULTS: dict[str, float | int] = {
    "embedding_size": 64,
    "n_layers": 2,
    "reg_weight": 1e-4,
    "lambda": 0.2,
    "eps": 0.2,
    "temperature": 0.15,
    "layer_cl": 1,
}


def info_nce(view_a: Tensor, view_b: Tensor, temperature: float) -> Tensor:
    """Mean InfoNCE between two views ``(N, D)``: row i of each is the positive pair."""
    a = F.normalize(view_a, dim=1)  # (N, D)
    b = F.normalize(view_b, dim=1)  # (N, D)
    logits = a @ b.T / temperature  # (N, N)
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


class _NoisyLightGCN(LightGCN):
    """LightGCN whose propagation can add SimGCL's noise and return every layer."""

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.cl_weight = float(config["lambda"])
        self.eps = float(config["eps"])
        self.temperature = float(config["temperature"])

    def propagate(self, noisy: bool) -> list[Tensor]:
        """Outputs of layers 1..L, each ``(U + I, D)``."""
        embeddings = self.get_ego_embeddings()  # (U + I, D)
        layers = []
        for _ in range(self.n_layers):
            embeddings = torch.sparse.mm(self.norm_adj_matrix, embeddings)
            if noisy:
                noise = F.normalize(torch.rand_like(embeddings), dim=1) * self.eps
                embeddings = embeddings + torch.sign(embeddings) * noise
            layers.append(embeddings)
        return layers

    def split(self, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """``(U + I, D)`` → users ``(U, D)``, items ``(I, D)``."""
        users, items = torch.split(embeddings, [self.n_users, self.n_items])
        return users, items

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.split(torch.stack(self.propagate(noisy=False), dim=1).mean(dim=1))

    def contrast(self, interaction, view_a: Tensor, view_b: Tensor) -> Tensor:
        """Weighted InfoNCE over the batch's distinct users and positive items."""
        users = torch.unique(interaction[self.USER_ID])
        items = torch.unique(interaction[self.ITEM_ID])
        users_a, items_a = self.split(view_a)
        users_b, items_b = self.split(view_b)
        loss = info_nce(users_a[users], users_b[users], self.temperature)
        loss = loss + info_nce(items_a[items], items_b[items], self.temperature)
        return self.cl_weight * loss


class SimGCL(_NoisyLightGCN):
    """LightGCN's BPR + L2 loss plus InfoNCE between two noise-perturbed views."""

    def calculate_loss(self, interaction):
        loss = super().calculate_loss(interaction)
        view_a = torch.stack(self.propagate(noisy=True), dim=1).mean(dim=1)
        view_b = torch.stack(self.propagate(noisy=True), dim=1).mean(dim=1)
        return loss + self.contrast(interaction, view_a, view_b)


class XSimGCL(_NoisyLightGCN):
    """One noisy pass: BPR on its final embedding, InfoNCE against one of its own layers."""

    def __init__(self, config, dataset) -> None:
        super().__init__(config, dataset)
        self.layer_cl = int(config["layer_cl"])

    def calculate_loss(self, interaction):
        if self.restore_user_e is not None or self.restore_item_e is not None:
            self.restore_user_e, self.restore_item_e = None, None
        layers = self.propagate(noisy=True)
        final = torch.stack(layers, dim=1).mean(dim=1)  # (U + I, D)
        users_all, items_all = self.split(final)
        user = interaction[self.USER_ID]
        positive = interaction[self.ITEM_ID]
        negative = interaction[self.NEG_ITEM_ID]
        u, p, n = users_all[user], items_all[positive], items_all[negative]  # (B, D) each
        bpr = self.mf_loss((u * p).sum(dim=1), (u * n).sum(dim=1))
        reg = self.reg_loss(
            self.user_embedding(user),
            self.item_embedding(positive),
            self.item_embedding(negative),
            require_pow=self.require_pow,
        )
        contrast = self.contrast(interaction, final, layers[self.layer_cl - 1])
        return bpr + self.reg_weight * reg + contrast


CUSTOM_MODELS = {"SimGCL": (SimGCL, SIMGCL_DEFAULTS), "XSimGCL": (XSimGCL, XSIMGCL_DEFAULTS)}
