"""The item featuriser: tag / category multi-hot with title years and decades (checked on
the bundled ml-latest-small and on tiny synthetic catalogues), modality selection and its
errors, and the fitted featuriser reading new rows exactly as it read the catalogue (saved and
loaded). Text is never encoded here: loading a language model is too slow for a unit test."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clrec.data import registry
from clrec.data.schema import Dataset, FieldKind
from clrec.encoders.featurizer import (
    ContentConfig,
    ItemFeaturizer,
    TagVocabulary,
    offered_modalities,
)
from clrec.errors import ClrecError

WIDE = 1_000_000  # no cap on the number of tags


def tag_matrix(
    dataset: Dataset,
    min_count: int = 2,
    max_tags: int = 512,
    exclude_fields: tuple[str, ...] = (),
) -> np.ndarray | None:
    """The catalogue's tag matrix through a vocabulary fitted on it (None: no tag kept)."""
    vocabulary = TagVocabulary.fit(
        dataset.items, dataset.item_fields, min_count, max_tags, exclude_fields
    )
    return None if vocabulary is None else vocabulary.transform(dataset.items)


def build_content(dataset: Dataset, config: ContentConfig) -> dict[str, np.ndarray]:
    return ItemFeaturizer.fit_transform(dataset, config)[1]


@pytest.fixture(scope="module")
def movies() -> Dataset:
    return registry.load("ml-latest-small", None)


def _ones(matrix: np.ndarray) -> np.ndarray:
    """0/1 with NaN rows as zeros."""
    return np.nan_to_num(matrix, nan=0.0)


def _columns_equal_to(matrix: np.ndarray, mask: np.ndarray) -> list[int]:
    ones = _ones(matrix).astype(bool)
    return [j for j in range(ones.shape[1]) if np.array_equal(ones[:, j], mask)]


def _years(dataset: Dataset) -> pd.Series:
    return dataset.items["title"].astype(str).str.extract(r"\((\d{4})\)\s*$", expand=False)


