"""What `ganlab compare` writes: the tables (per configuration with intervals, per run), the figures
(translations, losses, evaluation curves, score against compute) and the self-contained report.html.

Column order, labels and cell formats live here; labels and sort directions of the metric columns come
from core.metric_table, so table.md, the HTML page and the printed table agree.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganlab.core import metric_table as MT
from ganlab.core import report as R
from ganlab.core.rundir import read_metrics
from ganlab.experiments import aggregate as A
from ganlab.experiments import compute

# Columns in table order. Labels and sort direction ("better first") of the metric columns come from
# core.metric_table; the descriptive columns (the run's name and layout) are headed by their key and sort
# ascending. Cells keep core.report's short number form, the same in table.md, the HTML page and the
# printed table. The architecture appears both as one readable column and split into its fields, so
# CSV/JSON stay easy to filter while the markdown/HTML tables stay narrow.
ARCH_FIELDS = ("n_down", "n_residual", "hidden", "upsample")
DESCRIPTIVE = ("run", "seed", "preset", "architecture", *ARCH_FIELDS)
COST_KEYS = ["generator_params", "gflops_256", "seconds_per_epoch", "epochs", "peak_mem_mb"]
# What each run spent: steps, images seen per domain, training GFLOPs (experiments.compute).
COMPUTE_KEYS = ["steps", "images_seen", "train_gflops"]
# Columns filled from evaluate_run's result (eval.json).
EVAL_KEYS = [
    "cycle_psnr",
    "cycle_ssim",
    "gt_psnr",
    "gt_ssim",
    "checkerboard_flat",
    "checkerboard_images",
    "tint_delta_a",
    "tint_delta_b",
    "tint_delta_e2000",
]
COLUMNS: list[str] = [*DESCRIPTIVE, *COST_KEYS, *COMPUTE_KEYS, *EVAL_KEYS]
SUMMARY_COLUMNS = [k for k in COLUMNS if k not in ARCH_FIELDS]
HEADERS = MT.headers(COLUMNS)
LOSS_KEYS = ["G_gan_A2B", "G_gan_B2A", "cycle_A", "cycle_B", "idt_A", "idt_B", "G_total", "D_A", "D_B"]
CURVE_METRICS = ["eval_cycle_psnr", "eval_cycle_ssim", "eval_gt_psnr", "eval_gt_ssim"]

HOW_MADE = (
    "<p class=note>Parameters and GFLOPs/256px: one generator on a 256x256 input, as <code>ganlab info</code>. "
    "Seconds per epoch (median), epochs and peak memory: from each run's metrics.jsonl. Steps: the latest "
    "checkpoint's training steps; images seen: steps x batch size (per domain); train GFLOPs: steps x the "
    "FLOPs of one training step of the run's configuration (all four networks, forward and backward, "
    "counted on one real step; per-epoch evaluation not included). Image metrics: the latest checkpoint "
    "on the test set, as <code>ganlab eval</code> (cycle: testA vs A-&gt;B-&gt;A; GT: A-&gt;B vs "
    "testB_gt). Checkerboard index: share of the spectral energy at the upsampling period, on a flat grey "
    "input and on the translated test images (0 = no grid pattern). Tint: mean CIELAB shift from input to "
    "A-&gt;B output (negative delta b* = bluer) and mean delta E 2000. Dashed vertical lines in the "
    "curves: loss-weight phase switches.</p>"
)
READING = (
    "<p class=note>One row per configuration (runs whose configs differ only in the seed). {metric}: the "
    "mean over the seeds. 95% over seeds: t interval over the seeds' scores (how far another training "
    "seed could move the mean). 95% over tiles: bootstrap over the test tiles (how far another draw of "
    "test images could move it). Differences (this minus the best configuration, or minus the identity "
    "baseline, i.e. the input returned unchanged): the mean, then its 95% interval from a paired "
    "bootstrap over the tiles (each tile's score averaged over the seeds) and from a t test over the "
    "seeds. <b>better</b> / <b>worse</b> only where both intervals leave out zero on the same side; "
    "<b>indistinguishable</b> means the difference can be noise (of the tiles or of the seeds). With one "
    "seed the seed test cannot be made, and the verdict says (1 seed): it then holds for those trained "
    "networks, not for their configurations.</p>"
)

COMPUTE_NOTE = (
    "Lines: each configuration's per-epoch evaluations (train.eval_images test tiles), averaged over the "
    "seeds that reached the epoch. Points: each run's final evaluation on the whole test set. Dashed: "
    "the identity baseline. Training GFLOPs = steps x FLOPs of one training step."
)


@dataclass
class ReportInputs:
    """Everything the report shows, gathered by ``compare_runs``."""

    rows: list[dict[str, Any]]  # per run, in table order
    translations: dict[str, list[Any]]  # run label -> translated grid images
    originals: list[Any]
    files: list[Path]
    paths: list[Path]
    labels: list[str]
    direction: str
    sort: str | None
    cell: int
    title: str
    metric: str = A.DEFAULT_METRIC
    summaries: list[A.ConfigSummary] = field(default_factory=list)
    step_gflops: dict[str, float | None] = field(default_factory=dict)  # run label -> GFLOPs per step
    identity: float | None = None  # the identity baseline's mean score


def tables_markdown(inp: ReportInputs) -> str:
    """table.md (and what `ganlab compare` prints): configurations with intervals, then the runs."""
    parts = []
    if inp.summaries:
        rows = A.summary_rows(inp.summaries, inp.metric)
        head = A.summary_headers(inp.metric)
        parts.append(f"Configurations ({MT.label(inp.metric)}; 95% intervals, noise marks):\n")
        parts.append(R.markdown_table(rows, list(head), fmt=str, headers=head))
        parts.append("\nRuns:\n")
    parts.append(R.markdown_table(inp.rows, SUMMARY_COLUMNS, headers=HEADERS))
    return "\n".join(parts)


def score_vs_compute(inp: ReportInputs) -> tuple[dict[str, list], dict[str, list]]:
    """Plot data: per configuration, the line through the per-epoch evaluations (mean over seeds) and
    the runs' final scores, both against training GFLOPs."""
    key = f"eval_{inp.metric}"
    config_of = {r["run"]: r.get("config", r["run"]) for r in inp.rows}
    seeds: dict[str, list] = {}
    points: dict[str, list] = {}
    for path, label in zip(inp.paths, inp.labels):
        gf = inp.step_gflops.get(label)
        if gf is None:
            continue
        cfg = config_of.get(label, label)
        seeds.setdefault(cfg, []).append(compute.epoch_points(read_metrics(path, "epoch"), key, gf))
        row = next((r for r in inp.rows if r["run"] == label), {})
        if row.get(inp.metric) is not None and row.get("train_gflops") is not None:
            points.setdefault(cfg, []).append((row["train_gflops"], row[inp.metric]))
    curves = {c: line for c, ps in seeds.items() if (line := compute.config_curve(ps))}
    return curves, points


