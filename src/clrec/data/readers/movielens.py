"""MovieLens readers: ml-latest-small (bundled), ML-100K and ML-1M (with DBpedia and posters)."""

from __future__ import annotations

import csv
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from clrec.data.files import read_delimited, read_text
from clrec.data.schema import Dataset, FieldKind
from clrec.data.validation import (
    parse_ids,
    parse_labels,
    parse_numbers,
    parse_timestamps,
    require_columns,
    resolve_duplicates,
)
from clrec.errors import DataError


def read_ml_latest_small(folder: str | Path) -> Dataset:
    """ml-latest-small: ratings (0.5–5, timestamps), titles, genres and users' free-text tags.

    Tags become an item text field (each movie's distinct tags joined by ``|``); the tag
    applications themselves are not interactions.
    """
    root = Path(folder)
    ratings_path = root / "ratings.csv"
    ratings = read_delimited(ratings_path, sep=",")
    require_columns(ratings, ["userId", "movieId", "rating", "timestamp"], file=ratings_path)
    interactions = pd.DataFrame(
        {
            "user": parse_ids(ratings["userId"], column="userId", file=ratings_path),
            "item": parse_ids(ratings["movieId"], column="movieId", file=ratings_path),
            "rating": parse_numbers(
                ratings["rating"], column="rating", file=ratings_path, low=0.5, high=5.0
            ),
            "timestamp": parse_timestamps(
                ratings["timestamp"], column="timestamp", file=ratings_path
            ),
        }
    )
    interactions = resolve_duplicates(interactions, "reject", file=ratings_path)

    movies_path = root / "movies.csv"
    movies = read_delimited(movies_path, sep=",")
    require_columns(movies, ["movieId", "title", "genres"], file=movies_path)
    content = pd.DataFrame(
        {
            "id": parse_ids(movies["movieId"], column="movieId", file=movies_path),
            "title": movies["title"].str.strip(),
            "genres": movies["genres"].replace("(no genres listed)", pd.NA),
        }
    )
    tags_path = root / "tags.csv"
    if tags_path.exists():
        tags = read_delimited(tags_path, sep=",")
        require_columns(tags, ["userId", "movieId", "tag"], file=tags_path)
        tags = tags.assign(movieId=parse_ids(tags["movieId"], column="movieId", file=tags_path))
        joined = (
            tags.dropna(subset=["tag"])
            .assign(tag=lambda f: f["tag"].str.strip())
            .drop_duplicates(["movieId", "tag"])
            .groupby("movieId", sort=False)["tag"]
            .agg("|".join)
        )
        content["tags"] = content["id"].map(joined).astype("string")
    links_path = root / "links.csv"
    if links_path.exists():
        links = read_delimited(links_path, sep=",").set_index("movieId")
        content["imdb_id"] = content["id"].map(links["imdbId"]).astype("string")
        content["tmdb_id"] = content["id"].map(links["tmdbId"]).astype("string")

    return Dataset.from_external(
        "ml-latest-small",
        interactions,
        item_content=content,
        item_fields={
            "title": "text",
            "genres": "tags",
            "tags": "tags",
            "imdb_id": "category",
            "tmdb_id": "category",
        },
        unknown_content="keep",
        content_file=movies_path,
        source=str(root),
    )


# --------------------------------------------------------------------------- ML-100K


def _ratings(path: Path, *, sep: str, encoding: str, with_timestamp: bool) -> pd.DataFrame:
    """Headerless ``user item rating [timestamp]`` rows as typed interactions (1–5 stars)."""
    names = ["user", "item", "rating"] + (["timestamp"] if with_timestamp else [])
    raw = read_delimited(path, sep=sep, names=names, encoding=encoding, quoting=csv.QUOTE_NONE)
    interactions = pd.DataFrame(
        {
            "user": parse_ids(raw["user"], column="user id", file=path),
            "item": parse_ids(raw["item"], column="item id", file=path),
            "rating": parse_numbers(raw["rating"], column="rating", file=path, low=1, high=5),
        }
    )
    if with_timestamp:
        interactions["timestamp"] = parse_timestamps(
            raw["timestamp"], column="timestamp", file=path
        )
    return resolve_duplicates(interactions, "reject", file=path)


