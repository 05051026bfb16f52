"""Ranker texts: item texts equal the template render, user contexts checked by hand on a tiny
catalogue (newest first, limited to the recent items, title fallback, profile appended), and
config errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from clrec.data.schema import Dataset
from clrec.encoders.text import default_template
from clrec.errors import ClrecError
from clrec.ranking.texts import UserContextConfig, item_texts, user_contexts


def tiny() -> Dataset:
    """Items m1–m6 (m5 has genres but no title, m6 no content); users u1, u2 (profile only),
    u3 (nothing)."""
    items = pd.DataFrame(
        {
            "id": ["m1", "m2", "m3", "m4", "m5", "m6"],
            "title": ["Movie A", "Movie B", "Movie C", "Movie D", None, None],
            "genres": ["Action", "Comedy|Drama", None, "Horror", "Drama|Comedy", None],
        }
    )
    users = pd.DataFrame({"id": ["u1", "u2", "u3"], "bio": ["jazz fan", "night owl", None]})
    # u1 watched m1 (t=10), m3 (t=20), m2 (t=30), m5 (t=40), m6 (t=50); u2 only m4 — but the
    # history the tests pass holds u1's rows only
    log = pd.DataFrame(
        {
            "user": ["u1", "u1", "u1", "u1", "u1", "u2"],
            "item": ["m1", "m3", "m2", "m5", "m6", "m4"],
            "timestamp": [10, 20, 30, 40, 50, 60],
        }
    )
    return Dataset.from_external(
        "tiny",
        log,
        item_content=items,
        user_content=users,
        item_fields={"title": "text", "genres": "tags"},
        user_fields={"bio": "text"},
    )


def u1_history(dataset: Dataset) -> pd.DataFrame:
    inter = dataset.interactions
    return inter[inter["user"] == 0].reset_index(drop=True)


def test_item_texts_equal_the_template_render_with_empty_strings_for_missing_content() -> None:
    dataset = tiny()
    texts = item_texts(dataset)
    rendered = default_template(dataset).render_table(dataset.items, dataset.item_fields)
    assert texts == [text or "" for text in rendered]
    assert texts[:5] == [
        "Movie A | Action",
        "Movie B | Comedy, Drama",
        "Movie C",
        "Movie D | Horror",
        "Drama, Comedy",
    ]
    assert texts[5] == ""  # m6: no content at all


def test_context_names_newest_items_first_limited_and_appends_profile() -> None:
    dataset = tiny()
    config = UserContextConfig(recent_items=3)
    contexts = user_contexts(dataset, u1_history(dataset), np.array([0, 1, 2]), config)
    # m6 (newest) has no text and is skipped; m5 has no title, so its text names it
    assert contexts == [
        "Recently seen: Drama, Comedy; Movie B; Movie C. Profile: jazz fan.",
        "Profile: night owl.",  # u2's m4 is not in the history given
        "No history.",
    ]


def test_context_without_profile_and_with_custom_templates() -> None:
    dataset = tiny()
    config = UserContextConfig(
        recent_items=2, template="Saw {items}", include_profile=False, empty_text="(new user)"
    )
    contexts = user_contexts(dataset, u1_history(dataset), np.array([1, 0]), config)
    assert contexts == ["(new user)", "Saw Drama, Comedy; Movie B"]


def test_context_uses_row_order_without_timestamps_and_breaks_time_ties_by_row() -> None:
    dataset = tiny()
    history = u1_history(dataset)  # rows m1, m3, m2, m5, m6
    untimed = history.drop(columns="timestamp").iloc[[3, 2, 1, 0]]  # rows m5, m2, m3, m1
    config = UserContextConfig(recent_items=2, include_profile=False)
    assert user_contexts(dataset, untimed, np.array([0]), config) == [
        "Recently seen: Movie A; Movie C."
    ]
    tied = history.assign(timestamp=5)  # all at once: the later row is the newer one
    assert user_contexts(dataset, tied.iloc[:3], np.array([0]), config) == [
        "Recently seen: Movie B; Movie C."
    ]


def test_context_names_a_repeated_item_once_and_is_cut_to_max_chars() -> None:
    dataset = tiny()
    history = pd.DataFrame({"user": [0, 0, 0], "item": [0, 1, 0], "timestamp": [1, 2, 3]})
    config = UserContextConfig(include_profile=False)
    assert user_contexts(dataset, history, np.array([0]), config) == [
        "Recently seen: Movie A; Movie B."
    ]
    short = UserContextConfig(include_profile=False, max_chars=20)
    assert user_contexts(dataset, history, np.array([0]), short) == ["Recently seen: Movie"]


def test_context_without_title_column_uses_the_start_of_the_item_text() -> None:
    long_text = "x" * 100
    dataset = Dataset.from_external(
        "untitled",
        pd.DataFrame({"user": ["u"], "item": ["a"]}),
        item_content=pd.DataFrame({"id": ["a"], "blurb": [long_text]}),
        item_fields={"blurb": "text"},
    )
    contexts = user_contexts(dataset, dataset.interactions, np.array([0]))
    assert contexts == [f"Recently seen: {'x' * 80}."]


def test_bad_users_or_history_are_refused() -> None:
    dataset = tiny()
    with pytest.raises(ClrecError, match="outside"):
        user_contexts(dataset, u1_history(dataset), np.array([3]))
    with pytest.raises(ClrecError, match="'item'"):
        user_contexts(dataset, pd.DataFrame({"user": [0]}), np.array([0]))


@pytest.mark.parametrize(
    "fields",
    [
        {"recent_items": -1},
        {"recent_items": 2.5},
        {"max_chars": 0},
        {"include_profile": "yes"},
        {"template": "Recently seen."},
        {"template": "{items} and {more}"},
        {"template": "{items[0]}"},
        {"profile_template": "{items}"},
        {"empty_text": "  "},
    ],
)
def test_bad_context_config_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ClrecError):
        UserContextConfig(**fields)