def _synthetic(
    content: dict[str, list[object]],
    fields: dict[str, FieldKind],
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Dataset:
    n = len(next(iter(content.values()))) if content else 4
    ids = [f"i{k}" for k in range(n)]
    frame = pd.DataFrame({"user": [f"u{k % 3}" for k in range(n)], "item": ids})
    catalogue = pd.DataFrame({"id": ids, **content})
    return Dataset.from_external(
        "tiny", frame, item_content=catalogue, item_fields=fields, item_vectors=vectors
    )


# ---------------------------------------------------------------------- ml-latest-small
def test_year_and_decade_tags_from_title_suffix(movies: Dataset) -> None:
    matrix = tag_matrix(movies, min_count=2, max_tags=WIDE)
    assert matrix is not None and matrix.dtype == np.float32
    assert matrix.shape[0] == movies.n_items
    years = _years(movies)
    assert movies.items["title"].iloc[0] == "Toy Story (1995)"
    of_1995 = (years == "1995").to_numpy()
    of_1990s = years.str.startswith("199").fillna(False).to_numpy(dtype=bool)
    assert of_1995.sum() > 100 and of_1990s.sum() > of_1995.sum()
    year_columns = _columns_equal_to(matrix, of_1995)
    decade_columns = _columns_equal_to(matrix, of_1990s)
    assert len(year_columns) == 1 and len(decade_columns) == 1
    assert matrix[0, year_columns[0]] == 1 and matrix[0, decade_columns[0]] == 1
    # "(1995)" inside a title is no release year
    odd = _synthetic({"title": ["A (1995)", "B (1995)", "C (1995) part 2", "D"]}, {"title": "text"})
    odd_matrix = tag_matrix(odd, min_count=1)
    assert odd_matrix is not None and odd_matrix.shape[1] == 2  # year:1995, decade:1990
    assert np.isnan(odd_matrix[2:]).all() and (odd_matrix[:2] == 1).all()


def test_width_matches_hand_count_and_ids_are_excluded(movies: Dataset) -> None:
    """Every distinct genre, tag (lower-cased), year and decade; no imdb / tmdb ids."""
    names: set[str] = set()
    for column in ("genres", "tags"):
        for value in movies.items[column].dropna():
            names |= {f"{column}:{t.strip().lower()}" for t in str(value).split("|") if t.strip()}
    years = _years(movies).dropna().astype(int)
    names |= {f"year:{y}" for y in years} | {f"decade:{y // 10 * 10}" for y in years}
    matrix = tag_matrix(movies, min_count=1, max_tags=WIDE)
    assert matrix is not None
    assert matrix.shape[1] == len(names)
    assert movies.items["imdb_id"].nunique() > 0.9 * movies.n_items  # id-like indeed
    # the id fields would add thousands of columns; excluding them by name changes nothing
    excluded = tag_matrix(movies, 1, WIDE, exclude_fields=("imdb_id", "tmdb_id"))
    assert excluded is not None and excluded.shape == matrix.shape
    np.testing.assert_array_equal(excluded, matrix)


def test_min_count_drops_rare_tags(movies: Dataset) -> None:
    every = tag_matrix(movies, min_count=1, max_tags=WIDE)
    shared = tag_matrix(movies, min_count=2, max_tags=WIDE)
    common = tag_matrix(movies, min_count=5, max_tags=WIDE)
    assert every is not None and shared is not None and common is not None
    assert (_ones(every).sum(0) == 1).any()  # singletons exist
    assert _ones(shared).sum(0).min() >= 2 and _ones(common).sum(0).min() >= 5
    assert every.shape[1] > shared.shape[1] > common.shape[1]
    assert shared.shape[1] == int((_ones(every).sum(0) >= 2).sum())


def test_max_tags_keeps_the_most_frequent(movies: Dataset) -> None:
    full = tag_matrix(movies, min_count=2, max_tags=WIDE)
    capped = tag_matrix(movies, min_count=2, max_tags=20)
    assert full is not None and capped is not None
    assert capped.shape == (movies.n_items, 20)
    counts = np.sort(_ones(full).sum(0))[::-1]
    assert _ones(capped).sum(0).min() >= counts[20]  # none rarer than the first left out
    np.testing.assert_array_equal(np.sort(_ones(capped).sum(0))[::-1], counts[:20])
    assert np.isnan(capped[:, 0]).sum() > np.isnan(full[:, 0]).sum()  # more items lose all


def test_items_without_kept_tags_are_nan_rows(movies: Dataset) -> None:
    matrix = tag_matrix(movies, min_count=2, max_tags=50)
    assert matrix is not None
    nan_rows = np.isnan(matrix).any(axis=1)
    assert nan_rows.any() and not nan_rows.all()
    assert np.isnan(matrix[nan_rows]).all()  # whole rows, never single cells
    rest = matrix[~nan_rows]
    assert set(np.unique(rest)) <= {0.0, 1.0} and (rest.sum(axis=1) >= 1).all()


def test_excluding_fields(movies: Dataset) -> None:
    no_title = tag_matrix(movies, 1, WIDE, exclude_fields=("title",))
    assert no_title is not None
    years = _years(movies)
    assert not _columns_equal_to(no_title, (years == "1995").to_numpy())
    genres_only = tag_matrix(movies, 1, WIDE, exclude_fields=("title", "tags"))
    assert genres_only is not None
    genres = {g for value in movies.items["genres"].dropna() for g in str(value).split("|")}
    assert genres_only.shape[1] == len(genres)


def test_build_content_with_tags_only(movies: Dataset) -> None:
    config = ContentConfig(modalities=("tags",), cache_dir=None, min_tag_count=3, max_tags=64)
    content = build_content(movies, config)
    assert list(content) == ["tags"]
    expected = tag_matrix(movies, 3, 64)
    assert expected is not None
    np.testing.assert_array_equal(content["tags"], expected)
    assert offered_modalities(movies) == {"tags", "text"}


def test_unknown_modality_lists_what_isoffered_modalities(movies: Dataset) -> None:
    with pytest.raises(ClrecError) as caught:
        build_content(movies, ContentConfig(modalities=("tags", "image"), cache_dir=None))
    message = str(caught.value)
    assert "image" in message and re.search(r"offers: tags, text\b", message)


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "settings",
    [
        {"modalities": ("auto", "tags")},
        {"modalities": ("text", "auto")},
        {"min_tag_count": 0},
        {"max_tags": 0},
        {"max_tags": -5},
    ],
)
def test_bad_content_config_is_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ClrecError):
        ContentConfig(**settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- synthetic catalogues
def test_no_content_fields_gives_nothing() -> None:
    bare = _synthetic({}, {})
    assert offered_modalities(bare) == set()
    assert build_content(bare, ContentConfig(modalities=("auto",), cache_dir=None)) == {}
    assert build_content(bare, ContentConfig(modalities=(), cache_dir=None)) == {}
    assert tag_matrix(bare) is None
    with pytest.raises(ClrecError, match="offers: none"):
        build_content(bare, ContentConfig(modalities=("tags",), cache_dir=None))


def test_categories_tags_and_id_like_fields() -> None:
    data = _synthetic(
        {
            "brand": ["acme", "acme", "zeta", "zeta", None, "solo"],
            "sku": ["a1", "a2", "a3", "a4", "a5", "a6"],  # one value per item: id-like
            "labels": ["Red| blue", "red|BLUE|red", "green", None, "", "red"],
        },
        {"brand": "category", "sku": "category", "labels": "tags"},
    )
    matrix = tag_matrix(data, min_count=2)
    assert matrix is not None
    # kept: brand:acme, brand:zeta, labels:blue, labels:red (sorted); green, solo: singletons
    expected = np.array(
        [
            [1, 0, 1, 1],
            [1, 0, 1, 1],
            [0, 1, 0, 0],
            [0, 1, 0, 0],
            [np.nan] * 4,
            [0, 0, 0, 1],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(matrix, expected)
    every = tag_matrix(data, min_count=1)
    assert every is not None and every.shape[1] == 6  # + brand:solo, labels:green; no sku
    assert tag_matrix(data, min_count=7) is None  # nothing survives


def test_auto_takes_tags_and_precomputed_vectors_without_encoders() -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    data = _synthetic(
        {"genre": ["a", "a", "b", "b"]},
        {"genre": "category"},
        vectors={"clip": (np.array(["i0", "i2", "i3"]), vectors)},
    )
    assert offered_modalities(data) == {"clip", "tags"}
    content = build_content(data, ContentConfig(modalities=("auto",), cache_dir=None))
    assert list(content) == ["clip", "tags"]
    assert content["clip"].dtype == np.float32
    np.testing.assert_array_equal(content["clip"][[0, 2, 3]], vectors)
    assert np.isnan(content["clip"][1]).all()
    np.testing.assert_array_equal(content["tags"], [[1, 0], [1, 0], [0, 1], [0, 1]])
    only = build_content(data, ContentConfig(modalities=("clip",), cache_dir=None))
    assert list(only) == ["clip"]


def test_offered_modalities() -> None:
    text_only = _synthetic({"description": ["x", "y"]}, {"description": "text"})
    assert offered_modalities(text_only) == {"text"}  # free text: no tags to read
    titled = _synthetic({"title": ["A (1999)", "B (1999)"]}, {"title": "text"})
    assert offered_modalities(titled) == {"text", "tags"}
    images = _synthetic({"poster": ["a.jpg", "b.jpg"]}, {"poster": "image"})
    assert offered_modalities(images) == {"image"}
    with pytest.raises(ClrecError, match="offers: image"):
        build_content(images, ContentConfig(modalities=("tags",), cache_dir=None))


# ---------------------------------------------------------------------- the fitted featuriser
def test_new_rows_read_as_the_catalogue_was(movies: Dataset, tmp_path: Path) -> None:
    config = ContentConfig(modalities=("tags",), cache_dir=None, min_tag_count=2, max_tags=256)
    featurizer, content = ItemFeaturizer.fit_transform(movies, config)
    featurizer.save(tmp_path)
    loaded = ItemFeaturizer.load(tmp_path)
    assert loaded.names == ["tags"] and loaded.dims == {"tags": content["tags"].shape[1]}
    rows = [
        {c: (None if pd.isna(v) else str(v)) for c, v in row.items() if c != "id"}
        for row in movies.items.iloc[:50].to_dict("records")
    ]
    again = loaded.transform(rows)["tags"]  # (50, T) from text fields, as the API sends them
    np.testing.assert_array_equal(again, content["tags"][:50])


def test_new_rows_keep_the_fitted_vocabulary() -> None:
    data = _synthetic(
        {"genre": ["a", "a", "b", "b"], "title": ["x (1999)", "y (1999)", "z", "w"]},
        {"genre": "category", "title": "text"},
    )
    config = ContentConfig(modalities=("tags",), cache_dir=None)
    featurizer, content = ItemFeaturizer.fit_transform(data, config)
    assert content["tags"].shape == (4, 4)  # decade:1990, genre:a, genre:b, year:1999
    new = featurizer.transform([{"genre": "c", "title": "v (1999)"}, {"genre": "b"}])["tags"]
    # an unseen genre adds no column; the known year and genre land in their fitted columns
    np.testing.assert_array_equal(new, [[1, 0, 0, 1], [0, 0, 1, 0]])
    with pytest.raises(ClrecError, match="no content the model can read"):
        featurizer.transform([{"genre": "c"}])
    with pytest.raises(ClrecError, match="unknown field"):
        featurizer.transform([{"studio": "x"}])


def test_numbers_are_typed_as_the_catalogue_stores_them() -> None:
    data = _synthetic({"year": [1999, 1999, 2001, 2001]}, {"year": "category"})
    featurizer, _ = ItemFeaturizer.fit_transform(
        data, ContentConfig(modalities=("tags",), cache_dir=None)
    )
    # the API sends text: "2001" must read as the catalogue's integer 2001, not a new value
    np.testing.assert_array_equal(featurizer.transform([{"year": "2001"}])["tags"], [[0, 1]])
    with pytest.raises(ClrecError, match="must be a number"):
        featurizer.frame([{"year": "soon"}])


def test_precomputed_vectors_are_missing_for_new_items() -> None:
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    data = _synthetic(
        {"genre": ["a", "a", "b", "b"]},
        {"genre": "category"},
        vectors={"clip": (np.array(["i0", "i2", "i3"]), vectors)},
    )
    featurizer, _ = ItemFeaturizer.fit_transform(
        data, ContentConfig(modalities=("auto",), cache_dir=None)
    )
    new = featurizer.transform([{"genre": "b"}])
    assert new["clip"].shape == (1, 2) and np.isnan(new["clip"]).all()
    np.testing.assert_array_equal(new["tags"], [[0, 1]])
