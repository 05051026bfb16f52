"""MovieLens readers: ml-latest-small (bundled), ML-100K and ML-1M (with DBpedia and posters)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clrec.data.files import read_delimited
from clrec.data.schema import Dataset
from clrec.data.validation import (
    parse_ids,
    parse_numbers,
    parse_timestamps,
    require_columns,
    resolve_duplicates,
)


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
