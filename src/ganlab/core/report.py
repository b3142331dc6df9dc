"""Report building blocks: plots, labelled image grids, tables and a self-contained HTML page.

Everything here is generic (no knowledge of runs or checkpoints) so `ganlab compare`, `ganlab sweep` and
`ganlab demo` can share it. Figures are rendered with the non-interactive Agg backend, so reports can be
built on headless machines, and images are embedded as base64 data URIs so a report is one file that
can be mailed or archived without its folder.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

# Select Agg before pyplot is imported anywhere through this module: no display is needed or wanted.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------------


def image_data_uri(img: Image.Image) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URI (lossless, so pixels in reports are exact)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, Any]:
    """A new figure and its axes, on the headless backend this module selects."""
    return plt.subplots(nrows, ncols, figsize=figsize)


def figure_png_bytes(fig: Figure, dpi: int = 100, close: bool = False) -> bytes:
    """PNG bytes of a matplotlib figure; ``close`` frees the figure afterwards."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return buf.getvalue()


def figure_data_uri(fig: Figure, dpi: int = 100, close: bool = False) -> str:
    """A matplotlib figure as a PNG data URI; ``close`` frees the figure afterwards."""
    data = figure_png_bytes(fig, dpi, close)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see a half-written report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------


def _epoch_series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one key over a run's epoch records; non-numeric or missing values skipped.
    Records of other types are ignored, so a whole metrics.jsonl can be passed."""
    xs, ys = [], []
    for r in records:
        if r.get("type", "epoch") != "epoch":
            continue
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(int(r["epoch"]))
            ys.append(float(v))
    return xs, ys


def _grid_axes(n: int, ncols: int, title: str) -> tuple[Figure, list[Any]]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, flat[:n]


def _plot_curves(
    records_by_run: dict[str, list[dict[str, Any]]],
    keys: Sequence[str],
    phase_epochs: Sequence[int] | None,
    baselines: dict[str, float] | None,
    title: str,
    ncols: int,
    labels: dict[str, str] | None,
) -> Figure:
    keys = list(keys) or ["(none)"]
    fig, axes = _grid_axes(len(keys), ncols, title)
    # One colour per run across all subplots, so a run is recognisable everywhere.
    colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for ax, key in zip(axes, keys):
        drawn = False
        for i, (run, records) in enumerate(records_by_run.items()):
            xs, ys = _epoch_series(records, key)
            if xs:
                ax.plot(
                    xs, ys, marker="." if len(xs) < 30 else None, color=colours[i % len(colours)], label=run
                )
                drawn = True
        for e in phase_epochs or []:
            ax.axvline(e, color="grey", linestyle="--", linewidth=0.8)
        for j, (label, value) in enumerate((baselines or {}).items()):
            if value is not None and math.isfinite(value):
                ax.axhline(value, color="black", linestyle=(0, (1, 1 + j)), linewidth=0.9, label=label)
                drawn = True
        ax.set_title((labels or {}).get(key, key), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.tick_params(labelsize=7)
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.grid(alpha=0.3)
    # A single legend for the figure: repeating it in every subplot hides the curves.
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize=8, frameon=False)
        rows = math.ceil(len(names) / 4)
        fig.tight_layout(rect=(0, 0.02 + 0.025 * rows, 1, 0.95))
    else:
        fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def plot_losses(
    records_by_run: dict[str, list[dict[str, Any]]],
    keys: list[str],
    phase_epochs: list[int] | None = None,
    title: str = "Training losses per epoch",
    ncols: int = 3,
) -> Figure:
    """One subplot per loss term, runs overlaid, dashed vertical lines where a loss-weight phase starts.

    ``records_by_run``: run label -> its epoch records (metrics.jsonl records; non-epoch ones ignored).
    """
    return _plot_curves(records_by_run, keys, phase_epochs, None, title, ncols, None)


def plot_metric_curves(
    records_by_run: dict[str, list[dict[str, Any]]],
    keys: list[str],
    phase_epochs: list[int] | None = None,
    baselines: dict[str, float] | None = None,
    title: str = "Evaluation metrics per epoch",
    ncols: int = 2,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Like :func:`plot_losses` for eval_* metrics; ``baselines`` (label -> value) are drawn as
    horizontal lines in every subplot (pass one key at a time when baselines differ per metric)."""
    return _plot_curves(records_by_run, keys, phase_epochs, baselines, title, ncols, labels)


