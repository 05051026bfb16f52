"""VectorIndex: exact search equals brute force, quantised and HNSW recall, filters, updates,
save/load and its failure modes, config validation."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clrec.errors import ClrecError
from clrec.serving.index import (
    HNSW_FILE,
    META_FILE,
    SCALES_FILE,
    VECTORS_FILE,
    IndexConfig,
    VectorIndex,
    storage,
)
from clrec.serving.index.storage import file_digest

needs_hnswlib = pytest.mark.skipif(
    importlib.util.find_spec("hnswlib") is None, reason="hnswlib not installed (extra: serve)"
)

HNSW = IndexConfig(kind="hnsw", num_threads=1)  # one thread: a reproducible graph
ALL_CONFIGS = [
    pytest.param(IndexConfig(), id="exact-f32"),
    pytest.param(IndexConfig(precision="float16"), id="exact-f16"),
    pytest.param(IndexConfig(precision="int8"), id="exact-int8"),
    pytest.param(HNSW, id="hnsw", marks=needs_hnswlib),
]


def _gaussian(rows: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def _brute_force(
    queries: np.ndarray, items: np.ndarray, k: int, banned: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by numpy argsort; ``banned`` ``(Q, I)`` marks items to skip."""
    scores = (queries.astype(np.float64) @ items.astype(np.float64).T).astype(np.float32)
    if banned is not None:
        scores[banned] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, 1)
    order[np.isneginf(top)] = -1
    return order, top


@pytest.fixture(scope="module")
def big_items() -> np.ndarray:
    return _gaussian(5000, 32, seed=1)


@pytest.fixture(scope="module")
def big_queries() -> np.ndarray:
    return _gaussian(200, 32, seed=2)


@pytest.fixture(scope="module")
def hnsw_index(big_items: np.ndarray) -> VectorIndex:
    return VectorIndex.build(big_items, HNSW)


# ---------------------------------------------------------------------- exact search


