"""The texts a cross-encoder ranker reads: one per item, and one context per user.

* :func:`item_texts` — each catalogue item rendered with the data set's default text template
  (e.g. ``"Heat (1995) | Action, Crime, Thriller"``), the same text the retrieval encoders see.
* :func:`user_contexts` — a short description of a user built from the interactions the ranker
  may see (the training split): the titles of their most recent items, newest first, then
  their own profile text when the data set has one::

      Recently seen: Heat (1995); Alien (1979). Profile: jazz fan, night owl.

The ranker pairs a user context with a candidate's item text and predicts a click. Personal
data in profile text is not masked here: mask it where text reaches a model or a log.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset
from clrec.encoders.text import TextTemplate, default_template
from clrec.errors import ClrecError

TITLE_FALLBACK_CHARS = 80  # an item without a title is named by this much of its text
HISTORY_SEPARATOR = "; "
PROFILE_FIELD_KINDS = ("text", "tags")  # user fields that read as prose to a language model


@dataclass(frozen=True)
class UserContextConfig:
    """How a user's context text is written.

    ``recent_items``: how many of the newest history items are named (0: none, profile only).
    ``template`` wraps the ``"; "``-joined titles (``{items}``); ``profile_template`` wraps the
    user's own text fields (``{profile}``), appended when ``include_profile`` is set and the
    data set has user text. A user with neither gets ``empty_text``. ``max_chars`` cuts the
    result hard; the tokenizer truncates further to its own token limit.
    """

    recent_items: int = 10
    template: str = "Recently seen: {items}."
    include_profile: bool = True
    profile_template: str = "Profile: {profile}."
    empty_text: str = "No history."
    max_chars: int = 1000

    def __post_init__(self) -> None:
        if not _is_int(self.recent_items) or self.recent_items < 0:
            raise ClrecError(f"recent_items must be an integer ≥ 0, got {self.recent_items!r}")
        if not _is_int(self.max_chars) or self.max_chars < 1:
            raise ClrecError(f"max_chars must be an integer ≥ 1, got {self.max_chars!r}")
        if not isinstance(self.include_profile, bool):
            raise ClrecError(f"include_profile must be true or false, got {self.include_profile!r}")
        _check_template("template", self.template, "items")
        _check_template("profile_template", self.profile_template, "profile")
        if not isinstance(self.empty_text, str) or not self.empty_text.strip():
            raise ClrecError("empty_text must be a non-blank string")


def item_texts(dataset: Dataset) -> list[str]:
    """One text per internal item id, from :func:`default_template`; ``""`` with no content."""
    rendered = default_template(dataset).render_table(dataset.items, dataset.item_fields)
    return [text or "" for text in rendered]


def user_contexts(
    dataset: Dataset,
    history: pd.DataFrame,
    users: np.ndarray,
    config: UserContextConfig | None = None,
) -> list[str]:
    """The context text of each internal user in ``users`` (same order), from ``history``.

    ``history`` holds the interactions the ranker may see (normally ``split.train``): ``user``
    and ``item`` columns, and ``timestamp`` to order them; without it, later rows count as more
    recent. A repeated item is named once, at its newest position; items without a title or
    text are skipped.
    """
    config = config or UserContextConfig()
    user_ids = _checked_ids(users, dataset.n_users, "users")  # (U,)
    recent = _recent_titles(dataset, history, user_ids, config.recent_items)
    profiles = _profile_texts(dataset, user_ids) if config.include_profile else [""] * len(user_ids)
    contexts: list[str] = []
    for user, profile in zip(user_ids.tolist(), profiles, strict=True):
        parts: list[str] = []
        titles = recent.get(user, [])
        if titles:
            parts.append(config.template.format(items=HISTORY_SEPARATOR.join(titles)))
        if profile:
            parts.append(config.profile_template.format(profile=profile))
        text = " ".join(parts) if parts else config.empty_text
        contexts.append(text[: config.max_chars])
    return contexts


# --------------------------------------------------------------------------- helpers


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_template(name: str, template: object, placeholder: str) -> None:
    """``template`` must be a format string whose only field is ``{placeholder}``."""
    if not isinstance(template, str):
        raise ClrecError(f"{name} must be a string, got {template!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ClrecError(f"{name} {template!r}: {err}") from None
    if fields != [placeholder]:
        raise ClrecError(
            f"{name} {template!r} must name {{{placeholder}}} exactly once and no other field"
        )


def _checked_ids(values: np.ndarray, bound: int, name: str) -> np.ndarray:
    """``values`` as 1-d int64 ids, after checking each lies in ``[0, bound)``."""
    array = np.asarray(values)
    if array.ndim != 1 or (len(array) and not np.issubdtype(array.dtype, np.integer)):
        raise ClrecError(
            f"{name} must be a 1-d array of integer ids, got {array.dtype} {array.shape}"
        )
    array = array.astype(np.int64, copy=False)
    if len(array) and (array.min() < 0 or array.max() >= bound):
        raise ClrecError(f"{name} has ids outside [0, {bound})")
    return array


def _is_blank(value: object) -> bool:
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list-like value is present
        return False


def _item_titles(dataset: Dataset, items: np.ndarray) -> list[str]:
    """The name of each item in ``items``: its ``title`` field, else the start of its text."""
    titles: list[str] = [""] * len(items)
    if "title" in dataset.items.columns:
        raw = dataset.items["title"].to_numpy()[items]
        titles = ["" if _is_blank(t) else str(t).strip() for t in raw]
    untitled = [row for row, title in enumerate(titles) if not title]
    if untitled:
        rows = dataset.items.iloc[items[untitled]]
        texts = default_template(dataset).render_table(rows, dataset.item_fields)
        for row, text in zip(untitled, texts, strict=True):
            titles[row] = (text or "")[:TITLE_FALLBACK_CHARS].strip()
    return titles


def _recent_titles(
    dataset: Dataset, history: pd.DataFrame, users: np.ndarray, limit: int
) -> dict[int, list[str]]:
    """User → titles of their ``limit`` newest distinct titled items in ``history``."""
    missing = [c for c in ("user", "item") if c not in history.columns]
    if missing:
        raise ClrecError(f"history has no {', '.join(map(repr, missing))} column")
    if limit == 0 or not len(users):
        return {}
    rows = history["user"].isin(users).to_numpy()
    frame_users = _checked_ids(history["user"].to_numpy()[rows], dataset.n_users, "history users")
    frame_items = _checked_ids(history["item"].to_numpy()[rows], dataset.n_items, "history items")
    position = np.arange(len(frame_users))  # later row = more recent when times tie or are absent
    if "timestamp" in history.columns:
        times = history["timestamp"].to_numpy()[rows]
        if pd.isna(times).any():
            raise ClrecError("history has missing timestamps; fill or drop them first")
        times = times.astype(np.int64)
    else:
        times = np.zeros(len(frame_users), dtype=np.int64)
    # Per user (primary key), newest first, then later rows first.
    order = np.lexsort((-position, -times, frame_users))
    recent = pd.DataFrame({"user": frame_users[order], "item": frame_items[order]})
    recent = recent.drop_duplicates(["user", "item"], keep="first")
    named = np.unique(recent["item"].to_numpy())
    title_of = dict(zip(named.tolist(), _item_titles(dataset, named), strict=True))
    recent["title"] = recent["item"].map(title_of)
    recent = recent[recent["title"] != ""]
    recent = recent.groupby("user", sort=False).head(limit)
    grouped = recent.groupby("user", sort=False)["title"].agg(list)
    return {int(user): list(titles) for user, titles in grouped.items()}


def _profile_texts(dataset: Dataset, users: np.ndarray) -> list[str]:
    """Each user's own text fields joined with ``" | "``; ``""`` when they have none."""
    fields = [
        name
        for name, kind in dataset.user_fields.items()
        if kind in PROFILE_FIELD_KINDS and name in dataset.users.columns
    ]
    if not fields:
        return [""] * len(users)
    template = TextTemplate(" | ".join(f"{{{name}}}" for name in fields))
    rendered = template.render_table(dataset.users.iloc[users], dataset.user_fields)
    return [text or "" for text in rendered]
