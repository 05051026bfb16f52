"""Load and check a serving artifact; :class:`Artifact` hands its model to the service."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from clrec.errors import ClrecError
from clrec.models.embedding import EmbeddingModel
from clrec.models.registry import load_model
from clrec.serving.artifact.export import embedding_model
from clrec.serving.artifact.layout import (
    CATALOGUE_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    MODEL_DIR,
    RANKER_DIR,
    SEEN_FILE,
    USERS_FILE,
    read_manifest,
    verify_files,
)

if TYPE_CHECKING:
    from clrec.ranking.stage import RerankStage


def load_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """Load and check an artifact folder written by
    :func:`~clrec.serving.artifact.export.export_artifact`.

    Checks the format and its version, every file's sha256 (skipped with ``verify=False``,
    for a copy already verified), every shape and that the model's vectors are finite; any
    problem is a :class:`ClrecError` naming the file.
    """
    root = Path(path)
    manifest = read_manifest(root)
    if verify:
        verify_files(root, manifest["files"])
    n_users, n_items, dim = (int(manifest[k]) for k in ("n_users", "n_items", "dim"))
    user_ids = _load_ids(root / USERS_FILE, n_users)
    item_ids = _load_ids(root / ITEMS_FILE, n_items)
    try:
        seen = sp.load_npz(root / SEEN_FILE).tocsr()  # (U, I)
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise ClrecError(f"{root / SEEN_FILE}: unreadable sparse matrix: {error}") from error
    if seen.shape != (n_users, n_items):
        raise ClrecError(
            f"{root / SEEN_FILE}: shape {seen.shape}, but {MANIFEST_FILE} says "
            f"({n_users}, {n_items})"
        )
    try:
        catalogue = pd.read_parquet(root / CATALOGUE_FILE)
    except (OSError, ValueError) as error:
        raise ClrecError(f"{root / CATALOGUE_FILE}: unreadable: {error}") from error
    if "id" not in catalogue.columns or catalogue["id"].astype(str).tolist() != item_ids:
        raise ClrecError(f"{root / CATALOGUE_FILE}: its item ids differ from {ITEMS_FILE}")
    model = _load_model(root / MODEL_DIR, (n_users, n_items, dim))
    return Artifact(root, manifest, model, user_ids, item_ids, seen, catalogue)


def _load_model(directory: Path, shape: tuple[int, int, int]) -> EmbeddingModel:
    """The saved model, checked against the manifest's shape and for finite vectors."""
    try:
        model = embedding_model(load_model(directory), str(directory))
        users, items = model.user_vectors(), model.item_vectors()  # (U, D), (I, D)
    except ClrecError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as error:
        raise ClrecError(f"{directory}: unreadable model: {error}") from error
    n_users, n_items, dim = shape
    if users.shape != (n_users, dim) or items.shape != (n_items, dim):
        raise ClrecError(
            f"{directory}: the model holds {users.shape} user and {items.shape} item vectors, "
            f"but {MANIFEST_FILE} says ({n_users}, {dim}) and ({n_items}, {dim})"
        )
    for what, vectors in (("user", users), ("item", items)):
        if not np.isfinite(vectors).all():
            raise ClrecError(f"{directory}: the model's {what} vectors hold NaN or infinite values")
    return model


def _load_ids(path: Path, count: int) -> list[str]:
    try:
        ids = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClrecError(f"{path}: unreadable id list: {error}") from error
    if not isinstance(ids, list) or len(ids) != count:
        size = len(ids) if isinstance(ids, list) else "no"
        raise ClrecError(f"{path}: holds {size} ids, but {MANIFEST_FILE} says {count}")
    return [str(i) for i in ids]


class Artifact:
    """A loaded, checked artifact: its model, id maps, seen items and catalogue."""

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        model: EmbeddingModel,
        user_ids: list[str],
        item_ids: list[str],
        seen: sp.csr_matrix,
        catalogue: pd.DataFrame,
    ) -> None:
        self.root = root
        self.manifest = manifest
        self.model = model
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.user_index = {external: index for index, external in enumerate(user_ids)}
        self.item_index = {external: index for index, external in enumerate(item_ids)}
        self.seen = seen  # (U, I) CSR: every interaction of the run's data set
        self.catalogue = catalogue

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"])

    @property
    def n_users(self) -> int:
        return int(self.manifest["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def content_modalities(self) -> list[str]:
        """The content modalities the model reads (empty: it cannot embed new items)."""
        featurizer = self.model.featurizer
        return [] if featurizer is None else featurizer.names

    @property
    def item_fields(self) -> dict[str, str]:
        """The catalogue's content fields and their kinds (text, tags, category, image…)."""
        return dict(self.manifest.get("item_fields", {}))

    @property
    def has_ranker(self) -> bool:
        """Whether the artifact carries a ranking stage (``clrec export --ranker``)."""
        return bool(self.manifest.get("ranker"))

    def rerank_stage(self) -> RerankStage:
        """The artifact's ranking stage, loaded."""
        if not self.has_ranker:
            raise ClrecError(
                f"{self.root}: this artifact has no ranking stage; export it with "
                "clrec export --ranker RANKER_DIR"
            )
        from clrec.ranking.stage import RerankStage

        return RerankStage.load(self.root / RANKER_DIR)

    def seen_items(self, user: int) -> np.ndarray:
        """Internal ids ``(H,)`` of the items known ``user`` interacted with in the run's
        data set (a view into :attr:`seen`, without scipy's row slicing)."""
        start, stop = self.seen.indptr[user], self.seen.indptr[user + 1]
        return self.seen.indices[start:stop]

    def embed_items(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """History-space vectors ``(n, D)`` of brand-new items from their content fields,
        e.g. ``{"title": "Heat (1995)", "genres": "Action|Crime"}``: the model's fitted
        featuriser, then the model."""
        return self.model.embed_items(self.featurize(rows))

    def featurize(self, rows: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
        """The model's content matrices ``{modality: (n, d_m)}`` of items from their fields
        (the fitted featuriser and its encoders)."""
        featurizer = self.model.featurizer
        if featurizer is None:
            raise ClrecError(
                f"this {self.model_name!r} model reads no content; a new item cannot be embedded"
            )
        return dict(featurizer.transform(rows))