@pytest.mark.parametrize("chunk", [65536, 7, 100])
def test_exact_float32_equals_brute_force(chunk: int) -> None:
    items, queries = _gaussian(503, 16, seed=3), _gaussian(20, 16, seed=4)
    index = VectorIndex.build(items, IndexConfig(chunk_items=chunk))
    ids, scores = index.search(queries, k=10)
    want_ids, want_scores = _brute_force(queries, items, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (20, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert index.recall_against_exact(queries, k=10) == 1.0


def test_cosine_metric_normalises_items_and_queries() -> None:
    items, queries = _gaussian(300, 8, seed=5), _gaussian(10, 8, seed=6)
    # Wildly different item norms would dominate a dot product, but not a cosine.
    items *= np.random.default_rng(7).uniform(0.01, 100.0, size=(300, 1)).astype(np.float32)
    index = VectorIndex.build(items, IndexConfig(metric="cosine", chunk_items=50))
    ids, scores = index.search(queries * 42.0, k=5)
    unit_items = items / np.linalg.norm(items, axis=1, keepdims=True)
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    want_ids, want_scores = _brute_force(unit_queries, unit_items, 5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert np.all(scores <= 1.0 + 1e-5)
    # a query equal to an item (at any scale) finds that item with cosine 1
    top, top_scores = index.search(items[[17]] * 0.001, k=1)
    assert top[0, 0] == 17 and top_scores[0, 0] == pytest.approx(1.0, abs=1e-5)


@needs_hnswlib
def test_cosine_hnsw_finds_itself() -> None:
    items = _gaussian(400, 8, seed=8) * 3.0
    index = VectorIndex.build(items, IndexConfig(kind="hnsw", metric="cosine", num_threads=1))
    ids, scores = index.search(items[:20], k=1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(20))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


# ---------------------------------------------------------------------- filters


def test_exact_filters_match_brute_force() -> None:
    items, queries = _gaussian(211, 12, seed=9), _gaussian(6, 12, seed=10)
    rng = np.random.default_rng(11)
    exclude = [rng.choice(211, size=n, replace=False) for n in (0, 5, 50, 100, 150, 200)]
    allowed = rng.random(211) < 0.5
    banned = np.zeros((6, 211), dtype=bool)
    for row, ids in enumerate(exclude):
        banned[row, ids] = True
    banned |= ~allowed[None, :]
    index = VectorIndex.build(items, IndexConfig(chunk_items=16))
    for allowed_arg in (allowed, np.flatnonzero(allowed)):
        ids, scores = index.search(queries, k=10, exclude=exclude, allowed=allowed_arg)
        want_ids, want_scores = _brute_force(queries, items, 10, banned)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_filters_are_honoured_and_short_results_padded(config: IndexConfig) -> None:
    items, queries = _gaussian(600, 8, seed=12), _gaussian(4, 8, seed=13)
    index = VectorIndex.build(items, config)
    rng = np.random.default_rng(14)
    exclude = [rng.choice(600, size=300, replace=False) for _ in range(4)]
    allowed = np.flatnonzero(rng.random(600) < 0.6)
    ids, _ = index.search(queries, k=20, exclude=exclude, allowed=allowed)
    for row in range(4):
        assert (ids[row] >= 0).all()
        assert not np.isin(ids[row], exclude[row]).any()
        assert np.isin(ids[row], allowed).all()
        assert len(set(ids[row].tolist())) == 20

    # Only three allowed ids, one of them excluded for query 0: two results, then padding.
    few = np.array([5, 9, 400])
    ids, scores = index.search(queries, k=5, exclude=[np.array([9]), [], None, []], allowed=few)
    assert sorted(ids[0, :2].tolist()) == [5, 400]
    np.testing.assert_array_equal(ids[0, 2:], -1)
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[0, :2]).all()
    assert sorted(ids[1, :3].tolist()) == [5, 9, 400]
    np.testing.assert_array_equal(ids[1:, 3:], -1)

    # Out-of-range exclude ids are ignored; k beyond the catalogue pads.
    ids, scores = index.search(queries[:1], k=700, exclude=[np.array([-3, 10_000])])
    assert (ids[0, :600] >= 0).all() and len(set(ids[0, :600].tolist())) == 600
    np.testing.assert_array_equal(ids[0, 600:], -1)
    assert np.isneginf(scores[0, 600:]).all()

    # Nothing allowed: all padding.
    ids, scores = index.search(queries, k=3, allowed=np.zeros(600, dtype=bool))
    np.testing.assert_array_equal(ids, -1)
    assert np.isneginf(scores).all()


@needs_hnswlib
def test_hnsw_returns_k_when_90_percent_excluded(
    hnsw_index: VectorIndex, big_items: np.ndarray, big_queries: np.ndarray
) -> None:
    rng = np.random.default_rng(15)
    queries = big_queries[:8]
    exclude = [rng.choice(5000, size=4500, replace=False) for _ in range(8)]
    ids, scores = hnsw_index.search(queries, k=10, exclude=exclude)
    exact = VectorIndex.build(big_items)
    want, _ = exact.search(queries, k=10, exclude=exclude)
    for row in range(8):
        assert (ids[row] >= 0).all() and len(set(ids[row].tolist())) == 10
        assert not np.isin(ids[row], exclude[row]).any()
        assert np.isfinite(scores[row]).all()
        assert np.all(np.diff(scores[row]) <= 0)  # best first
        assert len(np.intersect1d(ids[row], want[row])) >= 9


@needs_hnswlib
def test_hnsw_filtered_graph_search_matches_exact(
    hnsw_index: VectorIndex, big_items: np.ndarray, big_queries: np.ndarray
) -> None:
    """Moderate filters take the over-fetch path through the graph, and stay accurate."""
    rng = np.random.default_rng(16)
    exclude = [rng.choice(5000, size=200, replace=False) for _ in range(len(big_queries))]
    allowed = rng.random(5000) < 0.2
    ids, scores = hnsw_index.search(big_queries, k=10, exclude=exclude, allowed=allowed)
    exact = VectorIndex.build(big_items)
    want, _ = exact.search(big_queries, k=10, exclude=exclude, allowed=allowed)
    assert (ids >= 0).all()
    assert allowed[ids].all()
    for row in range(len(big_queries)):
        assert not np.isin(ids[row], exclude[row]).any()
        assert np.all(np.diff(scores[row]) <= 0)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ids, want, strict=True)])
    assert recall >= 0.95


