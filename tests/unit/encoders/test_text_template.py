"""Text templates: named fields joined cleanly, missing fields skipped without residue."""

from __future__ import annotations

import pandas as pd
import pytest

from clrec.data.schema import Dataset, FieldKind
from clrec.encoders.text import DEFAULT_TEMPLATES, TextTemplate, default_template
from clrec.errors import ClrecError


def test_all_fields_present_joined_in_order() -> None:
    template = TextTemplate("{title} | {genres} | {abstract}")
    text = template.render({"title": "Heat (1995)", "genres": "Action", "abstract": "A heist."})
    assert text == "Heat (1995) | Action | A heist."


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"title": "T", "genres": None, "abstract": "A"}, "T | A"),
        ({"title": None, "genres": "G", "abstract": "A"}, "G | A"),
        ({"title": "T", "genres": "G", "abstract": pd.NA}, "T | G"),
        ({"title": "T", "genres": float("nan"), "abstract": "  "}, "T"),
        ({"title": None, "genres": None, "abstract": "A"}, "A"),
        ({"genres": "G"}, "G"),  # absent keys count as missing
    ],
)
def test_missing_fields_leave_no_none_and_no_dangling_separator(
    values: dict[str, object], expected: str
) -> None:
    text = TextTemplate("{title} | {genres} | {abstract}").render(values)
    assert text == expected
    assert "None" not in text and "nan" not in text.lower() and "<NA>" not in text


def test_nothing_present_renders_none() -> None:
    assert TextTemplate("{title} | {genres}").render({"title": None, "genres": ""}) is None


def test_separator_before_the_later_field_is_used() -> None:
    template = TextTemplate("Movie: {title}. Genres: {genres}. Plot: {plot}.")
    assert template.render({"title": "T", "genres": None, "plot": "P"}) == "Movie: T. Plot: P."
    assert template.render({"title": None, "genres": "G", "plot": None}) == "Movie: G."


def test_tag_fields_become_comma_lists() -> None:
    template = TextTemplate("{title} | {genres}")
    kinds: dict[str, FieldKind] = {"title": "text", "genres": "tags"}
    text = template.render({"title": "Toy Story", "genres": "Animation|Children's|"}, kinds)
    assert text == "Toy Story | Animation, Children's"
    # Without the kind, the value is written as it is.
    assert template.render({"title": "X", "genres": "a|b"}) == "X | a|b"


def test_render_table_matches_render_and_checks_columns() -> None:
    table = pd.DataFrame(
        {
            "title": pd.array(["A", None, "C"], dtype="string"),
            "genres": pd.array(["x|y", "z", None], dtype="string"),
        }
    )
    template = TextTemplate("{title} | {genres}")
    assert template.render_table(table, {"genres": "tags"}) == ["A | x, y", "z", "C"]
    with pytest.raises(ClrecError, match="abstract"):
        TextTemplate("{title} | {abstract}").render_table(table)


@pytest.mark.parametrize("pattern", ["no fields", "{0}", "{}", "{title!r}", "{title:>10}", "{oops"])
def test_bad_patterns_raise(pattern: str) -> None:
    with pytest.raises(ClrecError):
        TextTemplate(pattern)


def _dataset(
    name: str, content: dict[str, list[str | None]], fields: dict[str, FieldKind]
) -> Dataset:
    n = len(next(iter(content.values())))
    interactions = pd.DataFrame({"user": ["u"] * n, "item": [str(i) for i in range(n)]})
    items = pd.DataFrame({"id": [str(i) for i in range(n)], **content})
    return Dataset.from_external(name, interactions, item_content=items, item_fields=fields)


def test_default_templates_of_known_data_sets() -> None:
    assert DEFAULT_TEMPLATES["ml-1m"] == "{title} | {genres} | {abstract}"
    assert TextTemplate(DEFAULT_TEMPLATES["ml-latest-small"]).fields == ["title", "genres", "tags"]
    assert TextTemplate(DEFAULT_TEMPLATES["amazon-scientific"]).fields == ["text"]
    assert TextTemplate(DEFAULT_TEMPLATES["lastfm"]).fields == ["name", "tags"]
    ml = _dataset(
        "ml-1m",
        {"title": ["T"], "genres": ["a|b"], "abstract": [None], "poster": ["p.jpg"]},
        {"title": "text", "genres": "tags", "abstract": "text", "poster": "image"},
    )
    assert default_template(ml).render_table(ml.items, ml.item_fields) == ["T | a, b"]


def test_unknown_data_set_uses_its_text_and_tag_fields() -> None:
    data = _dataset(
        "mine",
        {"name": ["N"], "kind": ["c"], "labels": ["x|y"], "pic": ["p.jpg"]},
        {"name": "text", "kind": "category", "labels": "tags", "pic": "image"},
    )
    assert default_template(data).pattern == "{name} | {labels}"
    bare = _dataset("bare", {"kind": ["c"]}, {"kind": "category"})
    with pytest.raises(ClrecError, match="no text"):
        default_template(bare)
