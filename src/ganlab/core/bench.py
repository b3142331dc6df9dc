"""Benchmark machinery that knows no task: the machine, a timer, a FLOP counter and the machine's
measured convolution peak, so a step's speed can be stated as a share of what the hardware does.

A "step" here is any zero-argument callable (one training update, one inference batch); the tasks
build them (``ganlab.cyclegan.bench``, ``ganlab.sr.bench``).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ganlab.core.device import autocast, cpu_flags

# The CPU features that decide convolution speed.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model and the ISA flags that matter, cores and PyTorch threads, the GPU when there is one."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": [f for f in ISA_FLAGS if f in flags],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn (A B A B ...) so a machine whose speed drifts
    (other load, clocks) affects all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call (2 per multiply-add, backward passes included; torch.utils.flop_counter)."""
    with FlopCounterMode(display=False) as counter, warnings.catch_warnings():
        # The counter's module hooks make torch.compile warn that they fire twice; it counts aten ops,
        # not hook calls, so the total is unaffected.
        warnings.filterwarnings(
            "ignore", message=r"Using `torch.compile\(module\)` when there are global hooks"
        )
        fn()
    return float(counter.get_total_flops())


class _OpTimer(TorchDispatchMode):
    """Wall time of each aten op, one op at a time (synchronising a GPU around each)."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        synchronize(self.device)
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        synchronize(self.device)
        name = func.overloadpacket.__name__
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        self.calls[name] = self.calls.get(name, 0) + 1
        return out


def op_times(fn: Callable[[], Any], device: torch.device, steps: int = 2) -> list[dict[str, Any]]:
    """Where a step's time goes: the wall milliseconds per step of each aten op (convolution,
    convolution_backward, native_group_norm, ...) over ``steps`` calls of ``fn``, slowest first, with its
    calls per step and its share of the ops' total. Each op is timed alone around its kernel:
    torch.profiler's per-op overhead made the small ops of a CPU step look 3-10x slower than they ran
    (docs/performance.md)."""
    timer = _OpTimer(device)
    with timer:
        for _ in range(steps):
            fn()
    total = sum(timer.seconds.values()) or 1.0
    rows = [
        {
            "op": k,
            "ms_per_step": 1e3 * v / steps,
            "calls_per_step": timer.calls[k] / steps,
            "share": v / total,
        }
        for k, v in timer.seconds.items()
    ]
    return sorted(rows, key=lambda r: -r["ms_per_step"])


# The peak's reference: a 3x3 convolution with this many channels on a (batch, channels, size, size) input.
PEAK_CONV = (4, 256, 64)


def peak_calls(
    device: torch.device, precision: str, train: bool
) -> dict[str, tuple[Callable[[], None], float]]:
    """The peak's convolution (forward, or forward + backward when ``train``) in both memory layouts:
    {layout: (a zero-argument call, its FLOPs)}, warmed up."""
    b, c, s = PEAK_CONV
    out: dict[str, tuple[Callable[[], None], float]] = {}
    for layout in ("nchw", "channels_last"):
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(device)
        x = torch.randn(b, c, s, s, device=device, requires_grad=train)
        if layout == "channels_last":
            conv = conv.to(memory_format=torch.channels_last)
            x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(train)

        def call(conv: nn.Module = conv, x: torch.Tensor = x) -> None:
            with autocast(device, precision):
                y = conv(x)
            if train:
                y.float().sum().backward()

        call()
        out[layout] = (call, count_flops(call))
    return out


def conv_peak(
    device: torch.device,
    precision: str,
    train: bool,
    repeats: int = 5,
    alongside: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """The machine's convolution throughput at ``precision`` (:func:`peak_calls`); the faster layout is
    the peak a model's step is measured against. ``alongside``: calls timed in turn with the peak's
    (step, plain step, peak, step, ...), so that load or clocks that drift during a benchmark slow the
    step and its peak alike; their seconds per call are returned under "times"."""
    calls = peak_calls(device, precision, train)
    fns = {**(alongside or {}), **{f"peak {k}": call for k, (call, _) in calls.items()}}
    times = time_calls(fns, repeats, device)
    rates = {k: flops / median(times[f"peak {k}"]) / 1e9 for k, (_, flops) in calls.items()}
    best = max(rates, key=lambda k: rates[k])
    return {
        "peak_gflops_per_s": rates[best],
        "peak_layout": best,
        "by_layout": rates,
        # The best layout's rate in each round, to pair with the calls timed beside it in that round.
        "by_repeat": [calls[best][1] / t / 1e9 for t in times[f"peak {best}"]],
        "times": {k: times[k] for k in alongside or {}},
    }
