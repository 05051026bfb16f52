"""Idempotency keys: a client's ``Idempotency-Key`` makes a retried write safe.

The key, the route, a fingerprint of the request and the answer it got are stored in the
``idempotency_keys`` table (:mod:`clrec.serving.store_schema`). An event batch stores its
key in the batch's own transaction, so the batch and its key are both stored or neither: a
retry after a crash, a lost answer or from another worker finds the key and is answered the
same, writing nothing. A key is kept for :data:`IDEMPOTENCY_TTL_S`; the same key with another
request is the client's mistake (:class:`IdempotencyConflictError`, a 422).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from clrec.errors import ClrecError
from clrec.serving.store_schema import idempotency_keys

IDEMPOTENCY_TTL_S = 24 * 3600.0
"""How long a key is remembered; older ones are forgotten at the next keyed write."""


@dataclass(frozen=True)
class Idempotency:
    """A client's ``Idempotency-Key`` for one route and the request's fingerprint."""

    key: str
    route: str
    fingerprint: str


class IdempotencyConflictError(ClrecError):
    """The key was used before for a different request (the service answers 422)."""


def answered(conn: sa.Connection, idempotency: Idempotency) -> dict[str, object] | None:
    """The answer stored for ``idempotency``'s key (None: a new key); a key used for a
    different request raises :class:`IdempotencyConflictError`."""
    table = idempotency_keys
    query = sa.select(table.c.fingerprint, table.c.answer).where(
        (table.c.key == idempotency.key) & (table.c.route == idempotency.route)
    )
    row = conn.execute(query).first()
    if row is None:
        return None
    if row.fingerprint != idempotency.fingerprint:
        raise IdempotencyConflictError(
            "this Idempotency-Key was used for a different request; use a new key for a new request"
        )
    return dict(row.answer)


def remember(
    conn: sa.Connection, idempotency: Idempotency, answer: dict[str, object], now: float
) -> None:
    """Store the key and its answer in ``conn``'s transaction; forget keys older than
    :data:`IDEMPOTENCY_TTL_S`. A key stored meanwhile raises IntegrityError."""
    table = idempotency_keys
    conn.execute(sa.delete(table).where(table.c.created < now - IDEMPOTENCY_TTL_S))
    conn.execute(
        sa.insert(table).values(
            key=idempotency.key,
            route=idempotency.route,
            fingerprint=idempotency.fingerprint,
            answer=answer,
            created=now,
        )
    )


__all__ = [
    "IDEMPOTENCY_TTL_S",
    "Idempotency",
    "IdempotencyConflictError",
    "answered",
    "remember",
]