@needs_hnswlib
def test_hnsw_adversarial_filter_grows_fetch_then_falls_back(
    hnsw_index: VectorIndex, big_items: np.ndarray
) -> None:
    """Allowed items all point away from the query: the graph's first answers are all
    filtered out, so the search must widen (and finally go exact) to find the true top k."""
    queries = np.zeros((3, 32), dtype=np.float32)
    queries[:, 0] = [5.0, 1.0, 0.2]
    queries[:, 1] = 1.0
    exact = VectorIndex.build(big_items)
    for allowed in (big_items[:, 0] < 0, big_items[:, 0] < -1.0):
        ids, scores = hnsw_index.search(queries, k=10, allowed=allowed)
        want_ids, want_scores = exact.search(queries, k=10, allowed=allowed)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- recall


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_quantised_exact_recall(
    precision: str, big_items: np.ndarray, big_queries: np.ndarray
) -> None:
    index = VectorIndex.build(big_items, IndexConfig(precision=precision))  # type: ignore[arg-type]
    assert index.storage_dtype == np.dtype(precision)
    assert index._stored().dtype == np.dtype(precision)
    assert index.recall_against_exact(big_queries, k=10, reference=big_items) >= 0.95
    with pytest.raises(ClrecError, match="reference"):
        index.recall_against_exact(big_queries, k=10)


@needs_hnswlib
def test_hnsw_recall(hnsw_index: VectorIndex, big_queries: np.ndarray) -> None:
    assert hnsw_index.storage_dtype == np.float32
    assert hnsw_index.recall_against_exact(big_queries, k=10) >= 0.95


# ---------------------------------------------------------------------- add / update


@pytest.mark.parametrize("config", ALL_CONFIGS)
def test_add_and_update_are_found_immediately(config: IndexConfig) -> None:
    items = _gaussian(300, 16, seed=17)
    index = VectorIndex.build(items, config)
    rng = np.random.default_rng(18)
    # A long vector dominates every dot product with a query equal to it.
    new = (rng.standard_normal((3, 16)) * 20).astype(np.float32)
    ids = index.add(new)
    np.testing.assert_array_equal(ids, [300, 301, 302])
    assert index.size == 303 and index.dim == 16
    top, _ = index.search(new, k=1)
    np.testing.assert_array_equal(top[:, 0], ids)

    changed = (rng.standard_normal((2, 16)) * 20).astype(np.float32)
    index.update(np.array([7, 301]), changed)
    assert index.size == 303
    top, scores = index.search(changed, k=1)
    np.testing.assert_array_equal(top[:, 0], [7, 301])
    np.testing.assert_allclose(scores[:, 0], (changed**2).sum(axis=1), rtol=0.02)

    # Many small adds grow the storage (and the HNSW capacity) and stay findable.
    more = (rng.standard_normal((40, 16)) * 20).astype(np.float32)
    for row in more:
        index.add(row[None, :])
    top, _ = index.search(more, k=1)
    np.testing.assert_array_equal(top[:, 0], np.arange(303, 343))
    assert index.add(np.empty((0, 16), dtype=np.float32)).shape == (0,)


def test_update_and_add_reject_bad_input() -> None:
    index = VectorIndex.build(_gaussian(10, 4, seed=19))
    with pytest.raises(ClrecError, match="not in the index"):
        index.update(np.array([10]), _gaussian(1, 4, seed=0))
    with pytest.raises(ClrecError, match="duplicates"):
        index.update(np.array([1, 1]), _gaussian(2, 4, seed=0))
    with pytest.raises(ClrecError, match="must match"):
        index.update(np.array([1, 2]), _gaussian(3, 4, seed=0))
    with pytest.raises(ClrecError, match="dimension"):
        index.add(_gaussian(1, 5, seed=0))
    with pytest.raises(ClrecError, match="NaN"):
        index.add(np.array([[1.0, np.nan, 0.0, 0.0]], dtype=np.float32))


# ---------------------------------------------------------------------- save / load


