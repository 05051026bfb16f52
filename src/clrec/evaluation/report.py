"""Run report: a short Markdown summary and a self-contained HTML page with plots.

The input is the results dict a run writes (``metrics.json``): model, dataset summary, split,
``valid`` / ``test`` metrics keyed ``name@K``, per-segment metrics, training history, timing
and config. Any key may be missing or empty; sections without data are left out.

The HTML page opens offline: no scripts, no external styles or fonts, and plots drawn by
matplotlib's Agg canvas (through ``matplotlib.figure.Figure``, which leaves pyplot's global
state alone) and embedded as base64 PNG. matplotlib is the optional ``report`` extra.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clrec import __version__

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Accuracy metrics first, in the order readers look for them; other names follow sorted.
ACCURACY_ORDER = ("recall", "ndcg", "hit", "mrr", "precision", "map")
# Beyond-accuracy names (ours and RecBole's spellings): plotted as popularity bias, not curves.
BEYOND_ACCURACY = (
    "coverage",
    "itemcoverage",
    "average_popularity",
    "averagepopularity",
    "gini",
    "giniindex",
    "tail_share",
    "tailpercentage",
    "shannonentropy",
    "entropy",
    "novelty",
)
# Keys of a segment bucket that count things rather than measure quality.
COUNT_KEYS = ("users", "items", "interactions", "n")
MISSING = "–"
VALID_COLOUR, TEST_COLOUR = "#e07b39", "#2b6cb0"
_AT_K = re.compile(r"^(?P<name>.+)@(?P<k>\d+)$")


# --- reading the run dict tolerantly ------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    return float(value)


def _metrics_at_k(metrics: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """``{"recall@10": 0.1}`` → ``{"recall": {10: 0.1}}``; keys without ``@K`` dropped."""
    out: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        match = _AT_K.match(str(key))
        number = _number(value)
        if match and number is not None:
            out.setdefault(match["name"], {})[int(match["k"])] = number
    return out


def _is_beyond(name: str) -> bool:
    return name.lower() in BEYOND_ACCURACY


def _ordered_names(names: set[str]) -> list[str]:
    """Accuracy names in reading order, then the rest sorted, beyond-accuracy last."""
    known = [n for n in ACCURACY_ORDER if n in names]
    beyond = [n for n in BEYOND_ACCURACY if n in names]
    rest = sorted(n for n in names if n not in known and n not in beyond)
    return known + rest + beyond


def _ordered_metric_keys(keys: set[str]) -> list[str]:
    """``name@K`` keys ordered by name (as above) then K; other keys after, sorted."""
    parsed = {k: _AT_K.match(k) for k in keys}
    names = {m["name"] for m in parsed.values() if m}
    ordered: list[str] = []
    for name in _ordered_names(names):
        ks = sorted(int(m["k"]) for m in parsed.values() if m and m["name"] == name)
        ordered += [f"{name}@{k}" for k in ks]
    return ordered + sorted(k for k, m in parsed.items() if not m)


@dataclass(frozen=True)
class _Segment:
    """One bucket's metrics: ``group`` names the split and family, ``bucket`` the bucket."""

    group: str
    bucket: str
    values: Mapping[str, Any]


def _is_leaf(node: Mapping[str, Any]) -> bool:
    return any(_number(v) is not None for v in node.values())


def _segments(tree: Any, path: tuple[str, ...] = ()) -> list[_Segment]:
    """Flatten nested segments to buckets, whatever the depth and names.

    A mapping holding numbers is a bucket; its parent path is its group (``segments`` at the
    top). A bucket whose siblings are whole families (``test.cold_users`` beside
    ``test.item_popularity``) is a family of its own with the single bucket ``all``.
    """
    node = _mapping(tree)
    children = {str(k): _mapping(v) for k, v in node.items() if _mapping(v)}
    mixed = any(not _is_leaf(c) for c in children.values())
    found: list[_Segment] = []
    for key, child in children.items():
        if _is_leaf(child):
            if mixed:
                found.append(_Segment(" / ".join((*path, key)), "all", child))
            else:
                found.append(_Segment(" / ".join(path) or "segments", key, child))
        else:
            found += _segments(child, (*path, key))
    return found