def _genre_names(path: Path) -> list[str]:
    """Genre names of ``u.genre`` (``name|index``) in index order."""
    raw = read_delimited(path, sep="|", names=["name", "index"], quoting=csv.QUOTE_NONE)
    index = parse_numbers(raw["index"], column="genre index", file=path, low=0, dtype="int64")
    names = raw["name"].str.strip()
    if sorted(index.tolist()) != list(range(len(index))):
        raise DataError("genre indices are not 0..n-1 without gaps", file=path)
    return [str(names.iloc[i]) for i in np.argsort(index.to_numpy(), kind="stable")]


def _release_dates(series: pd.Series, *, file: Path) -> pd.Series:
    """``01-Jan-1995`` dates as ISO ``1995-01-01`` strings; empty stays missing."""
    text = series.astype("string").str.strip().replace("", pd.NA)
    parsed = pd.to_datetime(text, format="%d-%b-%Y", errors="coerce")
    bad = parsed.isna() & text.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(
            f"release date {text.iloc[row - 1]!r} is not a DD-Mon-YYYY date", file=file, row=row
        )
    return parsed.dt.strftime("%Y-%m-%d").astype("string")


def read_ml_100k(folder: str | Path) -> Dataset:
    """ML-100K in the original GroupLens layout: ``u.data``, ``u.item``, ``u.genre``, ``u.user``.

    Items get ``title``, ``release_date`` (ISO), ``imdb_url`` and ``genres`` (the set flags
    joined by ``|`` in ``u.genre`` order); the placeholder genre ``unknown`` and the
    placeholder title ``unknown`` (one item with no data at all) count as missing. Users get
    ``age`` (number), ``gender``, ``occupation`` and ``zip`` (categories).
    """
    root = Path(folder)
    interactions = _ratings(root / "u.data", sep="\t", encoding="utf-8", with_timestamp=True)

    genres = _genre_names(root / "u.genre")
    items_path = root / "u.item"
    base = ["movie_id", "title", "release_date", "video_release_date", "imdb_url"]
    flag_names = [f"genre_{i}" for i in range(len(genres))]
    raw = read_delimited(
        items_path, sep="|", names=base + flag_names, encoding="latin-1", quoting=csv.QUOTE_NONE
    )
    flags = np.column_stack(
        [
            parse_labels(raw[flag], column=f"{genre} flag", file=items_path).to_numpy()
            for flag, genre in zip(flag_names, genres, strict=True)
        ]
    ).astype(bool)
    known = np.array([genre.lower() != "unknown" for genre in genres])
    genre_array = np.array(genres, dtype=object)
    joined = ["|".join(genre_array[row & known]) or None for row in flags]
    title = raw["title"].str.strip()
    content = pd.DataFrame(
        {
            "id": parse_ids(raw["movie_id"], column="movie id", file=items_path),
            "title": title.mask((title.str.lower() == "unknown").fillna(False)),
            "genres": pd.array(joined, dtype="string"),
            "release_date": _release_dates(raw["release_date"], file=items_path),
            "imdb_url": raw["imdb_url"].str.strip(),
        }
    )

    users_path = root / "u.user"
    users = read_delimited(
        users_path,
        sep="|",
        names=["user_id", "age", "gender", "occupation", "zip"],
        quoting=csv.QUOTE_NONE,
    )
    user_content = pd.DataFrame(
        {
            "id": parse_ids(users["user_id"], column="user id", file=users_path),
            "age": parse_numbers(users["age"], column="age", file=users_path, low=0),
            "gender": users["gender"].str.strip(),
            "occupation": users["occupation"].str.strip(),
            "zip": users["zip"].str.strip(),
        }
    )
    return Dataset.from_external(
        "ml-100k",
        interactions,
        item_content=content,
        user_content=user_content,
        item_fields={
            "title": "text",
            "genres": "tags",
            "release_date": "category",
            "imdb_url": "category",
        },
        user_fields={
            "age": "number",
            "gender": "category",
            "occupation": "category",
            "zip": "category",
        },
        unknown_content="keep",
        content_file=items_path,
        source=str(root),
    )


