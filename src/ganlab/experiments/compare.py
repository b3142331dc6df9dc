"""Compare CycleGAN runs side by side: translations, cost, quality, artifacts, loss curves.

Every number comes from the same functions `ganlab info` and `ganlab eval` use (the cost functions behind
``describe`` for parameters and GFLOPs, ``evaluate_run`` for the image metrics and per-epoch time), so a
comparison table never disagrees with what those commands print for the same run. A run's eval.json is reused when
it is newer than the run's latest checkpoint and was computed on the same data; otherwise the run is
evaluated again (which rewrites its eval.json, exactly as `ganlab eval` would).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.core import metric_table as MT
from ganlab.core import report as R
from ganlab.core.checkpoint import CheckpointError
from ganlab.core.config import to_dict
from ganlab.core.cost import count_params, gflops
from ganlab.core.device import select_device
from ganlab.core.errors import UserError
from ganlab.core.images import ImageReadError, list_images, pil_to_tensor, read_rgb, tensor_to_pil
from ganlab.core.rundir import RunDir, read_metrics
from ganlab.cyclegan.evaluate import evaluate_run
from ganlab.cyclegan.translate import collect_inputs, load_run_models, translate_tensor

# Columns in table order. Labels and sort direction ("better first") of the metric columns come from
# core.metric_table; the descriptive columns (the run's name and layout) are headed by their key and sort
# ascending. Cells keep core.report's short number form, the same in table.md, the HTML page and the
# printed table. The architecture appears both as one readable column and split into its fields, so
# CSV/JSON stay easy to filter while the markdown/HTML tables stay narrow.
ARCH_FIELDS = ("n_down", "n_residual", "hidden", "upsample")
DESCRIPTIVE = ("run", "preset", "architecture", *ARCH_FIELDS)
COST_KEYS = ["generator_params", "gflops_256", "seconds_per_epoch", "epochs", "peak_mem_mb"]
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
COLUMNS: list[str] = [*DESCRIPTIVE, *COST_KEYS, *EVAL_KEYS]
SUMMARY_COLUMNS = [k for k in COLUMNS if k not in ARCH_FIELDS]
HEADERS = MT.headers(COLUMNS)
SORTABLE = [k for k in COLUMNS if k not in ("architecture",)]
DIRECTIONS = {"a2b": "G_A2B", "b2a": "G_B2A"}
LOSS_KEYS = ["G_gan_A2B", "G_gan_B2A", "cycle_A", "cycle_B", "idt_A", "idt_B", "G_total", "D_A", "D_B"]
CURVE_METRICS = ["eval_cycle_psnr", "eval_cycle_ssim", "eval_gt_psnr", "eval_gt_ssim"]


def architecture_summary(model: dict[str, Any]) -> str:
    return (
        f"{model['n_down']} down/up, {model['n_residual']} res, width {model['hidden']}, {model['upsample']}"
    )


def run_labels(runs: list[Path]) -> list[str]:
    """Short unique labels: the folder name, or more of the path where two runs share a name."""
    labels = [r.name or str(r) for r in runs]
    depth = 1
    while len(set(labels)) < len(labels) and depth < 8:
        depth += 1
        labels = ["/".join(r.resolve().parts[-depth:]) for r in runs]
    return labels


def parse_sort(spec: str) -> tuple[str, bool]:
    """``METRIC`` (natural direction), ``METRIC:asc`` or ``METRIC:desc`` -> (key, descending)."""
    key, _, order = spec.partition(":")
    if key not in SORTABLE:
        raise UserError(f"--sort: unknown metric {key!r}; choose from {', '.join(SORTABLE)}")
    if order not in ("", "asc", "desc"):
        raise UserError(f"--sort: order must be asc or desc, got {order!r}")
    descending = MT.descending_by_default(key) if not order else order == "desc"
    return key, descending


def sort_rows(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """Stable sort by one column; runs without a value (not evaluated) go last either way."""
    key, descending = parse_sort(spec)

    def value(r: dict[str, Any]) -> Any:
        v = r.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return MT.rank_value(key, v)

    have = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    return sorted(have, key=value, reverse=descending) + missing


def _eval_is_fresh(run: Path, ckpt: Path, root: Path | None, meta_epoch: int) -> dict[str, Any] | None:
    """The run's eval.json if it was written after the latest checkpoint, on the same data."""
    path = run / "eval.json"
    if not path.is_file() or path.stat().st_mtime <= ckpt.stat().st_mtime:
        return None
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if res.get("checkpoint_epoch") != meta_epoch:
        return None
    if root is not None and Path(str(res.get("data", ""))).resolve() != root.resolve():
        return None
    return res


