"""A self-contained, versioned, checksummed serving artifact exported from a training run.

:func:`export_artifact` turns a run folder (see :mod:`clrec.experiment`) into one folder a
recommendation service can load without the training code paths, the data set or the run::

    artifact.json        manifest, written last: format, version, model, shapes, scales,
                         content / encoder settings, test metrics, sha256 of every other file
    user_vectors.npy     (U, D) float32: exactly the user vectors the model scores with
    item_vectors.npy     (I, D) float32: exactly the item vectors the model scores with
    users.json           external user id at each internal index (U,)
    items.json           external item id at each internal index (I,)
    catalogue.parquet    the run's item table: ``id`` + every content field (display, re-embed)
    seen.npz             (U, I) CSR of every interaction the run's data set holds (train, valid
                         and test): what "exclude seen" means when serving
    model/               the run's saved model (the clrec model's fusion and EASE prior)
    config.yaml          the run's config
    report.html          the run's evaluation report, when the run wrote one (the service
                         shows it at ``GET /report``)

Only models that rank by ``user · item`` vectors can be exported (``bpr``, ``lightgcn``,
``clrec``). The artifact is written to a temporary folder beside ``out_dir`` and renamed into
place at the end, so a crash never leaves a half artifact behind.

:func:`load_artifact` checks the format and version, every file's sha256 and every shape,
and returns an :class:`Artifact` that scores known users exactly as the model does
(including the clrec model's temperature and EASE prior), scores anonymous query vectors,
builds a user vector from a few items, and embeds brand-new items from their content fields
through the run's own encoders and the model's fusion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

import clrec
from clrec.data.matrix import interaction_matrix
from clrec.data.schema import Dataset, FieldKind
from clrec.errors import ClrecError
from clrec.models.base import Recommender
from clrec.models.clrec import ClrecRecommender
from clrec.models.content import TAGS, tag_matrix
from clrec.models.ease import EASE
from clrec.models.mf import EmbeddingRecommender
from clrec.models.registry import load_model

if TYPE_CHECKING:
    from clrec.encoders.image import ImageEncoder, ImageEncoderConfig
    from clrec.encoders.text import TextEncoder, TextEncoderConfig
    from clrec.ranking.stage import Precision as RankerPrecision
    from clrec.ranking.stage import RerankStage

FORMAT = "clrec-artifact"
FORMAT_VERSION = 1
"""Version of the layout :func:`export_artifact` writes; a loader refuses newer ones."""

MANIFEST_FILE = "artifact.json"
USER_VECTORS = "user_vectors.npy"
ITEM_VECTORS = "item_vectors.npy"
USERS_FILE = "users.json"
ITEMS_FILE = "items.json"
CATALOGUE_FILE = "catalogue.parquet"
SEEN_FILE = "seen.npz"
MODEL_DIR = "model"
CONFIG_FILE = "config.yaml"
RANKER_DIR = "ranker"  # the optional ranking stage (clrec.ranking.stage)
REPORT_FILE = "report.html"  # the run's evaluation report, copied when present

EXPORTABLE = ("bpr", "lightgcn", "clrec")
"""Models that rank by ``user · item`` of stored vectors: what an artifact can serve."""

_REQUIRED_KEYS = (
    "format",
    "format_version",
    "model",
    "dataset",
    "n_users",
    "n_items",
    "dim",
    "score_scale",
    "prior_weight",
    "similarity",
    "content",
    "files",
)
_BLOCK = 1 << 20  # bytes read at a time when hashing
_TAG_HEADROOM = 64  # extra tag slots per alignment try (see Artifact._tag_vectors)


# ---------------------------------------------------------------------- export


def export_artifact(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    ranker: str | Path | None = None,
) -> Path:
    """Write the serving artifact of the run in ``run_dir`` to ``out_dir``; returns ``out_dir``.

    ``ranker``: a ``clrec rank train`` folder trained on this run's candidates; its serving
    form (:func:`clrec.ranking.stage.write_stage`) goes into ``ranker/`` and the service can
    then re-rank with it.

    Refuses models without user and item vectors, a non-empty ``out_dir`` unless
    ``overwrite``, and an ``out_dir`` that is or holds the run itself. Everything is written
    into a temporary folder beside ``out_dir`` that replaces it only when complete.
    """
    run = Path(run_dir)
    out = Path(out_dir)
    _check_run(run)
    model_name = _saved_model_name(run / MODEL_DIR)
    if model_name not in EXPORTABLE:
        raise ClrecError(
            f"{run}: a {model_name!r} model cannot be exported: an artifact serves models that "
            f"rank items by user · item vectors ({', '.join(EXPORTABLE)}), which a vector index "
            "can search; popularity, itemknn and ease score from counts or an item–item "
            "matrix and have no such vectors"
        )
    _check_out(out, run, overwrite)

    model = load_model(run / MODEL_DIR)
    dataset = Dataset.load(run / "dataset")
    user_vectors, item_vectors = _model_vectors(model)  # (U, D), (I, D)
    if user_vectors.shape[0] != dataset.n_users or item_vectors.shape[0] != dataset.n_items:
        raise ClrecError(
            f"{run}: the model holds {user_vectors.shape[0]} users × {item_vectors.shape[0]} "
            f"items but the run's data set has {dataset.n_users} × {dataset.n_items}"
        )
    if user_vectors.shape[1] != item_vectors.shape[1]:
        raise ClrecError(f"{run}: user and item vectors differ in width")
    for what, vectors in (("user", user_vectors), ("item", item_vectors)):
        if not np.isfinite(vectors).all():
            raise ClrecError(f"{run}: the model's {what} vectors hold NaN or infinite values")
    scale, prior_weight, similarity = _scoring(model)
    if prior_weight and not (run / MODEL_DIR / "prior" / "model.json").is_file():
        raise ClrecError(f"{run}: the model weighs an EASE prior but model/prior is missing")
    metrics = json.loads((run / "metrics.json").read_text())
    seen = interaction_matrix(dataset.interactions, dataset.n_users, dataset.n_items)  # (U, I)
    content = _content_manifest(model, dataset)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        np.save(staging / USER_VECTORS, user_vectors)
        np.save(staging / ITEM_VECTORS, item_vectors)
        _write_json(staging / USERS_FILE, dataset.users["id"].astype(str).tolist())
        _write_json(staging / ITEMS_FILE, dataset.items["id"].astype(str).tolist())
        dataset.items.to_parquet(staging / CATALOGUE_FILE, index=False)
        sp.save_npz(staging / SEEN_FILE, seen)
        shutil.copytree(run / MODEL_DIR, staging / MODEL_DIR)
        shutil.copyfile(run / "config.yaml", staging / CONFIG_FILE)
        if (run / REPORT_FILE).is_file():  # offline HTML: aggregate metrics, plots, config
            shutil.copyfile(run / REPORT_FILE, staging / REPORT_FILE)
        stage = None if ranker is None else _ranker_stage(Path(ranker), run, dataset, staging)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "clrec_version": clrec.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": model_name,
            "dataset": dataset.name,
            "n_users": int(user_vectors.shape[0]),
            "n_items": int(item_vectors.shape[0]),
            "dim": int(user_vectors.shape[1]),
            "score_scale": scale,
            "prior_weight": prior_weight,
            "similarity": similarity,
            "content": content,
            "metrics": metrics.get("test", {}),
            "ranker": stage,
            "files": {rel: _sha256(staging / rel) for rel in _artifact_files(staging)},
        }
        _write_json(staging / MANIFEST_FILE, manifest)  # last: its presence marks completion
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _ranker_stage(ranker: Path, run: Path, dataset: Dataset, staging: Path) -> dict[str, Any]:
    """Write the ranking stage into ``staging/ranker``; the ranker must come from this run."""
    from clrec.ranking.pipeline import SETTINGS_FILE
    from clrec.ranking.stage import write_stage

    settings_path = ranker / SETTINGS_FILE
    if not settings_path.is_file():
        raise ClrecError(
            f"{ranker}: not a ranker folder (no {SETTINGS_FILE}); see clrec rank train"
        )
    trained_on = Path(json.loads(settings_path.read_text())["run"])
    if trained_on.resolve() != run.resolve():
        raise ClrecError(
            f"{ranker}: the ranker was trained on {trained_on}'s candidates, not {run}'s; train "
            "one on this run with clrec rank train"
        )
    return write_stage(ranker, dataset, staging / RANKER_DIR)


def _check_run(run: Path) -> None:
    """Refuse a folder that is not a finished clrec run."""
    needed = ("config.yaml", "metrics.json", "dataset/dataset.json", "model/model.json")
    missing = [name for name in needed if not (run / name).is_file()]
    if missing:
        raise ClrecError(f"{run}: not a finished clrec run folder (missing {', '.join(missing)})")


def _saved_model_name(directory: Path) -> str:
    meta = json.loads((directory / "model.json").read_text())
    return str(meta.get("model", ""))


def _check_out(out: Path, run: Path, overwrite: bool) -> None:
    """``out`` may be new, empty, or (with ``overwrite``) a folder that is not the run's own."""
    if out.exists() and not out.is_dir():
        raise ClrecError(f"{out}: exists and is not a folder")
    target, source = out.resolve(), run.resolve()
    if target == source or target in source.parents:
        raise ClrecError(f"{out}: is (or holds) the run folder {run}; export elsewhere")
    model_dir = source / MODEL_DIR
    if target == model_dir or model_dir in target.parents:
        raise ClrecError(f"{out}: lies inside the run's model folder, which it copies")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ClrecError(f"{out}: is not empty; pass overwrite=True to replace it")


