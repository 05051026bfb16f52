"""Typed run configuration: YAML files and ``--set key=value`` overrides only fill it in.

A run config names the data (and its filters), the split, the model with its
hyper-parameters, and the evaluation protocol. Unknown keys and ill-typed values are refused
with one clear :class:`ClrecError` naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clrec.data.schema import FieldKind, UnknownPolicy
from clrec.data.splits import SplitConfig
from clrec.data.validation import DuplicatePolicy, TimeUnit
from clrec.errors import ClrecError, validation_error
from clrec.evaluation.evaluator import EvaluationConfig


class TableConfig(BaseModel):
    """A content table of one's own (``data.items`` / ``data.users``): its file, its id
    column (None: the usual names, ``item_id``, ``movieId``, …) and which columns to read as
    what (``text``, ``category``, ``tags``, ``image``, ``number``; None: every other column,
    its kind guessed)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    id: str | None = None
    fields: dict[str, FieldKind] | None = None
    sep: str | None = None


class DataConfig(BaseModel):
    """Which data set and how to filter it before splitting.

    ``name``: a known data set, a saved dataset folder, or a file. Your own files instead:
    ``path`` (the interaction log: CSV / TSV / Parquet / JSON lines, optionally compressed)
    with ``columns`` (role → column for ``user``, ``item``, ``rating``, ``timestamp``,
    ``label``, ``event``, ``weight``; the rest are inferred by name), ``items`` / ``users``
    (content tables), ``sep``, ``encoding``, ``time_unit`` (of numeric timestamps),
    ``duplicates`` (repeated user–item pairs: ``reject`` / ``keep_last`` / ``aggregate``) and
    ``unknown_content`` (content rows of ids without interactions: ``keep`` them as
    catalogue items nobody has interacted with yet, the default; ``drop``; ``error``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "ml-latest-small"
    path: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    items: TableConfig | None = None
    users: TableConfig | None = None
    sep: str | None = None
    encoding: str = "utf-8"
    time_unit: TimeUnit = "auto"
    duplicates: DuplicatePolicy = "reject"
    unknown_content: UnknownPolicy = "keep"
    min_rating: float | None = None  # ratings >= this become implicit positives
    k_core: int = Field(default=0, ge=0)  # keep users and items with >= k interactions
    drop_unused: bool = True  # drop users / items left without interactions (as RecBole does)

    @model_validator(mode="after")
    def _own_files(self) -> DataConfig:
        own = self.columns or self.items or self.users
        if own and self.path is None:
            raise ValueError("data.columns, data.items and data.users need data.path")
        return self


class ModelConfig(BaseModel):
    """The model's registry name and its named hyper-parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = "ease"
    params: dict[str, Any] = Field(default_factory=dict)


class RunConfig(BaseModel):
    """Everything one ``clrec train`` run needs."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: bool = True  # write summary.md and report.html

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        """Validate a plain mapping, turning validation errors into one ClrecError."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            raise validation_error(err, source, allowed=_allowed_keys) from None

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> RunConfig:
        """Read a YAML file, apply ``key.path=value`` overrides (values parsed as YAML)."""
        file = Path(path)
        values = read_yaml_mapping(file, "config file")
        for override in overrides or []:
            apply_override(values, override)
        return cls.from_mapping(values, source=str(file))

    def to_plain(self) -> dict[str, Any]:
        """JSON / YAML-ready form that :meth:`from_mapping` reads back."""
        plain: dict[str, Any] = self.model_dump(mode="json")
        return plain


def read_yaml_mapping(file: Path, what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file; clear errors for a missing file or bad YAML."""
    if not file.is_file():
        raise ClrecError(f"{what} not found: {file}")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ClrecError(f"{file}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise ClrecError(f"{file}: expected a mapping at the top level")
    return values


def apply_override(values: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in a nested mapping; the value is parsed as YAML (``3``, ``[1,2]``)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ClrecError(f"--set {override!r}: expected key.path=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    set_path(values, key.strip(), value, f"--set {override!r}")


def set_path(values: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set the dotted ``key`` (``a.b.c``) in a nested mapping, creating sections on the way;
    ``source`` names the setting in the error for a key that runs through a non-section."""
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ClrecError(f"{source}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys the config section holding ``loc``'s last key allows (None: not a section
    of the run config, e.g. inside model.params)."""
    section: Any = RunConfig
    for part in loc[:-1]:
        fields = getattr(section, "model_fields", None)
        if fields is None or part not in fields:
            return None
        annotation = fields[part].annotation
        options = [annotation, *getattr(annotation, "__args__", ())]
        section = next(
            (o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None
        )
        if section is None:
            return None
    fields = getattr(section, "model_fields", None)
    return sorted(fields) if fields else None
