"""Differentiable augmentation of the discriminators' inputs (Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training", arXiv 2006.10738).

Real and generated images pass through the same random transformations before a discriminator sees
them, and the generators' gradients flow back through the transformation. With a few hundred training
images a discriminator otherwise separates the domains by cues that are not the style (the exact
colours of the particular photos in each domain) and the generators learn those cues instead (a colour
tint). All transforms act on (N, C, H, W) tensors in [-1, 1], independently per image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

AugmentFn = Callable[[torch.Tensor], torch.Tensor]


def _rand(x: torch.Tensor) -> torch.Tensor:
    """One uniform [0, 1) number per image, shaped (N, 1, 1, 1)."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5 on [-1, 1]), saturation (x0 to x2 around the pixel's channel mean) and
    contrast (x0.5 to x1.5 around the image mean)."""
    x = x + (_rand(x) - 0.5)
    gray = x.mean(dim=1, keepdim=True)
    x = gray + (x - gray) * (_rand(x) * 2)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (_rand(x) + 0.5)


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros (mid-grey)."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if sy == 0 and sx == 0:
        return x
    padded = F.pad(x, (sx, sx, sy, sy))
    dy = torch.randint(0, 2 * sy + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * sx + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None]).view(n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None]).view(n, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # Advanced indexing over (batch, rows, cols) is one differentiable gather: (N, H, W, C).
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def channels(x: torch.Tensor) -> torch.Tensor:
    """Permute each image's colour channels at random (one of the 3! orders per image).

    Hue-like cues (which channel is strongest) stop separating the domains, while luminance structure,
    saturation and flatness survive. A discriminator trained on a few photos per domain otherwise keys on
    those photos' palettes (docs/cpu-recipe.md has the measurements)."""
    n, c = x.shape[:2]
    order = torch.argsort(torch.rand(n, c, device=x.device), dim=1)  # (N, C): a random permutation per row
    y = torch.gather(x, 1, order.view(n, c, 1, 1).expand_as(x))  # NCHW whatever x's layout
    # In x's layout: a channels_last discriminator took an NCHW input through its first layers 1.1 ms
    # slower per call (demo, bf16; docs/performance.md).
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last) if cl else y


def rot90(x: torch.Tensor) -> torch.Tensor:
    """Rotate each square image by a random multiple of 90 degrees (exact, no resampling)."""
    n, _, h, w = x.shape
    if h != w:
        raise ValueError(f"rot90 augmentation needs square images, got {h}x{w}")
    k = torch.randint(0, 4, (n,), device=x.device)
    out = x
    for turns in range(1, 4):
        sel = (k == turns).view(n, 1, 1, 1)
        out = torch.where(sel, torch.rot90(x, turns, dims=(2, 3)), out)
    return out


def dequantize(x: torch.Tensor) -> torch.Tensor:
    """Add uniform noise of one 8-bit step (2/255 on [-1, 1]) per value. Real images come from 8-bit
    files and take only 256 levels per channel, generated ones any value: noise of one step makes both
    continuous, so the levels cannot tell them apart."""
    return x + (torch.rand_like(x) - 0.5) * (2.0 / 255.0)


TRANSFORMS: dict[str, AugmentFn] = {
    "dequantize": dequantize,
    "color": color,
    "translation": translation,
    "channels": channels,
    "rot90": rot90,
}


def _parse(entry: str) -> tuple[AugmentFn, float]:
    """``name`` or ``name:p`` (applied to each image with probability p) -> (transform, p)."""
    name, _, prob = entry.partition(":")
    if name not in TRANSFORMS:
        raise ValueError(f"unknown augmentation {name!r}; known: {sorted(TRANSFORMS)} (optionally NAME:P)")
    try:
        p = float(prob) if prob else 1.0
    except ValueError:
        raise ValueError(f"{entry!r}: the probability after ':' must be a number in (0, 1]") from None
    if not 0.0 < p <= 1.0:
        raise ValueError(f"{entry!r}: the probability after ':' must lie in (0, 1]")
    return TRANSFORMS[name], p


def _sometimes(fn: AugmentFn, p: float) -> AugmentFn:
    """``fn`` on a random share ``p`` of the images of each batch, the others unchanged."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.where(_rand(x) < p, fn(x), x)

    return apply


def make_augment(policy: list[str]) -> AugmentFn | None:
    """The composed transform for ``policy`` (entries ``NAME`` or ``NAME:P`` with NAME from
    ``TRANSFORMS``, applied in order, each to every image or to each image with probability P); None if
    the policy is empty."""
    parsed = [_parse(entry) for entry in policy]
    if not parsed:
        return None
    fns = [fn if p == 1.0 else _sometimes(fn, p) for fn, p in parsed]

    def augment(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x

    return augment
