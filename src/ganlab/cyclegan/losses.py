"""CycleGAN's reconstruction terms (cycle and identity): L1 or Huber, optionally between low-pass versions
of both images."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

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


def recon_loss(
    rec: torch.Tensor, real: torch.Tensor, blur_sigma: float = 0.0, huber_beta: float = 0.0
) -> torch.Tensor:
    """Reconstruction loss of the cycle and identity terms: L1 (the reference), or Huber with
    ``huber_beta`` > 0, optionally between low-pass versions of both images. rec, real: (N, C, H, W).

    With ``blur_sigma`` > 0 the term only asks the generators to keep structure coarser than about
    sigma px. The exact (unblurred) cycle makes a generator that must discard fine texture (a flat-shaded
    style) hide it instead, as a faint high-frequency code its inverse can decode (Chu et al. 2017,
    "CycleGAN, a Master of Steganography", arXiv 1712.02950); with a low-pass cycle there is nothing to
    hide.

    Huber (smooth L1): quadratic for per-pixel errors below ``huber_beta`` (in the images' [-1, 1] units),
    L1 above, with the same slope for large errors. Why: L1's gradient has full size at any non-zero
    error, so a generator that starts as the identity (``model.global_skip``) is held there: every
    pixel it changes costs the cycle weight's full slope at once, more than a young discriminator's push.
    With Huber a small change costs almost nothing, and the generators move toward the style from the
    first steps (docs/cpu-recipe.md)."""
    a, b = gaussian_blur(rec.float(), blur_sigma), gaussian_blur(real.float(), blur_sigma)
    if huber_beta > 0:
        return F.smooth_l1_loss(a, b, beta=huber_beta)
    return l1(a, b)


def tint_loss(out: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """How far a translation moves each image's mean colour off grey's axis: L1 of the change in the
    per-image channel means, (N, 3), less its own mean over the channels. out, inp: (N, 3, H, W).

    Zero for any change that keeps each image's average hue (local edits, darker outlines, a brighter or
    darker image), so it does not fight a style that redraws the picture; it charges a cast of the
    whole image (the blue tint of the documented runs), which the cycle term cannot see: the other
    generator learns to undo the cast, and a colour-blind discriminator does not object to it."""
    d = out.float().mean((2, 3)) - inp.float().mean((2, 3))  # (N, 3)
    return (d - d.mean(1, keepdim=True)).abs().mean()
