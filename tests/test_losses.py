"""The reconstruction losses: the Gaussian low-pass and the (optionally low-pass) cycle term."""

from __future__ import annotations

import pytest
import torch

from ganlab.core.losses import l1
from ganlab.cyclegan.losses import cycle_l1, gaussian_blur


def _checker(shape: tuple[int, ...], amp: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(shape[-2]), torch.arange(shape[-1]), indexing="ij")
    return amp * (((yy + xx) % 2) * 2 - 1).float().expand(shape)


def test_blur_keeps_constants_and_means_and_removes_fine_texture() -> None:
    torch.manual_seed(0)
    const = torch.full((1, 3, 16, 20), 0.3)
    assert torch.allclose(gaussian_blur(const, 1.5), const, atol=1e-6)
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape
    # Interior mean barely moves (borders are reflected, not zero-filled).
    assert abs(float(y.mean() - x.mean())) < 0.01
    assert float(gaussian_blur(_checker((1, 3, 24, 24), 1.0), 1.5).abs().max()) < 0.01
    # Tiny images (smaller than the kernel) still work.
    assert gaussian_blur(torch.rand(1, 3, 3, 3), 2.0).shape == (1, 3, 3, 3)


def test_low_pass_cycle_ignores_fine_texture_but_not_structure() -> None:
    torch.manual_seed(0)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    texture = real + _checker(real.shape, 0.2)
    shifted = real + 0.2
    # The exact cycle charges both changes alike; the low-pass cycle only the coarse one.
    assert float(cycle_l1(texture, real)) == pytest.approx(0.2, abs=1e-5)
    assert float(cycle_l1(shifted, real)) == pytest.approx(0.2, abs=1e-5)
    assert float(cycle_l1(texture, real, 2.0)) < 0.01
    assert float(cycle_l1(shifted, real, 2.0)) == pytest.approx(0.2, abs=1e-4)
    assert torch.equal(cycle_l1(texture, real), l1(texture, real))
    # Gradients reach the reconstruction through the blur.
    rec = texture.clone().requires_grad_(True)
    cycle_l1(rec, real, 1.0).backward()
    assert rec.grad is not None and rec.grad.abs().sum() > 0
