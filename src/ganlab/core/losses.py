"""GAN losses on raw discriminator scores, and the L1 reconstruction terms of CycleGAN."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ganlab.models.blocks import separable_filter

GAN_LOSSES = ("lsgan", "vanilla", "hinge")


def gan_loss(kind: str, pred: torch.Tensor, real: bool, for_discriminator: bool = True) -> torch.Tensor:
    """Loss of scores ``pred`` (any shape) against the label real/fake.

    lsgan: least squares (Mao et al. 2017, arXiv 1611.04076), MSE to 1 or 0.
    vanilla: binary cross-entropy with logits (Goodfellow et al. 2014).
    hinge: D: relu(1 - pred) on real, relu(1 + pred) on fake; G: -pred (Lim & Ye 2017).
    """
    pred = pred.float()
    if kind == "lsgan":
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, 1.0 if real else 0.0))
    if kind == "hinge":
        if not for_discriminator:
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
    raise ValueError(f"unknown gan loss {kind!r}; known: {', '.join(GAN_LOSSES)}")


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a.float(), b.float())


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
