"""Typed run configuration: YAML files and ``--set key=value`` overrides only fill it in.

A run config names the data (and its filters), the split, the model with its
hyper-parameters, and the evaluation protocol. Unknown keys and ill-typed values are refused
with one clear :class:`ClrecError` naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clrec.data.splits import SplitConfig
from clrec.errors import ClrecError, validation_error
from clrec.evaluation.evaluator import EvaluationConfig


class DataConfig(BaseModel):
    """Which data set and how to filter it before splitting."""

    model_config = ConfigDict(extra="forbid")

    name: str = "ml-latest-small"  # a known data set name, a saved dataset folder, or a file
    min_rating: float | None = None  # ratings >= this become implicit positives
    k_core: int = Field(default=0, ge=0)  # keep users and items with >= k interactions
    drop_unused: bool = True  # drop users / items left without interactions (as RecBole does)


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
            raise validation_error(err, source) from None

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
