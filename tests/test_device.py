"""Device and precision selection."""

from __future__ import annotations

import pytest
import torch

from ganlab.core import device as D


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
        ({"avx2", "amx_bf16"}, "bf16"),
        ({"avx2", "avx512f"}, "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(D, "cpu_flags", lambda: frozenset(flags))
    assert D.resolve_precision("auto", torch.device("cpu")) == expected
    assert D.resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_explicit_bf16_without_hardware_warns_once(monkeypatch) -> None:
    monkeypatch.setattr(D, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(D, "_warned", set())
    said: list[str] = []
    assert D.resolve_precision("bf16", torch.device("cpu"), said.append) == "bf16"
    assert D.resolve_precision("bf16", torch.device("cpu"), said.append) == "bf16"
    assert len(said) == 1 and "no native bf16" in said[0]


def test_cpu_flags_reads_this_machine() -> None:
    flags = D.cpu_flags()
    assert isinstance(flags, frozenset)
    if flags:  # Linux x86: every x86-64 CPU has sse2
        assert "sse2" in flags or "fp" in flags or "asimd" in flags


def test_bad_devices_are_device_errors() -> None:
    from ganlab.core.errors import DeviceError

    with pytest.raises(DeviceError, match="unknown device"):
        D.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            D.select_device("cuda")


def test_memory_format_auto_follows_the_isa(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(D, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert D.use_channels_last("auto", cpu)
    monkeypatch.setattr(D, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not D.use_channels_last("auto", cpu)
    assert D.use_channels_last("channels_last", cpu) and not D.use_channels_last("nchw", cpu)


def test_keep_freed_memory_takes_effect_with_glibc() -> None:
    """mallopt rejects values out of glibc's range (returns 0); the settings must be ones it accepts."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc settings: Linux only")
    assert D.keep_freed_memory()