def _model_vectors(model: Recommender) -> tuple[np.ndarray, np.ndarray]:
    """The cached final ``(U, D)`` user and ``(I, D)`` item vectors the model scores with."""
    if not isinstance(model, EmbeddingRecommender | ClrecRecommender):
        raise ClrecError(f"a {model.name!r} model has no user and item vectors to export")
    users, items = model._user_final, model._item_final
    if users is None or items is None:
        raise ClrecError(f"the saved {model.name!r} model holds no final vectors")
    as_numpy = (users.detach().cpu().float().numpy(), items.detach().cpu().float().numpy())
    return np.ascontiguousarray(as_numpy[0]), np.ascontiguousarray(as_numpy[1])


def _scoring(model: Recommender) -> tuple[float, float, str]:
    """(score scale, prior weight, similarity) that turn vectors into the model's scores."""
    if isinstance(model, ClrecRecommender):
        weight = model.prior_scale * model.prior_norm if model.prior is not None else 0.0
        return 1.0 / model.config.temperature, float(weight), model.config.similarity
    return 1.0, 0.0, "dot"


def _content_manifest(model: Recommender, dataset: Dataset) -> dict[str, Any]:
    """The modalities the model reads and what is needed to embed a new item's content."""
    base: dict[str, Any] = {
        "modalities": [],
        "dims": {},
        "settings": None,
        "item_fields": dict(dataset.item_fields),
        "encoders": {},
    }
    if not isinstance(model, ClrecRecommender):
        return base
    names = model._saved_network[1]
    if not names:
        return base
    from clrec.encoders.modalities import ImageModality, TextModality, dataset_modalities
    from clrec.encoders.text import default_template

    settings = model.config.content
    base["modalities"] = sorted(names)
    base["dims"] = dict(sorted(model._fusion().in_dims.items()))
    base["settings"] = model.config.to_params()["content"]
    specs = (
        {
            spec.name: spec
            for spec in dataset_modalities(
                dataset,
                "all",
                backend=settings.text_backend,
                model=settings.text_model,
                threads=settings.threads,
            )
        }
        if set(names) - {TAGS}
        else {}
    )
    encoders: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        spec = specs.get(name)
        if name == TAGS:
            encoders[name] = {
                "kind": "tags",
                "min_tag_count": settings.min_tag_count,
                "max_tags": settings.max_tags,
                "exclude_fields": list(settings.exclude_fields),
            }
        elif isinstance(spec, TextModality):
            template = spec.template or default_template(dataset)
            encoders[name] = {
                "kind": "text",
                "template": template.pattern,
                "encoder": _encoder_settings(spec.encoder),
                "identity": _identity_or_none(spec.encoder),
            }
        elif isinstance(spec, ImageModality):
            encoders[name] = {
                "kind": "image",
                "field": spec.field,
                "encoder": None if spec.encoder is None else _encoder_settings(spec.encoder),
                "identity": _identity_or_none(spec.encoder),
            }
        else:  # vectors that shipped with the data: a new item has none
            encoders[name] = {"kind": "precomputed"}
    base["encoders"] = encoders
    return base


