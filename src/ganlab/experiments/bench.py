"""``ganlab bench``: how fast a task's training step or inference runs on this machine, as a share of
the machine's measured convolution peak, and (``baseline``) against the same step written the plain way,
timed in the same process, interleaved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganlab.core import bench as B
from ganlab.core.config import merge, parse_set
from ganlab.core.device import (
    keep_freed_memory,
    peak_memory_mb,
    resolve_precision,
    select_device,
    set_threads,
)
from ganlab.cyclegan import bench as cyclegan_bench
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.step import fast_settings as cyclegan_fast
from ganlab.models.registry import get_preset
from ganlab.sr import bench as sr_bench
from ganlab.sr.config import build_sr_config
from ganlab.sr.step import fast_settings as sr_fast

TASKS = {
    "cyclegan": (build_cyclegan_config, cyclegan_bench.make_step, cyclegan_fast),
    "sr": (build_sr_config, sr_bench.make_step, sr_fast),
}


def run_bench(
    task: str = "cyclegan",
    preset: str | None = None,
    size: int | None = None,
    batch_size: int | None = None,
    mode: str = "train",
    config_files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    baseline: bool = False,
    repeats: int = 5,
    device: str = "auto",
    ops: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark one step; returns the numbers ``ganlab bench --json`` prints. Unset arguments come from
    the config (preset and files), so ``config_files`` benchmarks any recipe as it would train. ``ops``:
    also list the step's slowest ``ops`` aten ops (:func:`ganlab.core.bench.op_times`)."""
    if preset is not None and task == "cyclegan" and get_preset(preset).task == "sr":
        task = "sr"
    build, make_step, fast_settings = TASKS[task]
    flags = {"data.size": size, "train.batch_size": batch_size, "train.precision": precision}
    # The loss-weight schedule does not change a step's cost; epochs keeps a budget-scheduled recipe valid.
    fixed = [f"train.device={device}"] + (["train.schedule_by=epochs"] if task == "cyclegan" else [])
    layer = parse_set([f"{k}={v}" for k, v in flags.items() if v is not None] + fixed)
    cfg = build(preset=preset, files=config_files, overrides=merge(overrides or {}, layer))
    dev = select_device(cfg.train.device)
    set_threads(cfg.train.threads)  # as the trainers do
    keep_freed_memory()
    prec = resolve_precision(cfg.train.precision, dev, log)
    fast = fast_settings(cfg, dev)
    if channels_last is not None:
        fast["channels_last"] = channels_last
    step = make_step(cfg, dev, mode, prec, fast["channels_last"], fast["batch_g"], compile=compile)
    first_s = B.time_calls({"first": step}, 1, dev)["first"][0]  # warm-up (and compilation)
    step()
    memory = peak_memory_mb(dev)
    # The work is the model's as defined (on the plain layers), whatever a rewrite multiplies (NarrowConv2d:
    # more, by zero; the resize-conv's phase form: fewer); what the fast path executes is reported beside.
    plain = make_step(cfg, dev, mode, "fp32", False, False, plain=True)
    flops = B.count_flops(plain)
    executed = B.count_flops(step)
    fns = {"fast": step}
    if baseline:
        plain()
        fns["plain"] = plain
    # The step, its plain form and the peak's convolution in turn, so that the ratios hold on a busy machine.
    peak = B.conv_peak(dev, prec, train=mode == "train", repeats=repeats, alongside=fns)
    times = peak["times"]
    seconds = B.median(times["fast"])  # of the rounds; _spread gives their range
    out: dict[str, Any] = {
        "task": task,
        "preset": cfg.preset,
        "mode": mode,
        "size": cfg.data.size,
        "batch_size": cfg.train.batch_size,
        "seconds_per_step": seconds,
        "images_per_s": cfg.train.batch_size / seconds,
        "gflop_per_step": flops / 1e9,
        "gflop_executed_per_step": executed / 1e9,
        "gflops_per_s": flops / seconds / 1e9,
        "peak_gflops_per_s": peak["peak_gflops_per_s"],
        "peak_layout": peak["peak_layout"],
        "peak_fraction": flops / seconds / 1e9 / peak["peak_gflops_per_s"],
        "peak_memory_mb": memory,
        "precision": prec,
        "channels_last": fast["channels_last"],
        "batched_passes": bool(fast["batch_g"]) and mode == "train",
        "compiled": compile,
        "first_step_seconds": first_s,
        "repeats": repeats,
        **B.machine_info(dev),
        **_spread(times, peak, flops),  # and, with the baseline, its time and the speedup
    }
    if ops > 0:
        out["ops"] = B.op_times(step, dev)[:ops]
    return out