# --------------------------------------------------------------------------- ML-1M

CONTENT_FOLDER_1M = "ml-1m-content"
_FALLBACK_ABSTRACT = re.compile(r"Movie: .*, Genres: \[.*\]", re.DOTALL)
_MISSING_ABSTRACTS = frozenset({"", "Abstract not found."})
_POSTER_MEMBER = re.compile(r"images/(\d+)\.jpg")


def read_ml_1m(folder: str | Path) -> Dataset:
    """ML-1M: ratings without timestamps, titles and genres, user demographics.

    Users get ``gender``, ``age`` (the bucket code 1/18/25/35/45/50/56), ``occupation`` (code
    0–20) and ``zip``, all categories. When a sibling folder ``ml-1m-content`` exists, items
    also get ``abstract`` (DBpedia text; the generated ``Movie: <title>, Genres: [...]`` and
    ``Abstract not found.`` fallbacks count as missing) and ``poster`` (an image reference
    ``<absolute tar path>#images/<MovieID>.jpg`` for posters present in the tar). Extras for
    movies absent from ``movies.dat`` are ignored.
    """
    root = Path(folder)
    interactions = _ratings(
        root / "ratings_no_timestamp.dat.gz", sep="::", encoding="latin-1", with_timestamp=False
    )

    movies_path = root / "movies.dat"
    movies = read_delimited(
        movies_path,
        sep="::",
        names=["movie_id", "title", "genres"],
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
    )
    content = pd.DataFrame(
        {
            "id": parse_ids(movies["movie_id"], column="movie id", file=movies_path),
            "title": movies["title"].str.strip(),
            "genres": movies["genres"].str.strip(),
        }
    )
    item_fields: dict[str, FieldKind] = {"title": "text", "genres": "tags"}
    extras = root.absolute().parent / CONTENT_FOLDER_1M
    abstracts_path = extras / "dbpedia_abstracts.json"
    if abstracts_path.exists():
        content["abstract"] = content["id"].map(_read_abstracts(abstracts_path)).astype("string")
        item_fields["abstract"] = "text"
    posters_path = extras / "ml1m_posters.tar"
    if posters_path.exists():
        members = _poster_members(posters_path)
        prefix = f"{posters_path.absolute()}#"
        content["poster"] = (prefix + content["id"].map(members)).astype("string")
        item_fields["poster"] = "image"

    users_path = root / "users.dat"
    users = read_delimited(
        users_path,
        sep="::",
        names=["user_id", "gender", "age", "occupation", "zip"],
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
    )
    user_content = pd.DataFrame(
        {"id": parse_ids(users["user_id"], column="user id", file=users_path)}
        | {column: users[column].str.strip() for column in ("gender", "age", "occupation", "zip")}
    )
    return Dataset.from_external(
        "ml-1m",
        interactions,
        item_content=content,
        user_content=user_content,
        item_fields=item_fields,
        user_fields={
            "gender": "category",
            "age": "category",
            "occupation": "category",
            "zip": "category",
        },
        unknown_content="keep",
        content_file=movies_path,
        source=str(root),
    )


def _read_abstracts(path: Path) -> pd.Series:
    """MovieID → DBpedia abstract, without the generated fallbacks that carry no new text."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg})", file=path, line=err.lineno) from err
    if not isinstance(data, dict):
        raise DataError("expected a JSON object mapping MovieID to abstract", file=path)
    abstracts: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise DataError(f"abstract of movie {key!r} is not a string", file=path)
        text = value.strip()
        if text in _MISSING_ABSTRACTS or _FALLBACK_ABSTRACT.fullmatch(text):
            continue
        abstracts[str(key).strip()] = text
    return pd.Series(abstracts, dtype="string")


def _poster_members(path: Path) -> pd.Series:
    """MovieID → tar member name of its poster, read from the tar's index (nothing extracted)."""
    try:
        with tarfile.open(path) as archive:
            names = archive.getnames()
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"not a readable tar archive ({err})", file=path) from err
    members = {match.group(1): name for name in names if (match := _POSTER_MEMBER.fullmatch(name))}
    return pd.Series(members, dtype="string")
