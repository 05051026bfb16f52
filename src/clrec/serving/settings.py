"""Settings of the recommendation service: one validated, immutable object.

Nothing here reads the environment or the command line: ``clrec serve`` builds a
:class:`ServiceSettings` from its options and hands it to :func:`clrec.serving.app.create_app`
(or, for several worker processes, to each worker as JSON; see
:func:`clrec.serving.app.create_app_from_env`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clrec.errors import ClrecError
from clrec.serving.index import IndexConfig

DB_FILE = "service.db"
"""Name of the SQLite database in the data folder when no database URL is given."""


def default_database_url(data_dir: str | Path) -> str:
    """The SQLite URL of ``service.db`` inside ``data_dir`` (an absolute path, so worker
    processes started elsewhere open the same file)."""
    return f"sqlite:///{(Path(data_dir).expanduser().resolve() / DB_FILE).as_posix()}"


class ServiceSettings(BaseModel):
    """Everything the service needs to start; validated once, then frozen.

    * ``artifact``: the folder :func:`clrec.serving.artifact.export_artifact` wrote.
    * ``data_dir`` / ``database_url``: where API keys, events and API-added items live; the
      default is a SQLite file ``service.db`` in ``data_dir``. Any SQLAlchemy URL works
      (``postgresql+psycopg://...``); the store uses portable SQL only.
    * ``index``: the item index (exact or HNSW). Its metric must be ``dot``: artifact vectors
      are already in the model's scoring space (normalised for cosine models).
    * ``header_timeout_s``: a connection whose request headers are not complete this long
      after it opened (or after its previous response) is closed
      (:mod:`clrec.serving.protocol`: slow clients cannot hold connections open).
    * ``max_encode_waiting``: requests that may wait for the text encoder (profile texts,
      items written through the API); one more is answered 503 with ``Retry-After``
      (:mod:`clrec.serving.encoding`).
    * ``new_store``: accept a store other than the one ``data_dir`` recorded (an emptied,
      replaced or moved database: :mod:`clrec.serving.store_guard`), starting over on it;
      without it such a store is refused.
    * ``index_cache``: keep a built HNSW graph in ``data_dir/index-cache/`` and load it at
      the next start with the same artifact and index settings.
    * ``ranker``: load the artifact's ranking stage (when it has one: LambdaRank over several
      retrievers' candidates, :mod:`clrec.ranking.stage`), or ``off``; requests opt in with
      ``rerank=true``.
    * ``realtime_users``: a known user's vector follows their recorded events at once (the
      model rebuilds it from their history: :meth:`~clrec.models.embedding.EmbeddingModel.
      add_event`); off, it stays as trained and events only exclude items (users known only
      by events are built from them either way).
    * ``max_k``: the largest k a request may ask for; ``rescore_margin``: how many extra
      candidates the index returns for the exact re-scoring of known users when the model
      scores more than the dot product (an EASE prior re-orders the index's candidates).
    * ``max_body_bytes`` / ``max_events``: request size limits (413 / 422 beyond them).
    * ``rate_limit_per_s`` / ``rate_limit_burst``: token bucket per API key (0: no limit).
    * ``auth_required``: refuse requests without a valid API key (off only for local tries).
    * ``key_cache_s``: how long a worker trusts a verified key before asking the database
      again, which bounds how long a revoked key keeps working (0: ask on every request).
    * ``sync_interval_s``: how often a worker reads events and items other workers wrote to
      the shared database (None: never, for a single worker).
    * ``recall_sample``: user vectors sampled to measure the index's recall@10 at start.
    * ``log_level`` / ``log_requests`` / ``mask_patterns``: the ``clrec.serving`` loggers'
      level, one line per request, and extra regexes for the privacy masker.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    artifact: Path
    data_dir: Path = Path("clrec-service")
    database_url: str | None = None
    new_store: bool = False
    index: IndexConfig = Field(default_factory=IndexConfig)
    verify_artifact: bool = True
    index_cache: bool = True
    ranker: Literal["on", "off"] = "on"
    realtime_users: bool = True
    max_k: int = Field(default=100, ge=1, le=10_000)
    rescore_margin: int = Field(default=100, ge=0, le=100_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_events: int = Field(default=1000, ge=1)
    rate_limit_per_s: float = Field(default=50.0, ge=0.0)
    rate_limit_burst: int = Field(default=100, ge=1)
    header_timeout_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    max_encode_waiting: int = Field(default=8, ge=1, le=10_000)
    auth_required: bool = True
    key_cache_s: float = Field(default=1.0, ge=0.0)
    sync_interval_s: float | None = Field(default=1.0, ge=0.0)
    recall_sample: int = Field(default=256, ge=1)
    log_level: str = "INFO"
    log_requests: bool = True
    mask_patterns: tuple[str, ...] = ()

    @field_validator("index")
    @classmethod
    def _dot_metric(cls, value: IndexConfig) -> IndexConfig:
        if value.metric != "dot":
            raise ClrecError(
                "the service index must use metric='dot': artifact vectors are already in "
                f"the model's scoring space, got metric={value.metric!r}"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"unknown log level {value!r}")
        return level

    @property
    def db_url(self) -> str:
        """The database URL in force: ``database_url``, else SQLite in ``data_dir``."""
        return self.database_url or default_database_url(self.data_dir)

    def to_json(self) -> str:
        """JSON that :meth:`from_json` turns back into equal settings."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        """Settings from :meth:`to_json`'s output; invalid JSON is a ClrecError."""
        try:
            return cls.model_validate_json(text)
        except ValueError as error:
            raise ClrecError(f"invalid service settings: {error}") from None


__all__ = ["DB_FILE", "ServiceSettings", "default_database_url"]