def write_outputs(inp: ReportInputs, out: Path) -> list[str]:
    """Tables, figures and the HTML report; returns the file names written."""
    rows = inp.rows
    written = ["table.md", "table.csv", "table.json"]
    R.write_text_atomic(out / "table.md", tables_markdown(inp))
    R.write_text_atomic(out / "table.csv", to_csv(rows))
    R.write_text_atomic(out / "table.json", json.dumps(rows, indent=2, default=str) + "\n")
    sections: list[tuple[str, str]] = []
    if inp.summaries:
        R.write_text_atomic(
            out / "summary.json",
            json.dumps(A.summary_records(inp.summaries, inp.metric), indent=2, default=str) + "\n",
        )
        written.append("summary.json")
        head = A.summary_headers(inp.metric)
        table = R.html_table(A.summary_rows(inp.summaries, inp.metric), list(head), fmt=str, headers=head)
        sections.append(("Configurations", table + READING.format(metric=MT.label(inp.metric))))
    how = f"sorted by {inp.sort}." if inp.sort else "runs in given order."
    note = f"<p class=note>Direction {inp.direction}; {how}</p>"
    sections.append(("Runs", R.html_table(rows, SUMMARY_COLUMNS, headers=HEADERS) + note))
    order = [r["run"] for r in rows]
    if inp.originals and inp.files:
        n = len(inp.originals)
        grid_rows = [[inp.originals[i]] + [inp.translations[r][i] for r in order] for i in range(n)]
        names = [f.name for f in inp.files]
        grid = R.image_grid(grid_rows, names, ["original", *order], cell=inp.cell)
        grid.save(out / "grid.png")
        written.append("grid.png")
        heading = f"Translations ({inp.direction})"
        sections.append((heading, R.img_tag(R.image_data_uri(grid), "translations")))
    for name, heading, fig, note in _figures(inp, order):
        png = R.figure_png_bytes(fig, close=True)  # rendered once for both the file and the page
        (out / name).write_bytes(png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        sections.append((heading, R.img_tag(uri, heading) + (f"<p class=note>{note}</p>" if note else "")))
        written.append(name)
    sections.append(("How these numbers were made", HOW_MADE))
    R.write_text_atomic(out / "report.html", R.html_page(inp.title, sections))
    written.append("report.html")
    return written


def _figures(inp: ReportInputs, order: list[str]) -> list[tuple[str, str, Any, str]]:
    """(file name, heading, figure, note): losses, evaluation curves, score against compute."""
    records = {label: read_metrics(p, "epoch") for p, label in zip(inp.paths, inp.labels)}
    records = {r: records[r] for r in order}
    phases = sorted(
        {rec["epoch"] for p in inp.paths for rec in read_metrics(p, "phase") if rec.get("epoch", 1) > 1}
    )
    figures = [("losses.png", "Loss curves", R.plot_losses(records, LOSS_KEYS, phase_epochs=phases), "")]
    keys = [k for k in CURVE_METRICS if any(k in rec for recs in records.values() for rec in recs)]
    if keys:
        fig = R.plot_metric_curves(records, keys, phase_epochs=phases)
        figures.append(("metrics.png", "Evaluation during training", fig, ""))
    curves, points = score_vs_compute(inp)
    if curves or points:
        fig = compute.plot_score_vs_compute(curves, points, inp.metric, inp.identity)
        heading = f"{MT.label(inp.metric)} against training compute"
        figures.append(("compute.png", heading, fig, COMPUTE_NOTE))
    return figures


def to_csv(rows: list[dict[str, Any]]) -> str:
    """All table columns plus the configuration and the run path; floats at full precision."""
    cols = [*COLUMNS, "config", "checkpoint_epoch", "path"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()
