"""Report plots: metric@K curves, per-segment bars and training curves as base64 PNG.

Drawn by matplotlib's Agg canvas through ``matplotlib.figure.Figure`` (passed in as
``figure_class``, so matplotlib is imported only by the caller that needs it), which leaves
pyplot's global state alone. Each function returns ``None`` when the run has nothing to plot.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clrec.evaluation.report_data import (
    AT_K,
    COUNT_KEYS,
    Segment,
    as_mapping,
    as_number,
    fmt,
    is_beyond_accuracy,
    metrics_at_k,
    ordered_names,
    segment_columns,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

VALID_COLOUR, TEST_COLOUR = "#e07b39", "#2b6cb0"


def _grid(
    figure_class: type[Figure], n: int, width: float, height: float, sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels in up to three columns, unused cells hidden."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    figure = figure_class(figsize=(width * cols, height * rows), layout="constrained")
    axes = list(figure.subplots(rows, cols, squeeze=False, sharey=sharey).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, axes[:n]


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _style(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def metric_curves(
    figure_class: type[Figure], run: Mapping[str, Any], beyond: bool, title: str
) -> str | None:
    """Metric vs K, valid dashed and test solid, one panel per metric name."""
    parts = {
        "valid": metrics_at_k(as_mapping(run.get("valid"))),
        "test": metrics_at_k(as_mapping(run.get("test"))),
    }
    names = {n for values in parts.values() for n in values if is_beyond_accuracy(n) == beyond}
    if not names:
        return None
    ordered = ordered_names(names)
    figure, axes = _grid(figure_class, len(ordered), 3.6, 2.7)
    for ax, name in zip(axes, ordered, strict=True):
        for part, colour, line in (("valid", VALID_COLOUR, "--"), ("test", TEST_COLOUR, "-")):
            series = parts[part].get(name)
            if series:
                ks = sorted(series)
                ax.plot(ks, [series[k] for k in ks], line, marker="o", color=colour, label=part)
                ax.set_xticks(ks)
        ax.set_title(name)
        ax.set_xlabel("K")
        _style(ax)
    axes[0].legend(frameon=False)
    figure.suptitle(title)
    return _png(figure)


def segment_bars(figure_class: type[Figure], segments: list[Segment]) -> str | None:
    """Grouped bars per segment family: buckets on x, one bar per metric at the smallest K."""
    groups: dict[str, list[Segment]] = {}
    for segment in segments:
        groups.setdefault(segment.group, []).append(segment)
    measures = [c for c in segment_columns(segments) if c not in COUNT_KEYS]
    ks = [int(m["k"]) for m in map(AT_K.match, measures) if m]
    # every K would multiply the bars; the segments table holds them all
    at_smallest = [c for c in measures if ks and c.endswith(f"@{min(ks)}")]
    metric_keys = (at_smallest or measures)[:6]
    if not metric_keys:
        return None
    # one y scale for every panel, so families compare at a glance
    figure, axes = _grid(figure_class, len(groups), 4.2, 3.0, sharey=True)
    width = 0.8 / len(metric_keys)
    colours = [f"C{i}" for i in range(len(metric_keys))]
    for ax, (group, members) in zip(axes, groups.items(), strict=True):
        for j, key in enumerate(metric_keys):
            xs = [i + (j - (len(metric_keys) - 1) / 2) * width for i in range(len(members))]
            heights = [as_number(m.values.get(key)) or 0.0 for m in members]
            ax.bar(xs, heights, width * 0.95, color=colours[j], label=key)
        labels = []
        for m in members:
            users = as_number(m.values.get("users"))
            labels.append(f"{m.bucket}\n({fmt(users)} users)" if users is not None else m.bucket)
        ax.set_xticks(range(len(members)), labels, fontsize=8)
        ax.set_title(group, fontsize=10)
        _style(ax)
        ax.grid(False, axis="x")
    figure.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=len(metric_keys),
        frameon=False,
    )
    figure.suptitle("Metrics per segment")
    return _png(figure)


def training_curve(figure_class: type[Figure], history: list[Mapping[str, Any]]) -> str | None:
    """Loss, validation metrics and other per-epoch numbers against the epoch."""
    from matplotlib.ticker import MaxNLocator

    keys: list[str] = []
    for row in history:
        keys += [str(k) for k, v in row.items() if k != "epoch" and as_number(v) is not None]
    keys = list(dict.fromkeys(keys))
    panels = {
        "loss": [k for k in keys if "loss" in k],
        "validation metrics": [k for k in keys if "loss" not in k and "@" in k],
    }
    panels.update({k: [k] for k in keys if "loss" not in k and "@" not in k})
    panels = {title: members for title, members in panels.items() if members}
    if not panels:
        return None
    epochs = [as_number(row.get("epoch")) or float(i + 1) for i, row in enumerate(history)]
    figure, axes = _grid(figure_class, len(panels), 3.8, 2.7)
    for ax, (title, members) in zip(axes, panels.items(), strict=True):
        for key in members:
            points = [(e, as_number(r.get(key))) for e, r in zip(epochs, history, strict=True)]
            xs = [e for e, v in points if v is not None]
            ax.plot(xs, [v for _, v in points if v is not None], marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(members) > 1:
            ax.legend(frameon=False, fontsize=8)
        _style(ax)
    figure.suptitle("Training")
    return _png(figure)