def _spread(times: dict[str, list[float]], peak: dict[str, Any], flops: float) -> dict[str, Any]:
    """[min, max] over the interleaved rounds, each figure from one round's own calls (its step against
    its peak and its plain step): how large a difference between two benchmarks the noise can make.
    With the plain path's times, also its median, the speedup (the ratio of the medians) and the speedup
    a step at the full conv peak would have: the ceiling of the ratio on this machine."""
    fast = times["fast"]
    fractions = [flops / t / 1e9 / p for t, p in zip(fast, peak["by_repeat"])]
    out = {
        "seconds_per_step_range": [min(fast), max(fast)],
        "peak_fraction_range": [min(fractions), max(fractions)],
    }
    if "plain" in times:
        out["baseline_seconds_per_step"] = B.median(times["plain"])
        out["speedup"] = out["baseline_seconds_per_step"] / B.median(fast)
        ratios = [p / f for p, f in zip(times["plain"], fast)]
        out["speedup_range"] = [min(ratios), max(ratios)]
        out["speedup_at_peak"] = peak["peak_gflops_per_s"] / (flops / 1e9 / out["baseline_seconds_per_step"])
    return out


def format_bench(r: dict[str, Any]) -> str:
    """The human-readable summary of :func:`run_bench`'s result."""
    ran = r.get("gflop_executed_per_step", r["gflop_per_step"])
    executed = f" ({ran:.1f} executed)" if abs(ran - r["gflop_per_step"]) > 0.01 * r["gflop_per_step"] else ""

    def spread(key: str, fmt: str, pre: str, post: str) -> str:  # "" after a single round
        lo, hi = r.get(key, (0.0, 0.0))
        return f"{pre}{fmt.format(lo)}-{fmt.format(hi)}{post}" if r["repeats"] > 1 and key in r else ""

    rounds = f" over {r['repeats']} rounds)"
    lines = [
        f"{r['task']} {r['preset']} {r['mode']}, {r['size']} px, batch {r['batch_size']}: "
        f"{r['seconds_per_step']:.3f} s/step{spread('seconds_per_step_range', '{:.3f}', ' (', rounds)}, "
        f"{r['images_per_s']:.2f} images/s",
        f"  {r['gflop_per_step']:.1f} GFLOP/step{executed} = {r['gflops_per_s']:.0f} GFLOP/s, "
        f"{100 * r['peak_fraction']:.0f}% of this machine's {r['precision']} conv peak "
        f"({r['peak_gflops_per_s']:.0f} GFLOP/s, {r['peak_layout']}"
        f"{spread('peak_fraction_range', '{:.0%}', '; ', ' by round')})",
        f"  {r['precision']}, channels_last {r['channels_last']}, batched passes {r['batched_passes']}, "
        f"compiled {r['compiled']} (first step {r['first_step_seconds']:.2f} s); peak memory "
        f"{r['peak_memory_mb']:.0f} MB",
        f"  machine: {r['cpu']} [{' '.join(r['cpu_flags'])}], {r['cores']} cores, {r['threads']} threads"
        + (f", GPU {r['gpu']}" if "gpu" in r else ""),
    ]
    if "speedup" in r:
        lines.append(
            f"  plain path (fp32, NCHW, eager, separate passes, losses read each step): "
            f"{r['baseline_seconds_per_step']:.3f} s/step; speedup {r['speedup']:.2f}x"
            f"{spread('speedup_range', '{:.2f}x', ' (', ' by round)')}; at the full conv peak "
            f"{r['speedup_at_peak']:.2f}x"
        )
    if r.get("ops"):
        lines.append("  slowest ops (each timed alone; ms per step, calls per step, share of the ops' time):")
        lines += [
            f"    {o['op']:<32} {o['ms_per_step']:9.2f} ms {o['calls_per_step']:7.1f} {100 * o['share']:5.1f}%"
            for o in r["ops"]
        ]
    return "\n".join(lines)