def _encoder_settings(config: TextEncoderConfig | ImageEncoderConfig) -> dict[str, Any]:
    """An encoder config's JSON-ready fields, less the machine-local ones."""
    plain = dataclasses.asdict(config)
    for local in ("onnx_dir", "progress", "device"):
        plain.pop(local, None)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in plain.items()}


def _identity_or_none(config: TextEncoderConfig | ImageEncoderConfig | None) -> str | None:
    """The encoder's identity string (model files + settings), None where it cannot resolve."""
    if config is None:
        return None
    try:
        return str(config.identity)
    except ClrecError:  # the encoder is not installed here: export anyway, check nothing later
        return None


def _artifact_files(root: Path) -> list[str]:
    """Every file under ``root`` except the manifest, as sorted POSIX relative paths."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST_FILE
    )


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``, moving any old ``out`` aside first."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- loading


def load_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """Load and check an artifact folder written by :func:`export_artifact`.

    Checks the format and its version, every file's sha256 (skipped with ``verify=False``,
    for a copy already verified) and every shape; any problem is a :class:`ClrecError`.
    """
    root = Path(path)
    manifest = _read_manifest(root)
    if verify:
        _verify_files(root, manifest["files"])
    n_users, n_items, dim = (int(manifest[k]) for k in ("n_users", "n_items", "dim"))
    user_vectors = _load_vectors(root / USER_VECTORS, (n_users, dim))  # (U, D)
    item_vectors = _load_vectors(root / ITEM_VECTORS, (n_items, dim))  # (I, D)
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
    return Artifact(root, manifest, user_vectors, item_vectors, user_ids, item_ids, seen, catalogue)


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise ClrecError(f"{root}: not a clrec artifact (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClrecError(f"{path}: unreadable manifest: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ClrecError(f"{path}: not a clrec artifact manifest (format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ClrecError(f"{path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ClrecError(
            f"{path}: format_version {version} was written by a newer clrec; this version "
            f"({clrec.__version__}) reads format_version {FORMAT_VERSION}: upgrade clrec"
        )
    if version != FORMAT_VERSION:
        raise ClrecError(f"{path}: format_version {version} is not supported")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ClrecError(f"{path}: missing key(s) {', '.join(missing)}")
    if not isinstance(manifest["files"], dict):
        raise ClrecError(f"{path}: 'files' must map relative paths to sha256 digests")
    for key in ("n_users", "n_items", "dim"):
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ClrecError(f"{path}: {key} must be a non-negative integer, got {value!r}")
    if manifest["similarity"] not in ("cosine", "dot"):
        raise ClrecError(f"{path}: unknown similarity {manifest['similarity']!r}")
    return manifest


def _verify_files(root: Path, files: Mapping[str, str]) -> None:
    """Every listed file exists inside ``root`` with its sha256; no file is unlisted."""
    base = root.resolve()
    for rel, digest in files.items():
        path = (root / rel).resolve()
        if Path(rel).is_absolute() or base not in path.parents:
            raise ClrecError(f"{root / MANIFEST_FILE}: lists a path outside the artifact: {rel}")
        if not path.is_file():
            raise ClrecError(f"{root / rel}: missing from the artifact")
        if _sha256(path) != digest:
            raise ClrecError(f"{root / rel}: corrupt or changed (sha256 differs from the manifest)")
    extra = sorted(set(_artifact_files(root)) - set(files))
    if extra:
        raise ClrecError(f"{root}: holds files the manifest does not list: {', '.join(extra)}")


def _load_vectors(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ClrecError(f"{path}: unreadable array: {error}") from error
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or array.shape != shape:
        raise ClrecError(
            f"{path}: holds {getattr(array, 'dtype', '?')} {getattr(array, 'shape', '?')}, but "
            f"{MANIFEST_FILE} says float32 {shape}"
        )
    return np.ascontiguousarray(array)


def _load_ids(path: Path, count: int) -> list[str]:
    try:
        ids = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ClrecError(f"{path}: unreadable id list: {error}") from error
    if not isinstance(ids, list) or len(ids) != count:
        size = len(ids) if isinstance(ids, list) else "no"
        raise ClrecError(f"{path}: holds {size} ids, but {MANIFEST_FILE} says {count}")
    return [str(i) for i in ids]


# ---------------------------------------------------------------------- the artifact


class Artifact:
    """A loaded, checked artifact: vectors, id maps, seen items, catalogue, and scoring.

    Heavy parts (the EASE prior, the clrec model's fusion, text / image encoders) load on
    first use and stay cached on the instance. Not thread-safe while they first load.
    """

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        user_vectors: np.ndarray,
        item_vectors: np.ndarray,
        user_ids: list[str],
        item_ids: list[str],
        seen: sp.csr_matrix,
        catalogue: pd.DataFrame,
    ) -> None:
        self.root = root
        self.manifest = manifest
        self.user_vectors = user_vectors  # (U, D) float32
        self.item_vectors = item_vectors  # (I, D) float32
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.user_index = {external: index for index, external in enumerate(user_ids)}
        self.item_index = {external: index for index, external in enumerate(item_ids)}
        self.seen = seen  # (U, I) CSR: every interaction of the run's data set
        self.catalogue = catalogue
        self._prior: EASE | None = None
        self._model: ClrecRecommender | None = None
        self._text_encoders: dict[str, TextEncoder] = {}
        self._image_encoders: dict[str, ImageEncoder] = {}
        self._tag_base: np.ndarray | None = None  # (I, T) bool: catalogue tag matrix

    # ------------------------------------------------------------------ description
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
    def similarity(self) -> str:
        return str(self.manifest["similarity"])

    @property
    def score_scale(self) -> float:
        return float(self.manifest["score_scale"])

    @property
    def prior_weight(self) -> float:
        return float(self.manifest["prior_weight"])

    @property
    def content_modalities(self) -> list[str]:
        """The content modalities the model reads (empty: it cannot embed new items)."""
        return list(self.manifest["content"].get("modalities", []))

    @property
    def has_ranker(self) -> bool:
        """Whether the artifact carries a ranking stage (``clrec export --ranker``)."""
        return bool(self.manifest.get("ranker"))

    def rerank_stage(self, precision: RankerPrecision = "int8") -> RerankStage:
        """The artifact's ranking stage, loaded (its base encoder read from its identity)."""
        if not self.has_ranker:
            raise ClrecError(
                f"{self.root}: this artifact has no ranking stage; export it with "
                "clrec export --ranker RANKER_DIR"
            )
        from clrec.ranking.stage import RerankStage

        return RerankStage.load(self.root / RANKER_DIR, precision)

    # ------------------------------------------------------------------ scoring
    def score(self, user: int, candidates: np.ndarray | None = None) -> np.ndarray:
        """The model's own scores ``(C,)`` for known ``user`` over ``candidates`` (internal
        item ids; all items when None): ``(u · i) · score_scale`` plus, for the clrec model
        with a prior, ``prior_weight · (history @ W)`` from the saved EASE prior."""
        if isinstance(user, bool) or not isinstance(user, int | np.integer):
            raise ClrecError(f"user must be an internal user index (int), got {user!r}")
        if not 0 <= user < self.n_users:
            raise ClrecError(f"user {user} is outside 0..{self.n_users - 1}")
        items = self._candidates(candidates)  # (C,) or None
        vectors = self.item_vectors if items is None else self.item_vectors[items]  # (C, D)
        scores = vectors @ self.user_vectors[int(user)]  # (C,)
        if self.score_scale != 1.0:
            scores = scores * np.float32(self.score_scale)
        if self.prior_weight:
            prior = self._prior_model()
            assert prior.seen is not None and prior.weights is not None
            # the prior's own (maybe recency-weighted) history of the user
            seen_items, seen_weights = _csr_row(prior.seen, int(user))  # (H,), (H,)
            history = prior.weights[seen_items]  # (H, I)
            if items is not None:
                history = history[:, items]  # (H, C)
            prior_scores = seen_weights.astype(np.float32) @ history  # (C,)
            scores = scores + np.float32(self.prior_weight) * prior_scores
        return np.asarray(scores, dtype=np.float32)

    def seen_items(self, user: int) -> np.ndarray:
        """Internal ids ``(H,)`` of the items known ``user`` interacted with in the run's
        data set (a view into :attr:`seen`, without scipy's row slicing)."""
        return _csr_row(self.seen, int(user))[0]

    def score_vector(self, vector: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
        """Plain dot products ``(C,)`` of a query ``vector`` ``(D,)`` (an anonymous user, e.g.
        from :meth:`user_from_items`) with the candidates' item vectors; no prior."""
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (self.dim,):
            raise ClrecError(f"the query vector must have shape ({self.dim},), got {query.shape}")
        if not np.isfinite(query).all():
            raise ClrecError("the query vector holds NaN or infinite values")
        items = self._candidates(candidates)
        vectors = self.item_vectors if items is None else self.item_vectors[items]  # (C, D)
        return np.asarray(vectors @ query, dtype=np.float32)  # (C,)

    def user_from_items(self, items: np.ndarray | Sequence[int]) -> np.ndarray:
        """A user vector ``(D,)`` from a few internal item ids: their mean item vector,
        L2-normalised when the model compares by cosine (as the clrec model's own)."""
        index = self._candidates(np.asarray(items))
        if index is None or len(index) == 0:
            raise ClrecError("user_from_items needs at least one item")
        mean = self.item_vectors[index].mean(axis=0, dtype=np.float32)  # (D,)
        if self.similarity == "cosine":
            mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return np.asarray(mean, dtype=np.float32)

    def _candidates(self, candidates: np.ndarray | Sequence[int] | None) -> np.ndarray | None:
        """Candidates as a checked ``(C,)`` int64 array of internal item ids (None: all)."""
        if candidates is None:
            return None
        items = np.asarray(candidates)
        if items.size == 0:
            return np.zeros(0, dtype=np.int64)
        if items.ndim != 1 or not np.issubdtype(items.dtype, np.integer):
            raise ClrecError("candidates must be a 1-D array of internal item ids (integers)")
        if items.min() < 0 or items.max() >= self.n_items:
            bad = int(items[(items < 0) | (items >= self.n_items)][0])
            raise ClrecError(f"item {bad} is outside 0..{self.n_items - 1}")
        return items.astype(np.int64)

    def _prior_model(self, loaded: EASE | None = None) -> EASE:
        """The clrec model's EASE prior, loaded once from ``model/prior`` (or ``loaded``, the
        same prior already read by :meth:`_clrec_model`)."""
        if self._prior is None:
            directory = self.root / MODEL_DIR / "prior"
            if loaded is None and not (directory / "model.json").is_file():
                raise ClrecError(f"{directory}: the artifact's EASE prior is missing")
            prior = EASE.load(directory) if loaded is None else loaded
            assert prior.weights is not None and prior.seen is not None
            expected = (self.n_users, self.n_items)
            if prior.seen.shape != expected or prior.weights.shape != (self.n_items,) * 2:
                raise ClrecError(f"{directory}: the prior's shapes do not fit {expected}")
            self._prior = prior
        return self._prior

    # ------------------------------------------------------------------ new items
    def embed_items(self, rows: Sequence[Mapping[str, str | None]]) -> np.ndarray:
        """Vectors ``(n, D)`` for brand-new items from their content fields, e.g.
        ``{"title": "Heat (1995)", "genres": "Action|Crime"}``, through the run's own
        encoders (same settings) and the clrec model's fusion. A modality a row has no field
        for counts as missing, as in training; a row with no usable content is refused."""
        if not self.content_modalities:
            raise ClrecError(
                f"this {self.model_name!r} model reads no content; a new item cannot be embedded"
            )
        frame = self._rows_frame(rows)  # (n, fields)
        if frame.empty:
            return np.zeros((0, self.dim), dtype=np.float32)
        encoders: dict[str, dict[str, Any]] = self.manifest["content"]["encoders"]
        content: dict[str, np.ndarray] = {}
        for name in self.content_modalities:
            spec = encoders.get(name, {"kind": "precomputed"})
            kind = spec.get("kind")
            if kind == "tags":
                content[name] = self._tag_vectors(frame, spec)  # (n, T)
            elif kind == "text":
                content[name] = self._text_vectors(name, frame, spec)  # (n, d)
            elif kind == "image":
                content[name] = self._image_vectors(name, frame, spec)  # (n, d)
            # precomputed vectors: a new item has none; the fusion treats them as missing
        present = np.zeros(len(frame), dtype=bool)  # (n,)
        for matrix in content.values():
            present |= ~np.isnan(matrix).any(axis=1)
        if not present.all():
            first = int(np.flatnonzero(~present)[0])
            raise ClrecError(
                f"new item row {first} has no content the model can read; it reads "
                f"{', '.join(self.content_modalities)} from the fields "
                f"{', '.join(self._content_fields()) or 'none'}"
            )
        vectors = self._clrec_model().embed_content(content)  # (n, D)
        return np.asarray(vectors, dtype=np.float32)

    def _content_fields(self) -> list[str]:
        return [c for c in self.catalogue.columns if c != "id"]

    def _rows_frame(self, rows: Sequence[Mapping[str, str | None]]) -> pd.DataFrame:
        """New rows as a frame with the catalogue's columns (missing fields: None)."""
        fields = self._content_fields()
        known = set(fields)
        records: list[dict[str, object]] = []
        for number, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ClrecError(f"new item row {number} must be a mapping of field → text")
            unknown = sorted(str(k) for k in row if k not in known and k != "id")
            if unknown:
                raise ClrecError(
                    f"new item row {number}: unknown field(s) {', '.join(unknown)}; the "
                    f"catalogue has {', '.join(fields)}"
                )
            records.append({f: row.get(f) for f in fields})
        frame = pd.DataFrame(records, columns=fields, dtype=object)
        for column in fields:  # numbers as the catalogue stores them, so tags read the same
            if pd.api.types.is_numeric_dtype(self.catalogue[column].dtype):
                try:
                    frame[column] = pd.to_numeric(frame[column]).astype(
                        self.catalogue[column].dtype
                    )
                except (TypeError, ValueError) as error:
                    raise ClrecError(
                        f"new item field {column!r} must be a number: {error}"
                    ) from None
        return frame

    def _items_dataset(self, items: pd.DataFrame) -> Dataset:
        """A catalogue-only Dataset over ``items`` for the content code (no interactions)."""
        kinds: dict[str, FieldKind] = self.manifest["content"]["item_fields"]
        return Dataset(
            name=str(self.manifest["dataset"]),
            interactions=pd.DataFrame(
                {"user": np.zeros(0, dtype=np.int64), "item": np.zeros(0, dtype=np.int64)}
            ),
            items=items,
            users=pd.DataFrame({"id": pd.Series([], dtype="string")}),
            item_fields=dict(kinds),
        )

    def _tag_vectors(self, frame: pd.DataFrame, spec: Mapping[str, Any]) -> np.ndarray:
        """Multi-hot rows ``(n, T)`` over the run's tag vocabulary (NaN: no known tag).

        :func:`~clrec.models.content.tag_matrix` builds the vocabulary from the catalogue it
        is given, so it runs on catalogue + new rows (with room for tags the new rows bring)
        and each of the run's tag columns is found again by its catalogue column: columns
        come sorted by tag name and a tag's catalogue rows do not change.
        """
        min_count, max_tags = int(spec["min_tag_count"]), int(spec["max_tags"])
        exclude = tuple(spec.get("exclude_fields", ()))
        base = self._tag_catalogue(min_count, max_tags, exclude)  # (I, T) bool
        n_items, n_tags = base.shape
        keys = _column_keys(base)
        items = frame.copy()
        items.insert(0, "id", [f"new:{k}" for k in range(len(frame))])
        combined = pd.concat([self.catalogue, items], ignore_index=True)
        room = max_tags + _TAG_HEADROOM * len(frame)
        while True:
            matrix = tag_matrix(self._items_dataset(combined), min_count, room, exclude)
            if matrix is None:
                break
            full = np.nan_to_num(matrix, nan=0.0) != 0  # (I + n, T')
            picks = _align_columns(keys, _column_keys(full[:n_items]))
            if picks is not None:
                rows = full[n_items:][:, picks].astype(np.float32)  # (n, T)
                rows[~rows.any(axis=1)] = np.nan
                return rows
            if matrix.shape[1] < room:  # every tag was kept, yet one of the run's is gone
                break
            room *= 2
        raise ClrecError(
            f"the new items' tags cannot be lined up with the {n_tags} tags the model "
            "was trained on (the catalogue's tag fields changed?)"
        )

    def _tag_catalogue(self, min_count: int, max_tags: int, exclude: tuple[str, ...]) -> np.ndarray:
        """The catalogue's tag matrix ``(I, T)`` as booleans, checked against the model."""
        if self._tag_base is None:
            matrix = tag_matrix(self._items_dataset(self.catalogue), min_count, max_tags, exclude)
            width = int(self.manifest["content"]["dims"].get(TAGS, -1))
            found = 0 if matrix is None else matrix.shape[1]
            if matrix is None or found != width:
                raise ClrecError(
                    f"the catalogue gives {found} tags but the model was trained on {width}; "
                    f"{CATALOGUE_FILE} is not the run's catalogue"
                )
            self._tag_base = np.nan_to_num(matrix, nan=0.0) != 0  # (I, T)
        return self._tag_base

    def _text_vectors(self, name: str, frame: pd.DataFrame, spec: Mapping[str, Any]) -> np.ndarray:
        """Text vectors ``(n, d)`` of the new rows (NaN: no text), through the run's template
        and text encoder settings; the encoder loads once per artifact."""
        from clrec.encoders.text import TextTemplate

        kinds: dict[str, FieldKind] = self.manifest["content"]["item_fields"]
        texts = TextTemplate(str(spec["template"])).render_table(frame, kinds)  # (n,)
        encoder = self._text_encoder(name, spec)
        width = int(self.manifest["content"]["dims"][name])
        out = np.full((len(frame), width), np.nan, dtype=np.float32)  # (n, d)
        present = [k for k, text in enumerate(texts) if text is not None]
        if present:
            # masked before encoding, exactly as the data set's items were (encode masks too)
            masked = encoder.mask([str(texts[k]) for k in present])
            out[present] = encoder.encode(masked)  # (p, d)
        return out

    def _text_encoder(self, name: str, spec: Mapping[str, Any]) -> TextEncoder:
        if name not in self._text_encoders:
            from clrec.encoders.text import TextEncoder, TextEncoderConfig

            settings: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in spec["encoder"].items()
            }
            config = TextEncoderConfig(**settings, progress=False, onnx_dir=self._onnx_dir())
            encoder = TextEncoder(config)
            expected = spec.get("identity")
            if expected is not None and encoder.identity != expected:
                raise ClrecError(
                    f"the text encoder here ({encoder.identity}) is not the one the run used "
                    f"({expected}); its vectors would not match the model's"
                )
            self._text_encoders[name] = encoder
        return self._text_encoders[name]

    def _image_vectors(self, name: str, frame: pd.DataFrame, spec: Mapping[str, Any]) -> np.ndarray:
        """Image vectors ``(n, d)`` from the rows' image references (NaN: none / unreadable)."""
        from clrec.encoders.image import ImageEncoder, ImageEncoderConfig, encode_images

        field = str(spec["field"])
        refs = [
            None if value is None or pd.isna(value) or not str(value).strip() else str(value)
            for value in frame[field].tolist()
        ]
        width = int(self.manifest["content"]["dims"][name])
        if not any(refs):
            return np.full((len(frame), width), np.nan, dtype=np.float32)
        settings: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in (spec["encoder"] or {}).items()
        }
        config = ImageEncoderConfig(**settings, progress=False, onnx_dir=self._onnx_dir())
        expected = spec.get("identity")
        if expected is not None and config.identity != expected:
            raise ClrecError(
                f"the image encoder here ({config.identity}) is not the one the run used "
                f"({expected}); its vectors would not match the model's"
            )
        if name not in self._image_encoders:
            self._image_encoders[name] = ImageEncoder(config)
        matrix, _ = encode_images(refs, config, None, encoder=self._image_encoders[name])
        return np.asarray(matrix, dtype=np.float32)  # (n, d)

    def _onnx_dir(self) -> str | None:
        """Where the run kept exported ONNX encoders (beside its embedding cache), if set."""
        settings = self.manifest["content"].get("settings") or {}
        cache_dir = settings.get("cache_dir")
        return None if cache_dir is None else str(Path(cache_dir).expanduser() / "onnx")

    def _clrec_model(self) -> ClrecRecommender:
        """The saved clrec model (its content fusion), loaded once."""
        if self._model is None:
            model = ClrecRecommender.load(self.root / MODEL_DIR)
            if model.prior is not None and self.prior_weight and self._prior is None:
                self._prior_model(model.prior)  # keep one copy of the I × I weights
            model.prior = None  # the artifact scores through its own path
            self._model = model
        return self._model


def _csr_row(matrix: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Column ids ``(H,)`` and values ``(H,)`` of one CSR row, as views."""
    start, stop = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[start:stop], matrix.data[start:stop]


def _column_keys(matrix: np.ndarray) -> list[bytes]:
    """One hashable key per column of a boolean ``(N, T)`` matrix: its packed bits."""
    packed = np.packbits(matrix, axis=0)  # (ceil(N / 8), T)
    return [packed[:, j].tobytes() for j in range(packed.shape[1])]


def _align_columns(wanted: list[bytes], found: list[bytes]) -> list[int] | None:
    """Positions in ``found`` of each of ``wanted``'s columns, in order (both are sorted by
    tag name, ``wanted`` a subsequence of ``found``); None when one is missing."""
    picks: list[int] = []
    position = 0
    for key in wanted:
        while position < len(found) and found[position] != key:
            position += 1
        if position == len(found):
            return None
        picks.append(position)
        position += 1
    return picks


__all__ = ["EXPORTABLE", "FORMAT", "FORMAT_VERSION", "Artifact", "export_artifact", "load_artifact"]
