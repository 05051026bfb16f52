"""Social contrast: a user and one of their friends are a positive pair.

On data sets with a friend graph (Last.fm's ``user_friends``) a user's browsing behaviour is
contrasted with their social behaviour: the representation a user gets from their own
listening should be closer to a friend's than to the other users in the batch. Row ``i`` holds
a user and one friend; the other rows' friends are the negatives. ``ids`` (the anchor users'
ids) masks a user who appears in several rows out of their own negatives. The loss is cosine
InfoNCE (:func:`clrec.losses.infonce.info_nce`).
"""

from __future__ import annotations

from torch import Tensor

from clrec.losses.infonce import info_nce


def social_loss(
    users: Tensor,
    friends: Tensor,
    temperature: float,
    *,
    ids: Tensor | None = None,
) -> Tensor:
    """InfoNCE between ``(B, D)`` user embeddings and the embeddings of one friend each."""
    return info_nce(users, friends, temperature, ids=ids)
