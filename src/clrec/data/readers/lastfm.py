"""Last.fm HetRec 2011 (hetrec2011-lastfm-2k): play counts, artist tags and a friendship graph.

Traps in the original files: ``artists.dat`` is UTF-8 and holds names with double quotes
(``"Weird Al" Yankovic``), so it is read without quote handling; ``tags.dat`` is latin-1;
``user_taggedartists.dat`` tags 390 artist ids that ``artists.dat`` does not list.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from clrec.data.files import read_delimited
from clrec.data.schema import Dataset, FieldKind
from clrec.data.validation import parse_ids, parse_numbers, require_columns, resolve_duplicates
from clrec.errors import DataError

DEFAULT_TOP_TAGS = 20


def _artist_tags(root: Path, top: int) -> pd.Series | None:
    """Each artist's ``top`` most used tag strings, ``|``-joined, indexed by artist id.

    Tags count once per user who applied them; ties go to the alphabetically first tag so
    the result does not depend on file order. ``None`` when the tag files are absent.
    """
    tags_path = root / "tags.dat"
    applied_path = root / "user_taggedartists.dat"
    if not (tags_path.exists() and applied_path.exists()):
        return None
    tags = read_delimited(tags_path, sep="\t", encoding="latin-1", quoting=csv.QUOTE_NONE)
    require_columns(tags, ["tagID", "tagValue"], file=tags_path)
    names = pd.Series(
        tags["tagValue"].str.strip().str.replace("|", "/", regex=False).to_numpy(),
        index=parse_ids(tags["tagID"], column="tagID", file=tags_path).to_numpy(),
    )
    applied = read_delimited(applied_path, sep="\t", quoting=csv.QUOTE_NONE)
    require_columns(applied, ["userID", "artistID", "tagID"], file=applied_path)
    counts = (
        pd.DataFrame(
            {
                "artist": parse_ids(applied["artistID"], column="artistID", file=applied_path),
                "tag": parse_ids(applied["tagID"], column="tagID", file=applied_path).map(names),
            }
        )
        .dropna()
        .loc[lambda f: f["tag"] != ""]
        .value_counts(["artist", "tag"])
        .rename("uses")
        .reset_index()
        .sort_values(["artist", "uses", "tag"], ascending=[True, False, True], kind="stable")
    )
    top_rows = counts.groupby("artist", sort=False).head(top)
    joined: dict[str, list[str]] = {}
    for artist, tag in zip(top_rows["artist"].tolist(), top_rows["tag"].tolist(), strict=True):
        joined.setdefault(artist, []).append(tag)
    return pd.Series({artist: "|".join(tags) for artist, tags in joined.items()}, dtype="string")


def read_lastfm(folder: str | Path, *, top_tags: int = DEFAULT_TOP_TAGS) -> Dataset:
    """Last.fm-2k: 1,892 users, 17,632 artists, 92,834 play counts as ``weight`` (implicit).

    Item content: artist ``name`` (text), Last.fm page ``url`` (category), ``picture_url``
    (image reference, often dead) and ``tags`` (the ``top_tags`` most used tags). Friend
    pairs become ``user_relations``; tags on artists missing from ``artists.dat`` are ignored.
    """
    root = Path(folder)
    plays_path = root / "user_artists.dat"
    plays = read_delimited(plays_path, sep="\t")
    require_columns(plays, ["userID", "artistID", "weight"], file=plays_path)
    interactions = pd.DataFrame(
        {
            "user": parse_ids(plays["userID"], column="userID", file=plays_path),
            "item": parse_ids(plays["artistID"], column="artistID", file=plays_path),
            "weight": parse_numbers(plays["weight"], column="weight", file=plays_path, low=0.0),
        }
    )
    interactions = resolve_duplicates(interactions, "reject", file=plays_path)

    artists_path = root / "artists.dat"
    artists = read_delimited(artists_path, sep="\t", quoting=csv.QUOTE_NONE)
    require_columns(artists, ["id", "name", "url", "pictureURL"], file=artists_path)
    content = pd.DataFrame(
        {
            "id": parse_ids(artists["id"], column="id", file=artists_path),
            "name": artists["name"].str.strip(),
            "url": artists["url"].str.strip(),
            "picture_url": artists["pictureURL"].str.strip(),
        }
    )
    repeated = content["id"].duplicated()
    if repeated.any():
        row = int(repeated.to_numpy().nonzero()[0][0]) + 1
        raise DataError(
            f"artist id {content['id'].iloc[row - 1]!r} listed twice", file=artists_path, row=row
        )
    fields: dict[str, FieldKind] = {"name": "text", "url": "category", "picture_url": "image"}
    tags = _artist_tags(root, top_tags)
    if tags is not None:
        content["tags"] = content["id"].map(tags).astype("string")
        fields["tags"] = "tags"

    relations = None
    friends_path = root / "user_friends.dat"
    if friends_path.exists():
        friends = read_delimited(friends_path, sep="\t")
        require_columns(friends, ["userID", "friendID"], file=friends_path)
        relations = pd.DataFrame(
            {
                "user": parse_ids(friends["userID"], column="userID", file=friends_path),
                "other": parse_ids(friends["friendID"], column="friendID", file=friends_path),
            }
        )

    return Dataset.from_external(
        "lastfm",
        interactions,
        item_content=content,
        item_fields=fields,
        user_relations=relations,
        unknown_content="keep",
        content_file=artists_path,
        source=str(root),
    )
