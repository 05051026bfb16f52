"""Cross-user contrast: two users of the same item are a positive pair.

This is the founding document's cross-user contrast (``L_cross``), the mirror image of the
intra-user term: users who interacted with the same item share some taste, so their
representations should be closer to each other than to the users of other items in the batch.
Row ``i`` holds two different users of one item; the other rows' second users are the
negatives. An item that appears in several rows is masked out of its own negatives
(``items``). The loss is cosine InfoNCE (:func:`clrec.losses.infonce.info_nce`).
"""

from __future__ import annotations

from torch import Tensor

from clrec.losses.infonce import info_nce


def cross_user_loss(
    first_users: Tensor,
    second_users: Tensor,
    temperature: float,
    *,
    items: Tensor | None = None,
) -> Tensor:
    """InfoNCE between ``(B, D)`` embeddings of two different users of each row's item.

    ``items`` (``(B,)`` int64) is each row's item id; rows of the same item are not negatives.
    """
    return info_nce(first_users, second_users, temperature, ids=items)