def _run_stats(run: Path) -> dict[str, Any]:
    """Per-epoch time, epoch count and peak memory exactly as ``evaluate_run`` derives them (used when
    a run is not evaluated)."""
    epochs = read_metrics(run, "epoch")
    secs = [r["seconds"] for r in epochs]
    return {
        "seconds_per_epoch": float(np.median(secs)) if secs else None,
        "epochs": len(epochs),
        "peak_mem_mb": max((r.get("peak_mem_mb", 0.0) for r in epochs), default=None),
    }


def collect_images(images: list[str | Path]) -> list[Path]:
    try:
        files = [f for f, _ in collect_inputs(list(images))]
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if not files:
        raise UserError(f"no images found in {', '.join(map(str, images))}")
    return files


def default_images(root: str | Path | None, n: int = 4, split: str = "testA") -> list[Path]:
    """Up to ``n`` images of ``root/split`` (falling back to trainA), for grids when none are given."""
    if root is None:
        return []
    for sub in (split, "trainA"):
        folder = Path(root) / sub
        if folder.is_dir():
            found = list_images(folder)[:n]
            if found:
                return found
    return []


def _check_args(runs: list[Any], direction: str, sort: str | None, cell: int) -> None:
    """Refuse bad arguments before any run is loaded (a typo should not cost minutes of evaluation)."""
    if not runs:
        raise UserError("compare needs at least one run directory")
    if direction not in DIRECTIONS:
        raise UserError(f"--direction must be a2b or b2a, got {direction!r}")
    if sort is not None:
        parse_sort(sort)
    if cell < 16:
        raise UserError(f"--cell must be at least 16 pixels, got {cell}")


