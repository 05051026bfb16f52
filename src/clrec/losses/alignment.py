"""Content–behaviour alignment: an item's ID-side and content-side vectors are a positive pair.

The behaviour tower learns an item from its interactions (an ID embedding, possibly propagated
over the graph); the content tower reads the item's text or image through a pretrained
encoder. Aligning the two lets content stand in for behaviour where behaviour is missing
(long-tail and brand-new items). The loss is symmetric cosine InfoNCE, as in CLIP: each
behaviour vector must pick out its own content vector among the batch's, and vice versa.
``ids`` masks an item that appears twice in the batch out of its own negatives.
"""

from __future__ import annotations

from torch import Tensor

from clrec.losses.infonce import info_nce


def alignment_loss(
    behaviour: Tensor,
    content: Tensor,
    temperature: float,
    *,
    ids: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE between ``(B, D)`` behaviour and content vectors of the same items."""
    return info_nce(behaviour, content, temperature, ids=ids, symmetric=True)
