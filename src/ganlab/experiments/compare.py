"""Compare CycleGAN runs side by side: translations, cost, quality, artifacts, loss curves.

Every number comes from the same functions `ganlab info` and `ganlab eval` use (the cost functions behind
``describe`` for parameters and GFLOPs, ``evaluate_run`` for the image metrics and per-epoch time), so a
comparison table never disagrees with what those commands print for the same run. A run's eval.json is reused when
it is newer than the run's latest checkpoint and was computed on the same data; otherwise the run is
evaluated again (which rewrites its eval.json, exactly as `ganlab eval` would).

Runs whose configs differ only in the seed are one configuration: the report adds a table per
configuration with the mean, 95% intervals over seeds and over test tiles, and paired tests against the
best configuration and the identity baseline (:mod:`.aggregate`), and plots score against training
compute (:mod:`.compute`). The tables and the page are written by :mod:`.compare_report`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.core import metric_table as MT
from ganlab.core.checkpoint import CheckpointError
from ganlab.core.config import to_dict
from ganlab.core.cost import count_params, gflops
from ganlab.core.device import select_device
from ganlab.core.errors import UserError
from ganlab.core.images import ImageReadError, list_images, pil_to_tensor, read_rgb, tensor_to_pil
from ganlab.core.rundir import RunDir, read_metrics
from ganlab.cyclegan.evaluate import evaluate_run
from ganlab.cyclegan.translate import collect_inputs, load_run_models, translate_tensor
from ganlab.experiments import aggregate as A
from ganlab.experiments import compute
from ganlab.experiments.compare_report import (
    ARCH_FIELDS,
    COLUMNS,
    COMPUTE_KEYS,
    DESCRIPTIVE,
    EVAL_KEYS,
    HEADERS,
    SUMMARY_COLUMNS,
    ReportInputs,
    tables_markdown,
    write_outputs,
)

__all__ = [
    "ARCH_FIELDS",
    "COLUMNS",
    "COMPUTE_KEYS",
    "DESCRIPTIVE",
    "EVAL_KEYS",
    "HEADERS",
    "SORTABLE",
    "SUMMARY_COLUMNS",
    "compare_runs",
    "default_images",
    "parse_sort",
    "sort_rows",
    "tables_markdown",
]

SORTABLE = [k for k in COLUMNS if k not in ("architecture",)]
DIRECTIONS = {"a2b": "G_A2B", "b2a": "G_B2A"}


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


def _check_args(runs: list[Any], direction: str, sort: str | None, cell: int, metric: str) -> None:
    """Refuse bad arguments before any run is loaded (a typo should not cost minutes of evaluation)."""
    if not runs:
        raise UserError("compare needs at least one run directory")
    if direction not in DIRECTIONS:
        raise UserError(f"--direction must be a2b or b2a, got {direction!r}")
    if sort is not None:
        parse_sort(sort)
    if cell < 16:
        raise UserError(f"--cell must be at least 16 pixels, got {cell}")
    if metric not in A.IDENTITY:
        raise UserError(f"--metric: {metric!r} has no per-tile scores; choose from {', '.join(A.IDENTITY)}")


def _base_row(label: str, run: Path, models: Any, cfg: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """One run's descriptive and cost columns; every image metric is present and None until evaluated."""
    # The same cost functions `ganlab info` (describe) uses, for the generator only: the
    # discriminators' FLOPs are not in the table and cost as much to count.
    cost_g = models["G_A2B"]
    model = to_dict(cfg.model)
    steps = meta.get("global_step")
    # Counting a step runs one; an imported run (no training steps) needs none.
    step_gflops = compute.train_step_gflops(cfg) if steps else None
    return {
        "run": label,
        "seed": cfg.train.seed,
        "preset": cfg.preset,
        "architecture": architecture_summary(model),
        **{k: model[k] for k in ARCH_FIELDS},
        "generator_params": count_params(cost_g),
        "gflops_256": gflops(cost_g, 256),
        **_run_stats(run),
        **compute.spent(steps, cfg.train.batch_size, step_gflops),
        **dict.fromkeys(EVAL_KEYS),
        "path": str(run),
        "checkpoint_epoch": meta["epoch"],
        "global_step": steps,
        "step_gflops": step_gflops,
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


def _scores(row: dict[str, Any], res: dict[str, Any] | None, metric: str) -> A.RunScores:
    """What the configuration summary needs of one run (its per-tile scores from eval.json)."""
    tiles = identity = None
    per_tile = (res or {}).get("tiles") or {}
    if metric in per_tile:
        names = (res or {}).get("tile_names") or [str(i) for i in range(len(per_tile[metric]))]
        tiles = dict(zip(names, per_tile[metric]))
        if A.IDENTITY.get(metric) in per_tile:
            identity = dict(zip(names, per_tile[A.IDENTITY[metric]]))
    value = row.get(metric) if res is not None else None
    computed = {k: row.get(k) for k in COMPUTE_KEYS}
    return A.RunScores(row["run"], "", row.get("seed"), value, tiles, identity, computed)


def _load_one(
    run: Path, label: str, dev: torch.device, opts: dict[str, Any], log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any] | None, Any, Any]:
    """(table row, eval result or None, models, config) of one run, evaluated if needed."""
    direction, data = opts["direction"], opts["data"]
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
    elif opts["evaluate"] and root is not None and (root / "testA").is_dir():
        log(f"{label}: evaluating checkpoint of epoch {meta['epoch']} on {root}")
        res = evaluate_run(run, data, "latest", opts["device"], opts["limit"], progress=opts["progress"])
    elif opts["evaluate"]:
        log(f"{label}: no test images ({root or 'no data root'} has no testA/); metrics left blank")
    if res is not None:
        _add_eval(row, res)
    return row, res, models, cfg


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
    metric: str = A.DEFAULT_METRIC,
) -> list[dict[str, Any]]:
    """Write grid.png, table.{md,csv,json}, summary.json, losses.png, metrics.png, compute.png and
    report.html under ``out``; return the per-run table rows (sorted by ``sort`` if given, else in the
    order of ``runs``).

    ``images``: files or folders translated by every run (default: up to 4 test images of the data).
    ``data``: data root for evaluation (default: each run's own). ``evaluate=False`` only reuses
    up-to-date eval.json files and leaves the image metrics blank otherwise. ``metric``: the per-tile
    score the configuration table aggregates and tests (gt_psnr or gt_ssim).
    """
    _check_args(runs, direction, sort, cell, metric)
    paths = [Path(r) for r in runs]
    labels = run_labels(paths)
    dev = select_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opts = {"direction": direction, "data": data, "evaluate": evaluate, "device": device}
    opts.update(limit=limit, progress=progress)

    rows: list[dict[str, Any]] = []
    scores: list[A.RunScores] = []
    keys: list[str] = []
    translations: dict[str, list[Any]] = {}
    files: list[Path] | None = collect_images(images) if images else None
    originals: list[Any] = []
    for run, label in zip(paths, labels):
        row, res, models, cfg = _load_one(run, label, dev, opts, log)
        rows.append(row)
        scores.append(_scores(row, res, metric))
        keys.append(A.config_key(to_dict(cfg)))
        if files is None:
            files = default_images(Path(data) if data else (cfg.data.root or None))
            if not files:
                log("no images for the grid (pass --images); skipping it")
        translations[label] = _translate_files(models[DIRECTIONS[direction]], files, dev, originals)
        del models
    _name_configs(rows, scores, keys)
    inp = ReportInputs(
        rows, translations, originals, files or [], paths, labels, direction, sort, cell, title
    )
    inp.metric, inp.summaries = metric, A.summarize(scores, metric)
    inp.step_gflops = {r["run"]: r.get("step_gflops") for r in rows}
    identity = [r.identity for r in scores if r.identity]
    inp.identity = float(np.mean(list(identity[0].values()))) if identity else None
    if sort:
        inp.rows = sort_rows(rows, sort)
    written = write_outputs(inp, out)
    log(f"comparison of {len(rows)} run(s) written to {out} ({', '.join(written)})")
    return inp.rows


def _name_configs(rows: list[dict[str, Any]], scores: list[A.RunScores], keys: list[str]) -> None:
    """Runs with the same config key are one configuration, named after its runs (seed dropped)."""
    members: dict[str, list[str]] = {}
    for k, r in zip(keys, rows):
        members.setdefault(k, []).append(r["run"])
    names = {k: A.config_label(v) for k, v in members.items()}
    for k, row, sc in zip(keys, rows, scores):
        row["config"] = sc.config = names[k]