@pytest.mark.parametrize(
    "config",
    [
        *ALL_CONFIGS,
        pytest.param(
            IndexConfig(kind="hnsw", metric="cosine", num_threads=1),
            id="hnsw-cosine",
            marks=needs_hnswlib,
        ),
    ],
)
def test_save_load_round_trip(config: IndexConfig, tmp_path: Path) -> None:
    items, queries = _gaussian(700, 16, seed=20), _gaussian(30, 16, seed=21)
    index = VectorIndex.build(items, config)
    index.add(_gaussian(5, 16, seed=22))  # leaves spare capacity, which must not be saved
    exclude = [np.arange(row, 700, 7) for row in range(30)]
    before = index.search(queries, k=10, exclude=exclude)
    out = index.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temps
    restored = VectorIndex.load(out)
    assert restored.config == config
    assert (restored.size, restored.dim) == (705, 16)
    assert restored.storage_dtype == index.storage_dtype
    after = restored.search(queries, k=10, exclude=exclude)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert np.load(out / VECTORS_FILE).dtype == np.dtype(config.precision)
    # The restored index keeps working: add, then save over the old files.
    new_id = restored.add(_gaussian(1, 16, seed=23) * 30)
    restored.save(out)
    assert VectorIndex.load(out).size == 706 == int(new_id[0]) + 1


def _saved(tmp_path: Path, config: IndexConfig, rows: int = 50, dim: int = 8) -> Path:
    return VectorIndex.build(_gaussian(rows, dim, seed=24), config).save(tmp_path / "idx")


def _edit_meta(directory: Path, **changes: Any) -> None:
    meta = json.loads((directory / META_FILE).read_text())
    meta.update(changes)
    (directory / META_FILE).write_text(json.dumps(meta))


def _reseal(directory: Path) -> None:
    """Record the files' current digests in index.json, as if they had been saved so: the
    checks behind the digests must still refuse what the digests would have caught."""
    meta = json.loads((directory / META_FILE).read_text())
    meta["sha256"] = {name: file_digest(directory / name) for name in meta["sha256"]}
    (directory / META_FILE).write_text(json.dumps(meta))


