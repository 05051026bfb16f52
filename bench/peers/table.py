"""Score every model of one peer-benchmark run with clrec's evaluator and write its table.

    python bench/peers/table.py OUT_DIR [--append BENCHMARKS.md]

OUT_DIR is what ``bench/peers/run.sh`` filled: ``clrec-<model>/`` (``clrec train`` runs),
``recbole-<Model>/`` (``recbole_run.py``: top-K lists + RecBole's own test metrics),
``lightfm/`` (``lightfm_run.py``: the full score matrix), each with the ``measure.json`` of
its process, and ``meta.json`` (data set, split, time cap, command). The split is the one of
``clrec-clrec``; every peer was trained on its export, so every figure here comes from the
same train / valid / test and the same evaluator (full ranking, train + valid items masked;
on a cold-item split also the ranking over the cold test items only). RecBole's own
evaluator's figures are compared with clrec's on RecBole's own lists (``Δ own``: the largest
absolute difference over Recall / NDCG / MRR / Hit @10 and @20).
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from clrec.config import RunConfig
from clrec.data.schema import Dataset
from clrec.data.splits import Split
from clrec.evaluation.evaluator import Evaluator
from clrec.models.base import Recommender, Validator

METRICS = [f"{name}@{k}" for k in (10, 20) for name in ("recall", "ndcg", "mrr", "hit")]
COLD_METRICS = [f"{name}@{k}" for k in (10, 20) for name in ("recall", "ndcg", "hit")]


class SavedScores(Recommender):
    """A peer's ``(users, items)`` scores (internal ids) behind the Recommender contract."""

    name = "saved-scores"

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    @classmethod
    def from_topk(cls, users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> Self:
        """Ranked lists ``items`` ``(U', K)`` of ``users`` ``(U',)`` → scores K..1 on the
        listed items, -inf elsewhere (a user without a list ranks nothing)."""
        scores = np.full(shape, -np.inf, dtype=np.float32)  # (U, I)
        k = items.shape[1]
        scores[users[:, None], items] = np.arange(k, 0, -1, dtype=np.float32)[None, :]
        return cls(scores)

    def fit(self, train: Dataset, validator: Validator | None = None) -> Self:
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.array(self.scores[users], dtype=np.float32)

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError("saved scores are not a model")

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        raise NotImplementedError("saved scores are not a model")


@dataclass
class Row:
    """One model's line of the table."""

    library: str
    model: str
    metrics: dict[str, float]
    cold: dict[str, float] = field(default_factory=dict)
    own_delta: float | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    seconds_per_epoch: float | None = None
    seconds_per_eval: float | None = None
    seconds_to_best: float | None = None
    peak_rss_mb: float | None = None
    capped: bool = False


class Reference:
    """The benchmark's split, data set and evaluator (from the ``clrec-clrec`` run)."""

    def __init__(self, run: Path) -> None:
        config = RunConfig.from_yaml(run / "config.yaml", ["evaluation.progress=false"])
        self.dataset = Dataset.load(run / "dataset")
        self.split = Split.load(run / "split")
        self.evaluator = Evaluator(self.dataset, self.split.train, config.evaluation)
        self.user_index = {u: i for i, u in enumerate(self.dataset.users["id"].astype(str))}
        self.item_index = {u: i for i, u in enumerate(self.dataset.items["id"].astype(str))}

    def score(self, model: Recommender) -> tuple[dict[str, float], dict[str, float]]:
        """Full-ranking test metrics and (cold-item split) cold-candidate metrics."""
        seen = [self.split.train, self.split.valid]
        full = self.evaluator.evaluate(model, self.split.test, seen).metrics
        cold: dict[str, float] = {}
        if self.split.test_cold_items is not None:
            cold = self.evaluator.evaluate(
                model, self.split.test, seen, candidates=self.split.test_cold_items
            ).metrics
        return full, cold

    def shape(self) -> tuple[int, int]:
        return self.dataset.n_users, self.dataset.n_items


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def clrec_row(run: Path) -> Row:
    """A ``clrec train`` run's own test metrics and its timings from ``metrics.json``."""
    metrics = _json(run / "metrics.json")
    history = metrics.get("history") or []
    timing = metrics["timing"]
    cold = metrics["segments"]["test"].get("cold_items", {})
    row = Row(
        library="clrec",
        model=str(metrics["model"]),
        metrics={m: float(metrics["test"][m]) for m in METRICS},
        cold={m: float(cold[m]) for m in COLD_METRICS if m in cold},
        seconds_per_eval=float(timing["test_evaluate_seconds"]),
        peak_rss_mb=_json(run / "measure.json").get("peak_rss_mb"),
    )
    epochs = [h for h in history if "ndcg@10" in h]
    if epochs:
        best = max(range(len(epochs)), key=lambda i: epochs[i]["ndcg@10"])
        row.epochs = int(history[-1]["epoch"])
        row.best_epoch = int(epochs[best]["epoch"])
        row.seconds_per_epoch = float(np.mean([h["seconds"] for h in history]))
        row.seconds_to_best = float(
            sum(h["seconds"] + h.get("eval_seconds", 0.0) for h in epochs[: best + 1])
        )
        row.capped = bool(_json(run / "model" / "model.json").get("stopped_by_time"))
    else:  # a closed-form model (EASE): its one "epoch" is the fit
        row.epochs = row.best_epoch = 1
        row.seconds_per_epoch = row.seconds_to_best = float(timing["fit_seconds"])
    return row


def recbole_row(run: Path, reference: Reference) -> Row:
    """RecBole's lists scored by clrec's evaluator, beside RecBole's own figures."""
    result = _json(run / "result.json")
    lists = np.load(run / "topk.npz")
    users = np.array([reference.user_index[u] for u in lists["users"]], dtype=np.int64)
    items = np.vectorize(reference.item_index.__getitem__, otypes=[np.int64])(lists["items"])
    full, cold = reference.score(SavedScores.from_topk(users, items, reference.shape()))
    own = result["own_test"]
    return Row(
        library="RecBole",
        model=result["model"],
        metrics={m: full[m] for m in METRICS},
        cold={m: cold[m] for m in COLD_METRICS if m in cold},
        own_delta=max(abs(full[m] - own[m]) for m in METRICS),
        epochs=result["epochs"],
        best_epoch=result["best_epoch"],
        seconds_per_epoch=result["seconds_per_epoch"],
        seconds_per_eval=result["seconds_per_test_eval"],
        seconds_to_best=result["seconds_to_best"],
        peak_rss_mb=_json(run / "measure.json").get("peak_rss_mb"),
        capped=bool(result["capped"]),
    )


def lightfm_row(run: Path, reference: Reference) -> Row:
    """LightFM's full score matrix ranked by clrec's evaluator."""
    result = _json(run / "result.json")
    full, cold = reference.score(SavedScores(np.load(run / "scores.npy")))
    return Row(
        library="LightFM",
        model=result["model"],
        metrics={m: full[m] for m in METRICS},
        cold={m: cold[m] for m in COLD_METRICS if m in cold},
        epochs=result["epochs"],
        best_epoch=result["epochs"],
        seconds_per_epoch=result["seconds_per_epoch"],
        seconds_per_eval=result["seconds_to_score_all"],
        seconds_to_best=result["fit_seconds"],
        peak_rss_mb=_json(run / "measure.json").get("peak_rss_mb"),
        capped=bool(result["capped"]),
    )


def _short(metric: str) -> str:
    """``recall@10`` → ``R@10`` (and N, MRR, Hit) for narrow table heads."""
    name, k = metric.split("@")
    return {"recall": "R", "ndcg": "N", "mrr": "MRR", "hit": "Hit"}[name] + "@" + k


def _f(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[Row], meta: dict[str, Any], cold: bool) -> str:
    """The table, its ratios and its provenance, as Markdown."""
    # a cold-item split tests the ranking over the cold items: with every item ranked, warm
    # items (which all training favours) fill the lists and every model scores ~0
    shown = COLD_METRICS if cold else METRICS
    head = ["library", "model"]
    head += [("cold " if cold else "") + _short(m) for m in shown]
    head += ["Δ own", "epochs (best)", "s / epoch", "s / full eval", "s to best", "peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        epochs = "–" if row.epochs is None else f"{row.epochs} ({row.best_epoch})"
        if row.capped:
            epochs += " capped"
        cells = [row.library, row.model]
        values = row.cold if cold else row.metrics
        cells += [_f(values.get(m), 4) for m in shown]
        cells += [
            _f(row.own_delta, 4),
            epochs,
            _f(row.seconds_per_epoch, 2),
            _f(row.seconds_per_eval, 2),
            _f(row.seconds_to_best, 0),
            _f(row.peak_rss_mb, 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    key = "cold ndcg@20" if cold else "ndcg@10"
    family_ratios = ratios(rows)
    lines += ["", *(family_ratios if len(family_ratios) > 2 else []), "", winner(rows, key, cold)]
    title = f"### {meta['dataset']} — {meta['split']} split"
    provenance = (
        f"Machine: {meta['machine']}; {meta['threads']} torch / LightFM thread(s) per model; "
        f"{meta['versions']}; commit {meta['commit']}; time cap "
        f"{meta['time_cap']} min of training per model; {meta['date']}.  \n"
        f"Command: `{meta['command']}`"
    )
    return "\n".join([title, "", provenance, "", *lines, ""])


def ratios(rows: list[Row]) -> list[str]:
    """clrec / RecBole ratios for the model families both implement."""
    by = {(r.library, r.model.lower()): r for r in rows}
    out = ["| clrec / RecBole | s / epoch | s / full eval | peak RSS |", "|---|---|---|---|"]
    for family in ("bpr", "lightgcn", "ease"):
        ours, theirs = by.get(("clrec", family)), by.get(("RecBole", family))
        if ours is None or theirs is None:
            continue
        cells = [
            _ratio(ours.seconds_per_epoch, theirs.seconds_per_epoch),
            _ratio(ours.seconds_per_eval, theirs.seconds_per_eval),
            _ratio(ours.peak_rss_mb, theirs.peak_rss_mb),
        ]
        out.append(f"| {family} | " + " | ".join(cells) + " |")
    return out


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "–" if not ours or not theirs else f"{ours / theirs:.2f}×"


def winner(rows: list[Row], key: str, cold: bool) -> str:
    """Which model leads on the headline metric, and by how much over the best peer."""

    def value(row: Row) -> float:
        return row.cold.get("ndcg@20", float("nan")) if cold else row.metrics["ndcg@10"]

    ranked = sorted((r for r in rows if not np.isnan(value(r))), key=value, reverse=True)
    best_clrec = next((r for r in ranked if r.library == "clrec"), None)
    peers = [r for r in ranked if r.library != "clrec"]
    if best_clrec is None:  # a piecewise run: only peers measured so far
        if not peers:
            return f"Best on {key}: no model measured yet."
        top = peers[0]
        return f"Best on {key}: {top.library} {top.model} {value(top):.4f} (no clrec row)."
    if not peers:
        return f"Best on {key}: clrec {best_clrec.model} {value(best_clrec):.4f} (no peer ran)."
    best_peer = peers[0]
    gap = value(best_clrec) / value(best_peer) - 1 if value(best_peer) else float("inf")
    verdict = "ahead of" if gap > 0 else "behind"
    return (
        f"Best on {key}: clrec {best_clrec.model} {value(best_clrec):.4f}, {verdict} the best "
        f"peer ({best_peer.library} {best_peer.model} {value(best_peer):.4f}) by {gap:+.1%}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--append", type=Path, default=None)
    parser.add_argument(
        "--reference", type=Path, default=None, help="the clrec run whose split every model used"
    )
    args = parser.parse_args()
    meta = _json(args.out / "meta.json")
    meta.setdefault("machine", platform.processor() or platform.machine())
    reference = Reference(args.reference or args.out / "clrec-clrec")
    rows: list[Row] = []
    for run in sorted(args.out.iterdir()):
        if not run.is_dir() or not (run / "measure.json").is_file():
            continue
        if _json(run / "measure.json").get("status") != 0:
            print(f"skipped {run.name}: its process failed (see {run}/log.txt)")
            continue
        if run.name.startswith("clrec-"):
            rows.append(clrec_row(run))
        elif run.name.startswith("recbole-"):
            rows.append(recbole_row(run, reference))
        elif run.name == "lightfm":
            rows.append(lightfm_row(run, reference))
    cold = reference.split.test_cold_items is not None
    text = markdown(rows, meta, cold)
    print(text)
    if args.append is not None:
        with args.append.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
