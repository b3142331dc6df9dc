"""Device, precision and thread selection: the pieces every training and inference path shares."""

from __future__ import annotations

import contextlib
import resource
import sys

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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward passes; fp32 is a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
