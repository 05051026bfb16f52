"""Models by name: the explicit table the CLI and run configs use (no import magic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clrec.errors import ClrecError
from clrec.loading import load_attr
from clrec.models.base import Recommender

# name -> "module:Class"; imported only when used, so light commands stay fast
MODELS: dict[str, str] = {
    "popularity": "clrec.models.popularity:Popularity",
    "itemknn": "clrec.models.itemknn:ItemKNN",
    "ease": "clrec.models.ease:EASE",
    "bpr": "clrec.models.mf:BPRMF",
    "lightgcn": "clrec.models.lightgcn:LightGCN",
    "clrec": "clrec.models.clrec:ClrecRecommender",
}


def model_class(name: str) -> type[Recommender]:
    """The Recommender class registered under ``name``."""
    if name not in MODELS:
        raise ClrecError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    cls: type[Recommender] = load_attr(MODELS[name])
    return cls


def build_model(name: str, params: dict[str, Any]) -> Recommender:
    """A model from its name and named hyper-parameters; unknown parameters are refused."""
    cls = model_class(name)
    try:
        return cls.from_config(dict(params))
    except TypeError as err:
        raise ClrecError(f"model {name!r}: bad parameters {sorted(params)} ({err})") from None


def load_model(directory: str | Path) -> Recommender:
    """Load a saved model, finding its class from the ``model.json`` it wrote."""
    root = Path(directory)
    meta_path = root / "model.json"
    if not meta_path.is_file():
        raise ClrecError(f"{root}: not a saved model (no model.json)")
    name = json.loads(meta_path.read_text()).get("model", "")
    return model_class(str(name)).load(root)
