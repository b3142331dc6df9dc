"""Device, precision and thread selection: the pieces every training and inference path shares."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import resource
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the system. A
    training step frees and allocates the same activation buffers every step; handed back, each 4 KB page
    costs a page fault when it is touched again (4,500 faults per demo step, 59,000 per resnet9 step on
    the development machine). Linux with glibc only; returns whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    # Blocks up to 32 MB (glibc's upper limit) from the heap, not mmap; keep up to 1 GB free at its top.
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))


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


def use_channels_last(requested: str, device: torch.device) -> bool:
    """Resolve ``train.memory_format``: auto is channels_last on CUDA and on CPUs with AVX-512, NCHW
    elsewhere (with the ISA limited to AVX2, one network measured faster in NCHW, another in
    channels_last; docs/performance.md)."""
    if requested != "auto":
        return requested == "channels_last"
    return device.type == "cuda" or (device.type == "cpu" and "avx512f" in cpu_flags())


_warned: set[str] = set()


def resolve_precision(requested: str, device: torch.device, warn: Callable[[str], None] = print) -> str:
    """``auto`` -> bf16 where the hardware has it; on a GPU without bf16 (e.g. T4, V100) fp16 with loss
    scaling (:class:`Amp`); else fp32. An explicit bf16 or fp16 on a CPU without native support is
    honoured but warned about once (emulated bf16 convolutions ran several times slower than fp32 on an
    AVX2-only CPU)."""
    if requested == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if requested in ("bf16", "fp16") and device.type == "cpu" and requested not in _warned:
        if requested == "fp16" or not native_bf16(device):
            _warned.add(requested)
            warn(
                f"warning: {requested} on this CPU is emulated (no native {requested} dot products): it was "
                "several times slower than fp32 on such a machine; --precision auto or fp32 is faster"
            )
    return requested


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 or fp16 autocast for the forward passes; fp32 is a no-op context (``precision`` resolved)."""
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Amp:
    """Mixed precision, applied to a training step from outside it. ``amp()`` is the autocast context of
    the forward passes; ``backward``, ``unscale`` and ``step`` go through a GradScaler in fp16 (whose range
    is too narrow for small gradients without loss scaling) and are the plain calls otherwise. Several
    losses and optimizers per step are fine: scale each backward, step each optimizer, then one update.
    """

    def __init__(self, device: torch.device, precision: str) -> None:
        self.device, self.precision = device, precision
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    @classmethod
    def of(cls, amp: Amp | Callable[[], Any]) -> Amp:
        """An :class:`Amp` as it is, or a bare autocast factory (``lambda: ctx``) as an Amp without scaling."""
        return amp if isinstance(amp, Amp) else _Wrapped(amp)

    def __call__(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """True gradients in ``opt``'s parameters (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opts: Iterable[torch.optim.Optimizer]) -> None:
        """Step every optimizer (in fp16 one whose gradients overflowed skips the step), then adapt the scale."""
        for opt in opts:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The loss scale and its growth counter, for an exact resume (nothing outside fp16)."""
        if self.scaler is None or not self.scaler.is_enabled():
            return {}
        s = self.scaler.state_dict()
        return {
            "amp/scale": torch.tensor(float(s["scale"]), dtype=torch.float64),
            "amp/growth_tracker": torch.tensor(int(s["_growth_tracker"]), dtype=torch.int64),
        }

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors` (a checkpoint without them keeps the fresh scale)."""
        if self.scaler is not None and "amp/scale" in tensors:
            scale, tracker = float(tensors["amp/scale"]), int(tensors["amp/growth_tracker"])
            self.scaler.load_state_dict({**_SCALER_DEFAULTS, "scale": scale, "_growth_tracker": tracker})


# GradScaler's settings (its state dict holds them beside the scale); ours are torch's defaults.
_SCALER_DEFAULTS = {"growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000}


class _Wrapped(Amp):
    """A bare autocast factory as an :class:`Amp` without loss scaling (tests and benchmarks pass these)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        super().__init__(torch.device("cpu"), "fp32")
        self.factory = factory

    def __call__(self) -> contextlib.AbstractContextManager:
        return self.factory()


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