def _history(run: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    history = run.get("history")
    if not isinstance(history, Sequence) or isinstance(history, str):
        return []
    return [_mapping(row) for row in history if _mapping(row)]


def _split_config(split: Mapping[str, Any]) -> dict[str, Any]:
    """Split settings: ``split["config"]``, or the split summary's own top-level settings."""
    config = dict(_mapping(split.get("config")))
    for key, value in split.items():
        if key not in ("config", "sizes", "guarantees") and key not in config:
            config[key] = value
    return config


# --- formatting ---------------------------------------------------------------------------


def _fmt(value: Any, plain: bool = False) -> str:
    """Readable text for a number, string, list or mapping.

    Counts get thousands separators and fractions four decimals; ``plain`` (settings such
    as seeds and ratios) prints numbers as written.
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    number = _number(value)
    if number is not None:
        if math.isnan(number) or math.isinf(number):
            return str(number)
        if plain:
            return str(int(number)) if number.is_integer() else f"{number:g}"
        if number.is_integer() and abs(number) < 1e15:
            return f"{int(number):,}"
        if abs(number) >= 100:
            return f"{number:,.1f}"
        if abs(number) >= 1:
            return f"{number:.3f}"
        if abs(number) >= 1e-3:
            return f"{number:.4f}"
        return f"{number:.3g}"
    if isinstance(value, Mapping | list | tuple) and not value:
        return MISSING
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {_fmt(v, plain)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, plain) for v in value)
    return str(value)


def _fmt_metric(key: str, value: Any) -> str:
    """A metric cell: counts as counts, measures with four decimals (0 as 0.0000)."""
    number = _number(value)
    if key in COUNT_KEYS or number is None or math.isnan(number) or abs(number) >= 100:
        return _fmt(value)
    return f"{number:.4f}"


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys, so it fits a two-column table."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _sizes_line(sizes: Mapping[str, Any]) -> str:
    parts = []
    for part, counts in sizes.items():
        counts = _mapping(counts)
        text = " · ".join(f"{_fmt(v)} {k}" for k, v in counts.items())
        parts.append(f"{part} {text}" if text else str(part))
    return "; ".join(parts)


def _dataset_line(dataset: Mapping[str, Any]) -> str:
    name = dataset.get("name", "dataset")
    counts = [f"{_fmt(dataset[k])} {k}" for k in ("users", "items", "interactions") if k in dataset]
    if "density" in dataset:
        counts.append(f"density {_fmt(dataset['density'])}")
    return f"{name} — {', '.join(counts)}" if counts else str(name)


def _title(run: Mapping[str, Any]) -> str:
    model = run.get("model") or "model"
    dataset = _mapping(run.get("dataset")).get("name")
    return f"{model} on {dataset}" if dataset else str(model)


def _metric_rows(run: Mapping[str, Any]) -> list[list[str]]:
    valid, test = _mapping(run.get("valid")), _mapping(run.get("test"))
    keys = {str(k) for part in (valid, test) for k, v in part.items() if _number(v) is not None}
    return [
        [key, _fmt_metric(key, valid.get(key)), _fmt_metric(key, test.get(key))]
        for key in _ordered_metric_keys(keys)
    ]


def _segment_columns(segments: list[_Segment]) -> list[str]:
    keys = {str(k) for s in segments for k, v in s.values.items() if _number(v) is not None}
    counts = [k for k in COUNT_KEYS if k in keys]
    return counts + _ordered_metric_keys(keys - set(counts))


def _segment_rows(segments: list[_Segment], columns: list[str]) -> list[list[str]]:
    return [
        [s.group, s.bucket, *(_fmt_metric(c, s.values.get(c)) for c in columns)] for s in segments
    ]


def _timing_line(timing: Mapping[str, Any]) -> str:
    parts = []
    for key, value in timing.items():
        label = str(key).removesuffix("_seconds").replace("_", " ")
        number = _number(value)
        parts.append(f"{label} {number:.2f} s" if number is not None else f"{label} {_fmt(value)}")
    return ", ".join(parts)


# --- Markdown -----------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_summary(run: Mapping[str, Any]) -> str:
    """The Markdown summary: dataset, split, protocol, metrics, segments, training, timing."""
    dataset, split = _mapping(run.get("dataset")), _mapping(run.get("split"))
    lines = [f"# clrec run: {_title(run)}", ""]
    if dataset:
        lines.append(f"- **Dataset**: {_dataset_line(dataset)}")
    if split:
        settings = ", ".join(
            f"{k}=[{_fmt(v, plain=True)}]"
            if isinstance(v, list | tuple)
            else f"{k}={_fmt(v, plain=True)}"
            for k, v in _split_config(split).items()
            if isinstance(v, str | int | float | list | tuple)
        )
        sizes = _sizes_line(_mapping(split.get("sizes")))
        lines.append(f"- **Split**: {'; '.join(t for t in (settings, sizes) if t)}")
    if run.get("protocol"):
        lines.append(f"- **Protocol**: {run['protocol']}")
    timing = _mapping(run.get("timing"))
    if timing:
        lines.append(f"- **Timing**: {_timing_line(timing)}")
    rows = _metric_rows(run)
    if rows:
        lines += ["", "## Metrics", "", _md_table(["metric", "valid", "test"], rows)]
    segments = _segments(run.get("segments"))
    if segments:
        columns = _segment_columns(segments)
        table = _md_table(["segment", "bucket", *columns], _segment_rows(segments, columns))
        lines += ["", "## Segments", "", table]
    history = _history(run)
    if history:
        last = ", ".join(f"{k} {_fmt(v)}" for k, v in history[-1].items() if k != "epoch")
        lines += ["", "## Training", "", f"{len(history)} epochs; last: {last}"]
    return "\n".join(lines) + "\n"


# --- plots --------------------------------------------------------------------------------


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


def _curves(
    figure_class: type[Figure], run: Mapping[str, Any], beyond: bool, title: str
) -> str | None:
    """Metric vs K, valid dashed and test solid, one panel per metric name."""
    parts = {
        "valid": _metrics_at_k(_mapping(run.get("valid"))),
        "test": _metrics_at_k(_mapping(run.get("test"))),
    }
    names = {n for values in parts.values() for n in values if _is_beyond(n) == beyond}
    if not names:
        return None
    ordered = _ordered_names(names)
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


def _segment_bars(figure_class: type[Figure], segments: list[_Segment]) -> str | None:
    """Grouped bars per segment family: buckets on x, one bar per metric at the smallest K."""
    groups: dict[str, list[_Segment]] = {}
    for segment in segments:
        groups.setdefault(segment.group, []).append(segment)
    measures = [c for c in _segment_columns(segments) if c not in COUNT_KEYS]
    ks = [int(m["k"]) for m in map(_AT_K.match, measures) if m]
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
            heights = [_number(m.values.get(key)) or 0.0 for m in members]
            ax.bar(xs, heights, width * 0.95, color=colours[j], label=key)
        labels = []
        for m in members:
            users = _number(m.values.get("users"))
            labels.append(f"{m.bucket}\n({_fmt(users)} users)" if users is not None else m.bucket)
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


def _training_curve(figure_class: type[Figure], history: list[Mapping[str, Any]]) -> str | None:
    """Loss, validation metrics and other per-epoch numbers against the epoch."""
    from matplotlib.ticker import MaxNLocator

    keys: list[str] = []
    for row in history:
        keys += [str(k) for k, v in row.items() if k != "epoch" and _number(v) is not None]
    keys = list(dict.fromkeys(keys))
    panels = {
        "loss": [k for k in keys if "loss" in k],
        "validation metrics": [k for k in keys if "loss" not in k and "@" in k],
    }
    panels.update({k: [k] for k in keys if "loss" not in k and "@" not in k})
    panels = {title: members for title, members in panels.items() if members}
    if not panels:
        return None
    epochs = [_number(row.get("epoch")) or float(i + 1) for i, row in enumerate(history)]
    figure, axes = _grid(figure_class, len(panels), 3.8, 2.7)
    for ax, (title, members) in zip(axes, panels.items(), strict=True):
        for key in members:
            points = [(e, _number(r.get(key))) for e, r in zip(epochs, history, strict=True)]
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


# --- HTML ---------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c;
       background: #f7f8fa; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid #dfe3e8; padding-bottom: 4px; }
.sub { color: #4a5568; margin: 0 0 4px; }
section { background: #fff; border: 1px solid #e2e6ea; border-radius: 8px; padding: 4px 20px 16px;
          margin-top: 18px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #edf0f3; text-align: right; }
th { background: #f1f4f7; font-weight: 600; }
td:first-child, th:first-child, .text { text-align: left; }
td.text { max-width: 560px; overflow-wrap: anywhere; }
tr:hover td { background: #fafbfc; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; }
figcaption { color: #4a5568; font-size: 13px; }
ul { margin: 4px 0; }
.cols { display: flex; flex-wrap: wrap; gap: 32px; }
footer { color: #718096; font-size: 12px; margin-top: 32px; }
"""


def _html_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    head = "".join(
        f'<th class="text">{html.escape(h)}</th>'
        if i < text_columns
        else f"<th>{html.escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{html.escape(c)}</td>'
            if i < text_columns
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _key_values(values: Mapping[str, Any], plain: bool = False) -> str:
    rows = [[str(k), _fmt(v, plain)] for k, v in values.items()]
    return _html_table(["key", "value"], rows, 2)


def _image(png: str | None, alt: str, caption: str) -> str:
    if png is None:
        return ""
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_html(run: Mapping[str, Any]) -> str:
    """The self-contained HTML page (plots embedded as base64 PNG; no external resources)."""
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import

    figure_class = Figure

    dataset, split = _mapping(run.get("dataset")), _mapping(run.get("split"))
    segments = _segments(run.get("segments"))
    history = _history(run)
    title = html.escape(_title(run))
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>clrec report: {title}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>clrec report: {title}</h1>",
    ]
    if dataset:
        out.append(f'<p class="sub">{html.escape(_dataset_line(dataset))}</p>')
    if run.get("protocol"):
        out.append(f'<p class="sub">Protocol: {html.escape(str(run["protocol"]))}</p>')

    rows = _metric_rows(run)
    accuracy = _curves(figure_class, run, False, "Accuracy at K (valid dashed, test solid)")
    if rows or accuracy:
        out.append("<section><h2>Metrics</h2>")
        if rows:
            out.append(_html_table(["metric", "valid", "test"], rows))
        out.append(_image(accuracy, "metric@K curves", "Each metric against the cut-off K."))
        out.append("</section>")

    bias = _curves(figure_class, run, True, "Popularity bias and diversity at K")
    if bias:
        out.append("<section><h2>Popularity bias and diversity</h2>")
        out.append(
            _image(
                bias,
                "popularity bias",
                "Coverage (share of catalogue recommended), average training popularity of "
                "recommended items, Gini index of recommendation counts and tail share of "
                "recommended slots, against K.",
            )
        )
        out.append("</section>")

    if segments:
        columns = _segment_columns(segments)
        out.append("<section><h2>Segments</h2>")
        out.append(
            _html_table(["segment", "bucket", *columns], _segment_rows(segments, columns), 2)
        )
        out.append(
            _image(
                _segment_bars(figure_class, segments),
                "segment bars",
                "Metrics per bucket at the smallest K; the table holds every K.",
            )
        )
        out.append("</section>")

    if history:
        curve = _training_curve(figure_class, history)
        if curve:
            out.append("<section><h2>Training</h2>")
            out.append(_image(curve, "training curve", f"{len(history)} epochs."))
            out.append("</section>")

    out.append('<section><h2>Data and split</h2><div class="cols">')
    if dataset:
        out.append(f"<div><h3>Dataset</h3>{_key_values(dataset)}</div>")
    if split:
        out.append(
            f"<div><h3>Split settings</h3>{_key_values(_split_config(split), plain=True)}</div>"
        )
        sizes = _mapping(split.get("sizes"))
        if sizes:
            columns = list(dict.fromkeys(str(k) for c in sizes.values() for k in _mapping(c)))
            size_rows = [
                [str(part), *(_fmt(_mapping(c).get(k)) for k in columns)]
                for part, c in sizes.items()
            ]
            out.append(f"<div><h3>Sizes</h3>{_html_table(['part', *columns], size_rows)}</div>")
    out.append("</div>")
    guarantees = split.get("guarantees")
    if isinstance(guarantees, list) and guarantees:
        items = "".join(f"<li>{html.escape(_fmt(g))}</li>" for g in guarantees)
        out.append(f"<h3>Guarantees</h3><ul>{items}</ul>")
    out.append("</section>")

    timing, config = _mapping(run.get("timing")), _mapping(run.get("config"))
    if timing or config:
        out.append('<section><h2>Run</h2><div class="cols">')
        if timing:
            out.append(f"<div><h3>Timing (seconds)</h3>{_key_values(timing)}</div>")
        if config:
            out.append(f"<div><h3>Config</h3>{_key_values(_flatten(config), plain=True)}</div>")
        out.append("</div></section>")

    out.append(f"<footer>Written by clrec {html.escape(__version__)}.</footer>")
    out.append("</main></body></html>")
    return "\n".join(part for part in out if part) + "\n"


def write_report(run: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``report.html`` for a run's results into ``out_dir``.

    Raises ClrecError before writing anything when matplotlib (the ``report`` extra) is
    missing. Returns the two paths, summary first.
    """
    page = render_html(run)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path, html_path = out / "summary.md", out / "report.html"
    summary_path.write_text(render_summary(run), encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return summary_path, html_path
