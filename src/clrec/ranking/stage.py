"""The ranking stage packaged for serving: a trained ranker plus the texts it reads.

:func:`write_stage` puts into a folder (inside a serving artifact) everything the service
needs to re-rank without the run: the ranker's weights (the base encoder is referenced by
identity, as the artifact's text encoders are), each known user's context text and each
catalogue item's text as they were built for training (so serving reads what the ranker was
trained on), the item text template for items added later through the API, and the depth.
:class:`RerankStage` loads it and scores one user's candidates.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from clrec.data.schema import Dataset, FieldKind
from clrec.encoders.text import TextTemplate, default_template
from clrec.errors import ClrecError
from clrec.ranking.cross_encoder import CrossEncoderRanker
from clrec.ranking.pipeline import RANKER_DIR, REPORT_FILE, SETTINGS_FILE, RankerSettings
from clrec.ranking.texts import item_texts, user_contexts

Precision = Literal["float32", "int8"]
STAGE_FILE = "stage.json"
CONTEXTS_FILE = "contexts.parquet"
ITEM_TEXTS_FILE = "items.parquet"
MODEL_DIR = "model"


def write_stage(ranker_dir: str | Path, dataset: Dataset, out: str | Path) -> dict[str, Any]:
    """Write the serving form of the ranker in ``ranker_dir`` (a ``clrec rank train`` folder)
    for ``dataset`` (the run's, all interactions) into ``out``; returns its summary."""
    root = Path(ranker_dir)
    if not (root / SETTINGS_FILE).is_file() or not (root / RANKER_DIR).is_dir():
        raise ClrecError(f"{root}: not a ranker folder (no {SETTINGS_FILE}); see clrec rank train")
    saved = json.loads((root / SETTINGS_FILE).read_text())
    settings = RankerSettings.from_plain(saved["settings"])
    report = json.loads((root / REPORT_FILE).read_text()) if (root / REPORT_FILE).is_file() else {}
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / RANKER_DIR, target / MODEL_DIR)
    users = np.arange(dataset.n_users, dtype=np.int64)
    contexts = user_contexts(dataset, dataset.interactions, users, settings.context)
    pd.DataFrame({"id": dataset.users["id"].astype(str), "context": contexts}).to_parquet(
        target / CONTEXTS_FILE, index=False
    )
    pd.DataFrame({"id": dataset.items["id"].astype(str), "text": item_texts(dataset)}).to_parquet(
        target / ITEM_TEXTS_FILE, index=False
    )
    summary = {
        "depth": settings.rerank_depth,
        "mode": settings.model.mode,
        "template": default_template(dataset).pattern,  # for items added through the API
        "item_fields": dict(dataset.item_fields),
        "context": settings.context.template,
        "empty_context": settings.context.empty_text,
        "recent_items": settings.context.recent_items,
        "test": report.get("test_pairs", {}).get("auc"),
        "end_to_end": report.get("end_to_end", {}),
    }
    (target / STAGE_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


@dataclass
class RerankStage:
    """A loaded ranking stage: scores (user context, item text) pairs."""

    ranker: CrossEncoderRanker
    depth: int
    contexts: dict[str, str]  # known user id -> context text
    item_texts: dict[str, str]  # catalogue item id -> text
    template: TextTemplate
    item_fields: dict[str, FieldKind]
    context_template: str
    empty_context: str
    recent_items: int

    @classmethod
    def load(cls, folder: str | Path, precision: Precision = "int8") -> RerankStage:
        """Load :func:`write_stage`'s folder; ``int8`` quantises the ranker for CPU latency."""
        root = Path(folder)
        try:
            summary = json.loads((root / STAGE_FILE).read_text())
            contexts = pd.read_parquet(root / CONTEXTS_FILE)
            texts = pd.read_parquet(root / ITEM_TEXTS_FILE)
        except (OSError, ValueError) as error:
            raise ClrecError(f"{root}: unreadable ranking stage: {error}") from error
        ranker = CrossEncoderRanker.load(root / MODEL_DIR)
        if precision == "int8":
            ranker = ranker.quantized()
        return cls(
            ranker=ranker,
            depth=int(summary["depth"]),
            contexts=dict(zip(contexts["id"], contexts["context"], strict=True)),
            item_texts=dict(zip(texts["id"], texts["text"], strict=True)),
            template=TextTemplate(summary["template"]),
            item_fields=cast(dict[str, FieldKind], dict(summary["item_fields"])),
            context_template=str(summary["context"]),
            empty_context=str(summary["empty_context"]),
            recent_items=int(summary["recent_items"]),
        )

    def item_text(self, item_id: str, content: Mapping[str, str | None] | None = None) -> str:
        """An item's text: its fields rendered by the catalogue's template when given (an item
        added or changed through the API), else the stored catalogue text."""
        if content is not None:
            return self.template.render(dict(content), self.item_fields) or ""
        return self.item_texts.get(item_id, "")

    def context(self, user_id: str, titles: Sequence[str]) -> str:
        """The user's context: the stored one for a user the run knew, else composed like it
        from ``titles`` (the user's items, most recent first)."""
        stored = self.contexts.get(user_id)
        if stored is not None:
            return stored
        chosen = [t for t in titles if t][: self.recent_items]
        if not chosen:
            return self.empty_context
        return self.context_template.format(items="; ".join(chosen))

    def scores(self, context: str, texts: Sequence[str]) -> np.ndarray:
        """Click probabilities ``(C,)`` of ``texts`` for one user's ``context``."""
        if not texts:
            return np.empty(0, dtype=np.float32)
        return self.ranker.predict([context] * len(texts), list(texts), progress=False)


__all__ = ["Precision", "RerankStage", "write_stage"]
