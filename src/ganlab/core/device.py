"""Device, precision and thread selection: the pieces every training and inference path shares."""

from __future__ import annotations

import contextlib
import functools
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ganlab.core.errors import DeviceError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not available is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) are visible"
        )
    if dev.type == "mps" and not _mps_available():
        raise DeviceError(f"device {name!r} requested but MPS is not available; use --device cpu or auto")
    return dev


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def set_threads(threads: int | None) -> None:
    """CPU threads for PyTorch (None keeps its default, one per core)."""
    if threads:
        torch.set_num_threads(threads)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: bf16 dot products on a CPU (AVX512_BF16 or AMX),
    bf16 tensor cores on a GPU. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


_warned: set[str] = set()


def resolve_precision(requested: str, device: torch.device, warn: Callable[[str], None] = print) -> str:
    """``auto`` -> bf16 where the hardware has it, else fp32. An explicit bf16 on a CPU without it is
    honoured but warned about once (emulated bf16 convolutions ran several times slower than fp32 on an
    AVX2-only CPU)."""
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and device.type == "cpu" and not native_bf16(device) and "bf16" not in _warned:
        _warned.add("bf16")
        warn(
            "warning: this CPU has no native bf16 (AVX512_BF16 or AMX): bf16 is emulated and was several "
            "times slower than fp32 on such a machine; --precision auto or fp32 is faster"
        )
    return requested


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward passes; fp32 is a no-op context (``precision`` already resolved)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
