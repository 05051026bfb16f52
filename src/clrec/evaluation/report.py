"""Run report: a short Markdown summary and a self-contained HTML page with plots.

The input is the results dict a run writes (``metrics.json``): model, dataset summary, split,
``valid`` / ``test`` metrics keyed ``name@K``, per-segment metrics, training history, timing
and config. Any key may be missing or empty; sections without data are left out
(:mod:`clrec.evaluation.report_data` reads the dict).

The HTML page opens offline: no scripts, no external styles or fonts, and plots
(:mod:`clrec.evaluation.report_plots`) embedded as base64 PNG. matplotlib is the optional
``report`` extra.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clrec import __version__
from clrec.evaluation.report_data import (
    as_mapping,
    as_number,
    dataset_line,
    fmt,
    history_rows,
    metric_rows,
    run_title,
    segment_buckets,
    segment_columns,
    segment_rows,
    split_config,
)
from clrec.evaluation.report_plots import metric_curves, segment_bars, training_curve

# --- Markdown -----------------------------------------------------------------------------


def _sizes_line(sizes: Mapping[str, Any]) -> str:
    parts = []
    for part, counts in sizes.items():
        counts = as_mapping(counts)
        text = " · ".join(f"{fmt(v)} {k}" for k, v in counts.items())
        parts.append(f"{part} {text}" if text else str(part))
    return "; ".join(parts)


def _timing_line(timing: Mapping[str, Any]) -> str:
    parts = []
    for key, value in timing.items():
        label = str(key).removesuffix("_seconds").replace("_", " ")
        number = as_number(value)
        parts.append(f"{label} {number:.2f} s" if number is not None else f"{label} {fmt(value)}")
    return ", ".join(parts)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_summary(run: Mapping[str, Any]) -> str:
    """The Markdown summary: dataset, split, protocol, metrics, segments, training, timing."""
    dataset, split = as_mapping(run.get("dataset")), as_mapping(run.get("split"))
    lines = [f"# clrec run: {run_title(run)}", ""]
    if dataset:
        lines.append(f"- **Dataset**: {dataset_line(dataset)}")
    if split:
        settings = ", ".join(
            f"{k}=[{fmt(v, plain=True)}]"
            if isinstance(v, list | tuple)
            else f"{k}={fmt(v, plain=True)}"
            for k, v in split_config(split).items()
            if isinstance(v, str | int | float | list | tuple)
        )
        sizes = _sizes_line(as_mapping(split.get("sizes")))
        lines.append(f"- **Split**: {'; '.join(t for t in (settings, sizes) if t)}")
    if run.get("protocol"):
        lines.append(f"- **Protocol**: {run['protocol']}")
    timing = as_mapping(run.get("timing"))
    if timing:
        lines.append(f"- **Timing**: {_timing_line(timing)}")
    rows = metric_rows(run)
    if rows:
        lines += ["", "## Metrics", "", _md_table(["metric", "valid", "test"], rows)]
    segments = segment_buckets(run.get("segments"))
    if segments:
        columns = segment_columns(segments)
        table = _md_table(["segment", "bucket", *columns], segment_rows(segments, columns))
        lines += ["", "## Segments", "", table]
    history = history_rows(run)
    if history:
        last = ", ".join(f"{k} {fmt(v)}" for k, v in history[-1].items() if k != "epoch")
        lines += ["", "## Training", "", f"{len(history)} epochs; last: {last}"]
    return "\n".join(lines) + "\n"


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
    rows = [[str(k), fmt(v, plain)] for k, v in values.items()]
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

    dataset, split = as_mapping(run.get("dataset")), as_mapping(run.get("split"))
    segments = segment_buckets(run.get("segments"))
    history = history_rows(run)
    title = html.escape(run_title(run))
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>clrec report: {title}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>clrec report: {title}</h1>",
    ]
    if dataset:
        out.append(f'<p class="sub">{html.escape(dataset_line(dataset))}</p>')
    if run.get("protocol"):
        out.append(f'<p class="sub">Protocol: {html.escape(str(run["protocol"]))}</p>')

    rows = metric_rows(run)
    accuracy = metric_curves(figure_class, run, False, "Accuracy at K (valid dashed, test solid)")
    if rows or accuracy:
        out.append("<section><h2>Metrics</h2>")
        if rows:
            out.append(_html_table(["metric", "valid", "test"], rows))
        out.append(_image(accuracy, "metric@K curves", "Each metric against the cut-off K."))
        out.append("</section>")

    bias = metric_curves(figure_class, run, True, "Popularity bias and diversity at K")
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
        columns = segment_columns(segments)
        out.append("<section><h2>Segments</h2>")
        out.append(_html_table(["segment", "bucket", *columns], segment_rows(segments, columns), 2))
        out.append(
            _image(
                segment_bars(figure_class, segments),
                "segment bars",
                "Metrics per bucket at the smallest K; the table holds every K.",
            )
        )
        out.append("</section>")

    if history:
        curve = training_curve(figure_class, history)
        if curve:
            out.append("<section><h2>Training</h2>")
            out.append(_image(curve, "training curve", f"{len(history)} epochs."))
            out.append("</section>")

    out.append('<section><h2>Data and split</h2><div class="cols">')
    if dataset:
        out.append(f"<div><h3>Dataset</h3>{_key_values(dataset)}</div>")
    if split:
        out.append(
            f"<div><h3>Split settings</h3>{_key_values(split_config(split), plain=True)}</div>"
        )
        sizes = as_mapping(split.get("sizes"))
        if sizes:
            columns = list(dict.fromkeys(str(k) for c in sizes.values() for k in as_mapping(c)))
            size_rows = [
                [str(part), *(fmt(as_mapping(c).get(k)) for k in columns)]
                for part, c in sizes.items()
            ]
            out.append(f"<div><h3>Sizes</h3>{_html_table(['part', *columns], size_rows)}</div>")
    out.append("</div>")
    guarantees = split.get("guarantees")
    if isinstance(guarantees, list) and guarantees:
        items = "".join(f"<li>{html.escape(fmt(g))}</li>" for g in guarantees)
        out.append(f"<h3>Guarantees</h3><ul>{items}</ul>")
    out.append("</section>")

    timing, config = as_mapping(run.get("timing")), as_mapping(run.get("config"))
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