def test_load_rejects_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ClrecError, match="not found"):
        VectorIndex.load(tmp_path / "nowhere")

    out = _saved(tmp_path, IndexConfig())
    (out / META_FILE).write_text("{not json")
    with pytest.raises(ClrecError, match="unreadable index metadata"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    _edit_meta(out, count=51)
    with pytest.raises(ClrecError, match=r"index\.json says"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    _edit_meta(out, dim=9)
    with pytest.raises(ClrecError, match=r"index\.json says"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    _edit_meta(out, format_version=99)
    with pytest.raises(ClrecError, match="format_version"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    _edit_meta(out, config={"kind": "exact", "precision": "int4"})
    with pytest.raises(ClrecError, match="precision"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    raw = (out / VECTORS_FILE).read_bytes()
    (out / VECTORS_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ClrecError, match=re.escape(VECTORS_FILE) + ": checksum mismatch"):
        VectorIndex.load(out)
    _reseal(out)
    with pytest.raises(ClrecError, match=re.escape(VECTORS_FILE) + ": unreadable array"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    np.save(out / VECTORS_FILE, _gaussian(50, 8, seed=0).astype(np.float64))
    with pytest.raises(ClrecError, match="checksum mismatch"):
        VectorIndex.load(out)
    _reseal(out)
    with pytest.raises(ClrecError, match="float64"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig())
    meta = json.loads((out / META_FILE).read_text())
    del meta["sha256"]
    (out / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ClrecError, match="no file digests"):
        VectorIndex.load(out)

    out = _saved(tmp_path, IndexConfig(precision="int8"))
    (out / SCALES_FILE).unlink()
    with pytest.raises(ClrecError, match=re.escape(SCALES_FILE)):
        VectorIndex.load(out)


@needs_hnswlib
def test_load_rejects_mismatched_hnsw_graph(tmp_path: Path) -> None:
    out = _saved(tmp_path, HNSW)
    raw = (out / HNSW_FILE).read_bytes()
    (out / HNSW_FILE).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ClrecError, match=re.escape(HNSW_FILE) + ": checksum mismatch"):
        VectorIndex.load(out)
    _reseal(out)
    with pytest.raises(ClrecError, match=re.escape(HNSW_FILE)):
        VectorIndex.load(out)

    out = _saved(tmp_path, HNSW)
    (out / HNSW_FILE).write_bytes(b"garbage")
    _reseal(out)
    with pytest.raises(ClrecError, match="truncated"):
        VectorIndex.load(out)

    # A graph of another size / dimension (e.g. copied from a different index).
    for rows, dim in ((60, 8), (50, 16)):
        other = _saved(tmp_path / f"other{rows}x{dim}", HNSW, rows=rows, dim=dim)
        out = _saved(tmp_path, HNSW)
        (out / HNSW_FILE).write_bytes((other / HNSW_FILE).read_bytes())
        _reseal(out)
        with pytest.raises(ClrecError, match="holds"):
            VectorIndex.load(out)

    # Same shape, different vectors.
    other = _saved(tmp_path / "other", IndexConfig(kind="hnsw", num_threads=1, seed=5))
    np.save(other / VECTORS_FILE, _gaussian(50, 8, seed=99))
    out = _saved(tmp_path, HNSW)
    (out / HNSW_FILE).write_bytes((other / HNSW_FILE).read_bytes())
    np.save(out / VECTORS_FILE, _gaussian(50, 8, seed=98))
    _reseal(out)
    with pytest.raises(ClrecError, match="differ"):
        VectorIndex.load(out)

    out = _saved(tmp_path, HNSW)
    (out / HNSW_FILE).unlink()
    with pytest.raises(ClrecError, match="not found"):
        VectorIndex.load(out)


@needs_hnswlib
def test_a_damaged_graph_never_reaches_hnswlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flipped byte in the middle of the graph (same length, header intact: what the
    structural checks cannot see, and what can crash hnswlib's loader) is refused by its
    digest before the native library is called."""
    out = _saved(tmp_path, HNSW)
    raw = bytearray((out / HNSW_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / HNSW_FILE).write_bytes(bytes(raw))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("hnswlib was handed a damaged file")

    monkeypatch.setattr(storage, "import_hnswlib", never)
    with pytest.raises(ClrecError, match=re.escape(HNSW_FILE) + ": checksum mismatch"):
        VectorIndex.load(out)


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "ivf"}, "kind"),
        ({"precision": "int4"}, "precision"),
        ({"metric": "l2"}, "metric"),
        ({"kind": "hnsw", "precision": "int8"}, "always stores float32"),
        ({"m": 1}, "m must be >= 2"),
        ({"ef_construction": 0}, "ef_construction"),
        ({"ef_search": 0}, "ef_search"),
        ({"chunk_items": 0}, "chunk_items"),
        ({"chunk_items": 2.5}, "integer"),
        ({"seed": -1}, "seed"),
        ({"num_threads": 0}, "num_threads"),
        ({"m": True}, "integer"),
    ],
)
def test_bad_config_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ClrecError, match=message):
        IndexConfig(**changes)


def test_config_from_dict_round_trip_and_unknown_keys() -> None:
    config = IndexConfig(kind="hnsw", m=8, num_threads=2)
    assert IndexConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ClrecError, match="unknown IndexConfig field"):
        IndexConfig.from_dict({"kind": "exact", "ef": 10})


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.empty((0, 4), dtype=np.float32), "empty"),
        (np.ones(4, dtype=np.float32), "2-D"),
        (np.array([[1.0, 2.0], [np.inf, 0.0]], dtype=np.float32), "row 1"),
        (np.array([["a", "b"]]), "numeric"),
    ],
)
def test_build_rejects_bad_vectors(vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ClrecError, match=message):
        VectorIndex.build(vectors, IndexConfig())


def test_search_rejects_bad_arguments() -> None:
    index = VectorIndex.build(_gaussian(20, 4, seed=25))
    queries = _gaussian(2, 4, seed=26)
    with pytest.raises(ClrecError, match="dimension"):
        index.search(_gaussian(2, 3, seed=0), k=1)
    with pytest.raises(ClrecError, match="NaN"):
        index.search(np.full((1, 4), np.nan, dtype=np.float32), k=1)
    with pytest.raises(ClrecError, match="k must be"):
        index.search(queries, k=0)
    with pytest.raises(ClrecError, match="exclude has 1 entries"):
        index.search(queries, k=1, exclude=[[1]])
    with pytest.raises(ClrecError, match="integer item ids"):
        index.search(queries, k=1, exclude=[[1.5], []])
    with pytest.raises(ClrecError, match="allowed mask has shape"):
        index.search(queries, k=1, allowed=np.ones(21, dtype=bool))
    with pytest.raises(ClrecError, match="not in the index"):
        index.search(queries, k=1, allowed=np.array([3, 20]))
    ids, scores = index.search(np.empty((0, 4), dtype=np.float32), k=3)
    assert ids.shape == scores.shape == (0, 3)
