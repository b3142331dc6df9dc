"""CycleGAN's cycle-consistency term, optionally between low-pass versions of both images."""

from __future__ import annotations

import functools
import math

import torch

from ganlab.core.losses import l1
from ganlab.models.blocks import separable_filter


@functools.lru_cache(maxsize=16)
def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian, radius ceil(3 sigma); cached, since the training step asks for the same
    one four times per step."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    k = torch.exp(-(t * t) / (2 * sigma * sigma))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with std ``sigma`` px (kernel radius ceil(3 sigma)),
    reflect-padded so the borders are not darkened; sigma <= 0 returns x."""
    if sigma <= 0:
        return x
    return separable_filter(x, _gaussian_kernel(float(sigma), x.device))


def cycle_l1(rec: torch.Tensor, real: torch.Tensor, blur_sigma: float = 0.0) -> torch.Tensor:
    """L1 cycle-consistency loss, optionally between low-pass versions of both images.

    With ``blur_sigma`` > 0 the cycle only asks the generators to keep structure coarser than about
    sigma px. The exact (unblurred) cycle makes a generator that must discard fine texture (a flat-shaded
    style) hide it instead, as a faint high-frequency code its inverse can decode (Chu et al. 2017,
    "CycleGAN, a Master of Steganography", arXiv 1712.02950); with a low-pass cycle there is nothing to
    hide."""
    return l1(gaussian_blur(rec.float(), blur_sigma), gaussian_blur(real.float(), blur_sigma))
