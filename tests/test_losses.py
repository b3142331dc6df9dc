"""The reconstruction losses: the Gaussian low-pass and the (optionally low-pass) cycle term."""

from __future__ import annotations

import pytest
import torch

from ganlab.core.losses import l1
from ganlab.cyclegan.losses import gaussian_blur, recon_loss, tint_loss


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
    assert float(recon_loss(texture, real)) == pytest.approx(0.2, abs=1e-5)
    assert float(recon_loss(shifted, real)) == pytest.approx(0.2, abs=1e-5)
    assert float(recon_loss(texture, real, 2.0)) < 0.01
    assert float(recon_loss(shifted, real, 2.0)) == pytest.approx(0.2, abs=1e-4)
    assert torch.equal(recon_loss(texture, real), l1(texture, real))
    # Gradients reach the reconstruction through the blur.
    rec = texture.clone().requires_grad_(True)
    recon_loss(rec, real, 1.0).backward()
    assert rec.grad is not None and rec.grad.abs().sum() > 0


def test_huber_reconstruction_makes_small_changes_cheap_and_keeps_the_l1_slope_for_large_ones() -> None:
    torch.manual_seed(0)
    real = torch.rand(1, 3, 16, 16) * 2 - 1
    beta = 0.1
    small = real + 0.01  # inside the quadratic zone
    large = real + 0.5  # outside it
    # 0 is plain L1, exactly.
    assert torch.equal(recon_loss(small, real, 0.0, 0.0), l1(small, real))
    # Quadratic inside: 0.5 * e^2 / beta, a tenth of L1's 0.01 here.
    assert float(recon_loss(small, real, 0.0, beta)) == pytest.approx(0.5 * 0.01**2 / beta, rel=1e-4)
    # Linear outside, L1 minus beta / 2.
    assert float(recon_loss(large, real, 0.0, beta)) == pytest.approx(0.5 - beta / 2, rel=1e-5)
    # The gradient of a tiny change is proportional to it (L1: full slope whatever its size).
    for e in (1e-3, 1e-2):
        rec = (real + e).requires_grad_(True)
        recon_loss(rec, real, 0.0, beta).backward()
        assert float(rec.grad.abs().mean()) * real.numel() == pytest.approx(e / beta, rel=1e-3)
    # Blur and Huber combine: a fine checker is invisible to the low-pass Huber term too.
    assert float(recon_loss(real + _checker(real.shape, 0.2), real, 2.0, beta)) < 1e-3


def test_tint_term_charges_a_colour_cast_and_nothing_that_keeps_the_mean_hue() -> None:
    torch.manual_seed(0)
    inp = torch.rand(2, 3, 16, 16) * 2 - 1
    # Brighter or darker as a whole, or redrawn locally with the same mean colour: free.
    assert float(tint_loss(inp + 0.3, inp)) < 1e-6
    assert float(tint_loss(inp.flip(-1).roll(5, -2), inp)) < 1e-6
    local = inp.clone()
    local[:, :, 4:8, 4:8] += 0.5
    local[:, :, 10:14, 10:14] -= 0.5
    assert float(tint_loss(local, inp)) < 1e-6
    # A blue cast of c: the mean change (0, 0, c) less its grey part (c/3 each) -> mean |.| = 4c/9.
    cast = inp.clone()
    cast[:, 2] += 0.09
    assert float(tint_loss(cast, inp)) == pytest.approx(4 * 0.09 / 9, rel=1e-4)
    # Only the cast of the image where it happens counts: one image of two, half the term.
    one = inp.clone()
    one[0, 2] += 0.09
    assert float(tint_loss(one, inp)) == pytest.approx(2 * 0.09 / 9, rel=1e-4)
    # Its gradient pushes the cast back, uniformly over the pixels of the cast image.
    out = cast.clone().requires_grad_(True)
    tint_loss(out, inp).backward()
    assert out.grad is not None and float(out.grad[:, 2].mean()) > 0
    assert torch.allclose(out.grad[0, 2], out.grad[0, 2, 0, 0].expand(16, 16))