# --------------------------------------------------------------------------------------------------
# Image grid
# --------------------------------------------------------------------------------------------------


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels (labels may be long run names)."""
    if _text_size(draw, text, font)[0] <= width:
        return text
    while len(text) > 1 and _text_size(draw, text + "...", font)[0] > width:
        text = text[:-1]
    return text + "..."


def image_grid(
    rows: list[list[Image.Image]],
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    cell: int = 192,
    pad: int = 4,
    background: str = "white",
) -> Image.Image:
    """Paste images into a labelled grid; every image is resized to height ``cell`` keeping its aspect
    ratio, and each column is as wide as its widest image. Labels use PIL's default font."""
    if not rows or not any(rows):
        raise ValueError("image_grid needs at least one image")
    ncols = max(len(r) for r in rows)
    scaled = [
        [im.convert("RGB").resize((max(1, round(im.width * cell / im.height)), cell)) for im in r]
        for r in rows
    ]
    col_w = [max((r[c].width for r in scaled if c < len(r)), default=cell) for c in range(ncols)]
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = _text_size(probe, "Ag", font)[1] + 2 * pad
    label_w = 0
    if row_labels:
        label_w = min(220, max(_text_size(probe, s, font)[0] for s in row_labels) + 2 * pad)
    top = line_h if col_labels else 0
    width = label_w + sum(col_w) + pad * (ncols + 1)
    height = top + len(scaled) * (cell + pad) + pad
    grid = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(grid)
    xs = [label_w + pad]
    for w in col_w[:-1]:
        xs.append(xs[-1] + w + pad)
    for c, label in enumerate(col_labels or []):
        if c < ncols:
            text = _fit_text(draw, str(label), font, col_w[c])
            tw = _text_size(draw, text, font)[0]
            draw.text((xs[c] + (col_w[c] - tw) // 2, pad), text, fill="black", font=font)
    for r, row in enumerate(scaled):
        y = top + pad + r * (cell + pad)
        if row_labels and r < len(row_labels):
            text = _fit_text(draw, str(row_labels[r]), font, label_w - pad)
            th = _text_size(draw, text, font)[1]
            draw.text((pad, y + (cell - th) // 2), text, fill="black", font=font)
        for c, im in enumerate(row):
            grid.paste(im, (xs[c] + (col_w[c] - im.width) // 2, y))
    return grid


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def format_value(value: Any, digits: int = 4) -> str:
    """Short human form: ints with separators, floats with ``digits`` significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-" if math.isnan(value) else str(value)
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)


def html_table(
    rows: list[dict[str, Any]],
    columns: list[str],
    fmt: Callable[[Any], str] | dict[str, Callable[[Any], str]] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """An HTML table of ``rows`` restricted to ``columns``; ``fmt`` formats cells (one function, or one
    per column; default :func:`format_value`). Text is escaped, numbers are right-aligned."""

    def cell(col: str, value: Any) -> str:
        f = fmt.get(col, format_value) if isinstance(fmt, dict) else (fmt or format_value)
        cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        return f"<td{cls}>{html.escape(f(value))}</td>"

    head = "".join(f"<th>{html.escape((headers or {}).get(c, c))}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(cell(c, r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def markdown_table(
    rows: list[dict[str, Any]],
    columns: list[str],
    fmt: Callable[[Any], str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """A GitHub-flavoured markdown table; '|' inside cells is escaped so columns stay aligned."""
    f = fmt or format_value

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(esc((headers or {}).get(c, c)) for c in columns) + " |"
    sep = "|" + "|".join("---:" if _numeric_column(rows, c) else "---" for c in columns) + "|"
    body = ["| " + " | ".join(esc(f(r.get(c))) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body]) + "\n"


def _numeric_column(rows: list[dict[str, Any]], col: str) -> bool:
    vals = [r.get(col) for r in rows if r.get(col) is not None]
    return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


# --------------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
pre, code { background: #f6f6f6; font-size: .9em; }
pre { padding: .6em; overflow-x: auto; }
.note { color: #666; font-size: .85em; }
"""


def html_page(title: str, sections: list[tuple[str, str]]) -> str:
    """A complete HTML document: ``sections`` are (heading, HTML body) pairs, inserted as given (bodies
    are trusted HTML built by the caller; the title and headings are escaped). Inline CSS only, no
    scripts, fonts or links to fetch, so the page renders offline."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(body)
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def img_tag(uri: str, alt: str = "") -> str:
    """An ``<img>`` for a data URI (alt text escaped)."""
    return f'<img src="{uri}" alt="{html.escape(alt, quote=True)}">'