def _base_row(label: str, run: Path, models: Any, cfg: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """One run's descriptive and cost columns; every image metric is present and None until evaluated."""
    # The same cost functions `ganlab info` (describe) uses, for the generator only: the
    # discriminators' FLOPs are not in the table and cost as much to count.
    cost_g = models["G_A2B"]
    model = to_dict(cfg.model)
    return {
        "run": label,
        "preset": cfg.preset,
        "architecture": architecture_summary(model),
        **{k: model[k] for k in ARCH_FIELDS},
        "generator_params": count_params(cost_g),
        "gflops_256": gflops(cost_g, 256),
        **_run_stats(run),
        **dict.fromkeys(EVAL_KEYS),
        "path": str(run),
        "checkpoint_epoch": meta["epoch"],
        "global_step": meta.get("global_step"),
    }


def _add_eval(row: dict[str, Any], res: dict[str, Any]) -> None:
    """Fill ``row``'s image metrics from an evaluate_run result (eval.json)."""
    row.update({k: res.get(k) for k in EVAL_KEYS})
    # evaluate_run derives these from metrics.jsonl too; take its values so tables match eval.json.
    row.update({k: res.get(k) for k in ("seconds_per_epoch", "epochs", "peak_mem_mb")})
    row["eval_data"] = res.get("data")
    row["n_test_a"] = res.get("n_test_a")


@torch.no_grad()
def _translate_files(g: Any, files: list[Path], dev: torch.device, originals: list[Any]) -> list[Any]:
    """``g``'s translation of every file as PIL images; fills ``originals`` on the first run's pass."""
    outs = []
    for f in files:
        try:
            x = pil_to_tensor(read_rgb(f))[None].to(dev)
        except ImageReadError as e:
            raise UserError(str(e)) from None
        if len(originals) < len(files):
            originals.append(tensor_to_pil(x[0]))
        outs.append(tensor_to_pil(translate_tensor(g, x)[0].cpu()))
    return outs


def compare_runs(
    runs: list[str | Path],
    images: list[str | Path] | None,
    out: str | Path,
    direction: str = "a2b",
    data: str | Path | None = None,
    sort: str | None = None,
    evaluate: bool = True,
    device: str = "auto",
    limit: int | None = None,
    cell: int = 192,
    title: str = "ganlab: run comparison",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Write grid.png, table.{md,csv,json}, losses.png, metrics.png and report.html under ``out``;
    return the table rows (sorted by ``sort`` if given, else in the order of ``runs``).

    ``images``: files or folders translated by every run (default: up to 4 test images of the data).
    ``data``: data root for evaluation (default: each run's own). ``evaluate=False`` only reuses
    up-to-date eval.json files and leaves the image metrics blank otherwise.
    """
    _check_args(runs, direction, sort, cell)
    paths = [Path(r) for r in runs]
    labels = run_labels(paths)
    dev = select_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    translations: dict[str, list[Any]] = {}
    files: list[Path] | None = collect_images(images) if images else None
    originals: list[Any] = []
    for run, label in zip(paths, labels):
        try:
            ckpt = RunDir(run).resolve_checkpoint("latest")
            models, cfg, meta = load_run_models(run, "latest", dev)
        except CheckpointError as e:
            raise UserError(f"{run}: {e}") from None
        if DIRECTIONS[direction] not in models:  # a run imported from one generator file
            raise UserError(f"{run}: has no {direction} generator (it holds {', '.join(models)})")
        row = _base_row(label, run, models, cfg, meta)
        root = Path(data) if data else (Path(cfg.data.root) if cfg.data.root else None)
        res = _eval_is_fresh(run, ckpt, root, meta["epoch"])
        if res is not None:
            log(f"{label}: reusing eval.json (newer than the latest checkpoint)")
        elif evaluate and root is not None and (root / "testA").is_dir():
            log(f"{label}: evaluating checkpoint of epoch {meta['epoch']} on {root}")
            res = evaluate_run(run, data, "latest", device, limit, progress=progress)
        elif evaluate:
            log(f"{label}: no test images ({root or 'no data root'} has no testA/); metrics left blank")
        if res is not None:
            _add_eval(row, res)
        rows.append(row)

        if files is None:
            files = default_images(root)
            if not files:
                log("no images for the grid (pass --images); skipping it")
        translations[label] = _translate_files(models[DIRECTIONS[direction]], files, dev, originals)
        del models
    if sort:
        rows = sort_rows(rows, sort)
    order = [r["run"] for r in rows]
    written = write_outputs(
        rows, order, translations, originals, files or [], paths, labels, out, direction, sort, cell, title
    )
    log(f"comparison of {len(rows)} run(s) written to {out} ({', '.join(written)})")
    return rows


def write_outputs(
    rows: list[dict[str, Any]],
    order: list[str],
    translations: dict[str, list[Any]],
    originals: list[Any],
    files: list[Path],
    paths: list[Path],
    labels: list[str],
    out: Path,
    direction: str,
    sort: str | None,
    cell: int,
    title: str,
) -> list[str]:
    """Tables, figures and the HTML report; returns the file names written."""
    written = []
    R.write_text_atomic(out / "table.md", R.markdown_table(rows, SUMMARY_COLUMNS, headers=HEADERS))
    R.write_text_atomic(out / "table.csv", to_csv(rows))
    R.write_text_atomic(out / "table.json", json.dumps(rows, indent=2, default=str) + "\n")
    written += ["table.md", "table.csv", "table.json"]

    sections: list[tuple[str, str]] = []
    note = (
        f"Direction {direction}; sorted by {sort}."
        if sort
        else f"Direction {direction}; runs in given order."
    )
    sections.append(
        ("Runs", R.html_table(rows, SUMMARY_COLUMNS, headers=HEADERS) + f"<p class=note>{note}</p>")
    )

    if originals and files:
        grid_rows = [[originals[i]] + [translations[r][i] for r in order] for i in range(len(originals))]
        grid = R.image_grid(grid_rows, [f.name for f in files], ["original", *order], cell=cell)
        grid.save(out / "grid.png")
        written.append("grid.png")
        sections.append((f"Translations ({direction})", R.img_tag(R.image_data_uri(grid), "translations")))

    records = {label: read_metrics(p, "epoch") for p, label in zip(paths, labels)}
    records = {r: records[r] for r in order}
    phases = sorted(
        {rec["epoch"] for p in paths for rec in read_metrics(p, "phase") if rec.get("epoch", 1) > 1}
    )
    figures = [("losses.png", "Loss curves", R.plot_losses(records, LOSS_KEYS, phase_epochs=phases))]
    keys = [k for k in CURVE_METRICS if any(k in rec for recs in records.values() for rec in recs)]
    if keys:
        fig = R.plot_metric_curves(records, keys, phase_epochs=phases)
        figures.append(("metrics.png", "Evaluation during training", fig))
    for name, heading, fig in figures:
        png = R.figure_png_bytes(fig, close=True)  # rendered once for both the file and the page
        (out / name).write_bytes(png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        sections.append((heading, R.img_tag(uri, heading)))
        written.append(name)
    sections.append(
        (
            "How these numbers were made",
            "<p class=note>Parameters and GFLOPs: one generator on a 256x256 input, as <code>ganlab info</code>. "
            "Seconds per epoch (median), epochs and peak memory: from each run's metrics.jsonl. Image metrics: "
            "the latest checkpoint on the test set, as <code>ganlab eval</code> (cycle: testA vs A-&gt;B-&gt;A; "
            "GT: A-&gt;B vs testB_gt). Checkerboard index: share of the spectral energy at the upsampling "
            "period, on a flat grey input and on the translated test images (0 = no grid pattern). Tint: mean "
            "CIELAB shift from input to A-&gt;B output (negative delta b* = bluer) and mean delta E 2000. "
            "Dashed vertical lines in the curves: loss-weight phase switches.</p>",
        )
    )
    R.write_text_atomic(out / "report.html", R.html_page(title, sections))
    written.append("report.html")
    return written


def to_csv(rows: list[dict[str, Any]]) -> str:
    """All table columns plus the run path; floats at full precision (for further analysis)."""
    cols = [*COLUMNS, "checkpoint_epoch", "path"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()
