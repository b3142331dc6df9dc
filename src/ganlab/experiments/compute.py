"""Compute spent by CycleGAN runs, for equal-compute comparisons: the FLOPs of one training step, a
GFLOP budget as a step count, what a run spent (steps, images, GFLOPs), and score against compute.

A training step's FLOPs are counted, not estimated: one step of the run's configuration (its four
networks, batch and crop size, forward and backward, both discriminator updates) runs once under torch's
FLOP counter (as ``ganlab.core.bench.count_flops``: 2 FLOPs per multiply-add), on the meta device, which
carries shapes but computes nothing. The count does not depend on the data or the seed, so every seed of a
configuration shares it.
"""

from __future__ import annotations

import json
import math
import traceback
from typing import Any

import matplotlib
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ganlab.core import metric_table as MT
from ganlab.core import report as R
from ganlab.core.config import to_dict
from ganlab.core.images import list_images
from ganlab.cyclegan.bench import make_step
from ganlab.cyclegan.config import CycleGANConfig
from ganlab.cyclegan.data import resolve_folders

_STEP_GFLOPS: dict[str, float] = {}  # by the parts of a config that set a step's cost


def _cost_key(cfg: CycleGANConfig) -> str:
    t = cfg.train
    parts = [to_dict(cfg.model), to_dict(cfg.disc), cfg.data.size, t.batch_size, t.cycle_blur, t.augment]
    return json.dumps(parts, sort_keys=True, default=str)


def train_step_gflops(cfg: CycleGANConfig, device: str = "meta") -> float:
    """GFLOPs of one training step of ``cfg`` (cached). Counted on the meta device by default: the same
    operations on shapes only, without computing them (the counter slows a real step many times over);
    ``device="cpu"`` counts a real step."""
    key = _cost_key(cfg) + device
    if key not in _STEP_GFLOPS:
        rng = torch.get_rng_state()  # make_step seeds the global generator; leave it as it was
        try:
            try:
                flops = _count_step(cfg, device)
            except (RuntimeError, NotImplementedError):
                if device != "meta":
                    raise
                flops = _count_step(cfg, "cpu")  # an operation without a meta version: count for real
            _STEP_GFLOPS[key] = flops / 1e9
        finally:
            torch.set_rng_state(rng)
    return _STEP_GFLOPS[key]


def _count_step(cfg: CycleGANConfig, device: str) -> float:
    """FLOPs of one training step on ``device``. On the meta device the step ends at its loss check
    (which must read values): every counted operation, the forward and backward passes, comes before
    it; the optimizers' element-wise updates that follow count no FLOPs."""
    step = make_step(cfg, torch.device(device), "train", "fp32", channels_last=False, batched=False)
    with FlopCounterMode(display=False) as counter:
        try:
            step()
        except RuntimeError as e:
            frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
            if device != "meta" or "check_finite" not in frames:
                raise
    return float(counter.get_total_flops())


def steps_for_gflops(budget_gflops: float, step_gflops: float) -> int:
    """Whole training steps that fit in ``budget_gflops`` (rounded down, so no run spends more than the
    budget; the rest is less than one step). ValueError when not even one step fits."""
    if budget_gflops <= 0 or step_gflops <= 0:
        raise ValueError(f"budget and step cost must be > 0, got {budget_gflops} and {step_gflops}")
    steps = math.floor(budget_gflops / step_gflops + 1e-9)
    if steps < 1:
        raise ValueError(
            f"a budget of {budget_gflops:g} GFLOPs is less than one training step ({step_gflops:.4g} GFLOPs)"
        )
    return steps


def steps_per_epoch(cfg: CycleGANConfig) -> int:
    """Training steps in one epoch of ``cfg``, from the number of training image files (as the trainer
    counts them, before unreadable files are skipped)."""
    fa, fb = resolve_folders(cfg.data)
    counts = [len(list_images(f)) if f.is_dir() else 0 for f in (fa, fb)]
    if cfg.data.max_images:
        counts = [min(n, cfg.data.max_images) for n in counts]
    steps = max(1, -(-max(counts) // cfg.train.batch_size))
    m = cfg.train.max_steps_per_epoch
    return min(steps, m) if m else steps


def spent(steps: int | None, batch_size: int, step_gflops: float | None) -> dict[str, Any]:
    """A run's compute columns: steps, images seen per domain (steps x batch) and training GFLOPs."""
    if steps is None:
        return {"steps": None, "images_seen": None, "train_gflops": None}
    gf = steps * step_gflops if step_gflops is not None else None
    return {"steps": int(steps), "images_seen": int(steps) * batch_size, "train_gflops": gf}


def epoch_points(
    records: list[dict[str, Any]], key: str, step_gflops: float
) -> list[tuple[float, float, int]]:
    """(training GFLOPs, value of ``key``, epoch) at every epoch record of metrics.jsonl that has it."""
    out = []
    for r in records:
        v = r.get(key)
        if r.get("type", "epoch") == "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
            out.append((float(r["step"]) * step_gflops, float(v), int(r["epoch"])))
    return out


def config_curve(seed_points: list[list[tuple[float, float, int]]]) -> list[tuple[float, float, int]]:
    """One configuration's line: at each epoch, the mean compute and the mean value over the seeds
    that reached it, with their count."""
    by_epoch: dict[int, list[tuple[float, float]]] = {}
    for points in seed_points:
        for x, y, epoch in points:
            by_epoch.setdefault(epoch, []).append((x, y))
    return [
        (float(np.mean([x for x, _ in v])), float(np.mean([y for _, y in v])), len(v))
        for _, v in sorted(by_epoch.items())
    ]


def plot_score_vs_compute(
    curves: dict[str, list[tuple[float, float, int]]],
    points: dict[str, list[tuple[float, float]]],
    metric: str,
    baseline: float | None = None,
) -> Any:
    """The score-against-compute figure: a line per configuration through its per-epoch evaluations
    (mean over seeds), a marker per run at its final evaluation, the identity baseline dashed."""
    fig, ax = R.subplots(figsize=(7.5, 4.8))
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, label in enumerate(dict.fromkeys([*curves, *points])):
        c = colors[i % len(colors)]
        line = curves.get(label, [])
        if line:
            ax.plot([x for x, *_ in line], [y for _, y, _ in line], ".-", color=c, alpha=0.8, label=label)
        pts = points.get(label, [])
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], "o", color=c, label=None if line else label)
    if baseline is not None and math.isfinite(baseline):
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="identity")
    ax.set_xlabel("training GFLOPs")
    ax.set_ylabel(MT.label(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
