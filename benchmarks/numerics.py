"""Numerics of the fast path: a training run in the precision and memory layout `auto` picks against two fp32 NCHW runs with
different seeds, same recipe and data. Prints, per loss term, the share of logged steps at which the fast
run's smoothed loss lies inside the band the two fp32 runs span (widened by their own spread), and the
mean losses of the last quarter. Usage:

    python benchmarks/numerics.py --data data/demo --steps 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from ganlab.core.device import native_bf16, resolve_precision
from ganlab.core.rundir import read_metrics
from ganlab.cyclegan.demo.run import demo_recipe
from ganlab.cyclegan.trainer import train

TERMS = ("G_total", "cycle_A", "idt_A", "G_gan_A2B", "D_A", "D_B")


def run(
    data: str, out: Path, steps: int, seed: int, precision: str, memory_format: str = "auto"
) -> dict[str, np.ndarray]:
    recipe = demo_recipe()
    recipe.pop("preset")
    recipe["train"].update(
        # Epochs of 40 steps (the demo's), as many as make ``steps``; the lr stays constant.
        schedule_by="epochs",
        epochs=-(-steps // 40),
        epochs_decay=0,
        max_steps_per_epoch=40,
        log_every=1,
        eval_images=0,
        samples=1,
        seed=seed,
        precision=precision,
        memory_format=memory_format,
    )
    recipe["data"]["root"] = data
    train(preset="model2", overrides=recipe, out=out, log=lambda s: None, progress=False)
    recs = read_metrics(out, "step")
    return {k: np.array([r[k] for r in recs]) for k in TERMS}


def smooth(x: np.ndarray, w: int = 20) -> np.ndarray:
    return np.convolve(x, np.ones(w) / w, mode="valid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    import torch

    fast = resolve_precision("auto", torch.device("cpu"))
    print(f"fast path precision here: {fast} (native bf16: {native_bf16(torch.device('cpu'))})")
    with tempfile.TemporaryDirectory() as tmp:
        # The reference: the plain layout (NCHW) in fp32; the fast run: what auto picks for both.
        a = run(args.data, Path(tmp) / "fp32_s0", args.steps, 0, "fp32", "nchw")
        b = run(args.data, Path(tmp) / "fp32_s1", args.steps, 1, "fp32", "nchw")
        f = run(args.data, Path(tmp) / "fast_s0", args.steps, 0, fast)
    result = {}
    for k in TERMS:
        sa, sb, sf = smooth(a[k]), smooth(b[k]), smooth(f[k])
        spread = np.abs(sa - sb)
        lo, hi = np.minimum(sa, sb) - spread, np.maximum(sa, sb) + spread
        inside = float(np.mean((sf >= lo) & (sf <= hi)))
        q = len(a[k]) // 4
        result[k] = {
            "inside_band": inside,
            "last_quarter_fp32_s0": float(a[k][-q:].mean()),
            "last_quarter_fp32_s1": float(b[k][-q:].mean()),
            "last_quarter_fast": float(f[k][-q:].mean()),
        }
        r = result[k]
        print(
            f"{k:10s} inside the fp32 band at {100 * inside:5.1f}% of steps; last quarter: fp32 "
            f"{r['last_quarter_fp32_s0']:.4f} / {r['last_quarter_fp32_s1']:.4f}, {fast} {r['last_quarter_fast']:.4f}"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
