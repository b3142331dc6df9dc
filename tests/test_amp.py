"""fp16 with loss scaling (for GPUs without bf16): precision choice, the scaled step, and its resume state.
Run on the CPU, whose autocast and GradScaler take fp16 too."""

from __future__ import annotations

import copy

import pytest
import torch

from ganlab.core import device as D
from ganlab.core.device import Amp
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.step import build_optimizers, train_step
from tests.test_step import _tiny

CPU = torch.device("cpu")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_a_gpu_picks_bf16_else_fp16(monkeypatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(D, "native_bf16", lambda device: bf16)
    assert D.resolve_precision("auto", torch.device("cuda")) == expected


def test_auto_on_a_cpu_never_picks_fp16(monkeypatch) -> None:
    monkeypatch.setattr(D, "cpu_flags", lambda: frozenset({"avx2"}))
    assert D.resolve_precision("auto", CPU) == "fp32"


def test_explicit_fp16_on_a_cpu_warns_once(monkeypatch) -> None:
    monkeypatch.setattr(D, "_warned", set())
    said: list[str] = []
    for _ in range(2):
        assert D.resolve_precision("fp16", CPU, said.append) == "fp16"
    assert len(said) == 1 and "fp16" in said[0]


def _cyclegan_step(models, amp) -> dict[str, torch.Tensor]:
    cfg = _tiny()[0]
    opts = build_optimizers(models, cfg.train)
    pools = {k: ImagePool(0) for k in ("D_A", "D_B")}
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1 for _ in range(2))
    return train_step(models, opts, a, b, cfg.train.schedule[0], "lsgan", pools, amp)


def test_fp16_step_matches_fp32_losses_and_updates_once_the_scale_fits() -> None:
    _, fp32 = _tiny()
    fp16 = copy.deepcopy(fp32)
    amp = Amp(CPU, "fp16")
    losses_32 = _cyclegan_step(fp32, Amp(CPU, "fp32"))
    losses_16 = _cyclegan_step(fp16, amp)
    for k in losses_32:
        assert float(losses_16[k]) == pytest.approx(float(losses_32[k]), rel=0.05, abs=1e-2), k
    # GradScaler starts at 2^16 and halves after every step whose scaled gradients overflow fp16 (that
    # step is skipped); within a few steps every network's optimizer applies its update.
    for _ in range(20):
        before = copy.deepcopy(fp16)
        _cyclegan_step(fp16, amp)
        if all(
            not torch.equal(p, q) for p, q in zip(before.parameters(), fp16.parameters()) if p.numel() > 8
        ):
            break
    else:
        pytest.fail(f"no full fp16 update in 20 steps (scale {amp.scaler.get_scale()})")
    assert 1.0 <= amp.scaler.get_scale() <= 65536.0


def test_scale_survives_a_checkpoint() -> None:
    amp = Amp(CPU, "fp16")
    _, models = _tiny()
    for _ in range(2):
        _cyclegan_step(models, amp)
    state = amp.state_tensors()
    assert set(state) == {"amp/scale", "amp/growth_tracker"}
    fresh = Amp(CPU, "fp16")
    fresh.load_state(state)
    assert fresh.scaler.get_scale() == amp.scaler.get_scale()
    assert fresh.scaler.state_dict()["_growth_tracker"] == amp.scaler.state_dict()["_growth_tracker"]
    assert Amp(CPU, "bf16").state_tensors() == {}  # nothing to save outside fp16


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_backs_off() -> None:
    amp = Amp(CPU, "fp16")
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    scale = amp.scaler.get_scale()
    amp.backward((w * torch.tensor([1.0, float("inf"), 1.0])).sum())
    amp.step([opt])
    assert torch.equal(w.detach(), torch.ones(3))  # not applied
    assert amp.scaler.get_scale() == scale * 0.5
