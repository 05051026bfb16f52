"""Intra-user contrast: two items of the same user are a positive pair.

This is the founding document's intra-user contrast (``L_contrast``). A user's history is
treated as one coherent taste, so the representations of any two different items the user
interacted with should be closer to each other than to items of other users in the batch.
Row ``i`` holds two such items of one user; the other rows' second items are the negatives.
A user who appears in several rows is masked out of their own negatives (``users``), because
their items are not evidence of a different taste. The loss is cosine InfoNCE
(:func:`clrec.losses.infonce.info_nce`).
"""

from __future__ import annotations

from torch import Tensor

from clrec.losses.infonce import info_nce


def intra_user_loss(
    first_items: Tensor,
    second_items: Tensor,
    temperature: float,
    *,
    users: Tensor | None = None,
) -> Tensor:
    """InfoNCE between ``(B, D)`` embeddings of two different items of each row's user.

    ``users`` (``(B,)`` int64) is each row's user id; rows of the same user are not negatives.
    """
    return info_nce(first_items, second_items, temperature, ids=users)
