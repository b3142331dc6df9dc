"""Super-resolution data: HR images in memory, LR made on the fly by antialiased bicubic downscaling,
random aligned HR/LR crops with flips and 90-degree rotations, deterministic per (seed, epoch, step).

Conventions: images are float tensors in [0, 1], (3, H, W) or (N, 3, H, W). The *one* resampling
function is :func:`bicubic_resize` (torch ``interpolate(mode="bicubic", antialias=True)``: the
Keys a = -0.5 kernel, widened by the scale factor when downscaling, i.e. the same filter as PIL's
``Image.BICUBIC`` and MATLAB's ``imresize``). Training LR, evaluation LR and the bicubic baseline all go
through it, and LR images are rounded to 8 bits like the LR files a user would feed the model.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganlab.core.errors import DataError, require
from ganlab.core.images import ImageReadError, list_images, read_rgb
from ganlab.core.photos import offline_photos, split_photos

# --------------------------------------------------------------------------------------- resampling


def bicubic_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) or (C, H, W) float -> same layout at ``size`` = (h, w); antialiased bicubic, unclamped."""
    batched = x.dim() == 4
    y = F.interpolate(
        x if batched else x[None], size=size, mode="bicubic", align_corners=False, antialias=True
    )
    return y if batched else y[0]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (what saving as PNG and reading back does)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """HR (.., H, W) with H, W multiples of ``scale`` -> 8-bit-rounded LR (.., H/scale, W/scale)."""
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {scale}")
    return quantize(bicubic_resize(hr, (h // scale, w // scale)))


def upscale_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: LR (.., h, w) -> (.., scale*h, scale*w), clamped to [0, 1]."""
    h, w = lr.shape[-2:]
    return bicubic_resize(lr, (h * scale, w * scale)).clamp(0.0, 1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def center_crop(x: torch.Tensor, max_side: int, multiple: int) -> torch.Tensor:
    """Centre crop of (.., H, W) to at most ``max_side`` per side, each side a multiple of ``multiple``."""
    h, w = x.shape[-2:]
    ch, cw = (min(h, max_side) // multiple) * multiple, (min(w, max_side) // multiple) * multiple
    if ch == 0 or cw == 0:
        raise DataError(f"image of {h}x{w} is smaller than the scale {multiple}")
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return x[..., y0 : y0 + ch, x0 : x0 + cw]


# ------------------------------------------------------------------------------------------ sources


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass
class SRImage:
    """One decoded image kept in memory as uint8 (3, H, W) (4x smaller than float)."""

    name: str
    pixels: torch.Tensor

    def float(self) -> torch.Tensor:
        return self.pixels.float() / 255.0


def _from_array(name: str, a: np.ndarray) -> SRImage:
    """float RGB array in [0, 1], (H, W, 3) -> SRImage."""
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float32).transpose(2, 0, 1)))
    return SRImage(name, to_uint8(t))


def read_folder(
    folder: str | Path, limit: int | None = None, warn: Callable[[str], None] = _stderr
) -> list[SRImage]:
    """Every image under ``folder`` (recursive, sorted), read as RGB; a file that is not a usable image
    is skipped with one ``warn`` line naming it and the reason."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    paths = list_images(folder)[:limit] if limit else list_images(folder)
    if not paths:
        raise DataError(f"no images found under {folder}")
    out = []
    for p in paths:
        try:
            a = np.asarray(read_rgb(p), dtype=np.float32) / 255.0
        except ImageReadError as e:
            warn(f"warning: skipping {e}")
            continue
        out.append(_from_array(str(p.relative_to(folder)), a))
    if not out:
        raise DataError(f"no usable images under {folder} ({len(paths)} unreadable)")
    return out


@functools.lru_cache(maxsize=8)
def _builtin_split(split: str, seed: int, max_side: int | None) -> tuple[SRImage, ...]:
    # Decoding the offline photos (up to 5K wallpapers) takes seconds; cache per process and split.
    try:
        parts = split_photos(offline_photos(), seed)
    except ValueError as e:  # too few photos: scikit-image (the demo extra) brings most of them
        require("skimage", "the built-in SR photos", "demo")
        raise DataError(f"the built-in photos cannot be split: {e}; pass --data DIR") from None
    photos = parts["train_a"] + parts["train_b"] if split == "train" else parts["test"]
    out = []
    for p in photos:
        try:
            out.append(_from_array(p.name, p.load(max_side)))
        except ImageReadError as e:  # e.g. a damaged wallpaper file
            _stderr(f"warning: skipping built-in photo {p.name}: {e}")
    return tuple(out)


def builtin_images(split: str, seed: int = 0, max_side: int | None = 1024) -> list[SRImage]:
    """The built-in offline photos: ``train`` (= train_a + train_b) or ``test`` (held out, never trained on).

    ``max_side`` bounds the long side (antialiased downscale, never upscaled): the wallpapers are up to
    5312 px, soft at the pixel level and would need ~0.5 GB of memory at full size.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; known: train, test")
    return list(_builtin_split(split, seed, max_side))


# ------------------------------------------------------------------------------------------ sampler


class SRPatchSampler:
    """Random aligned (LR, HR) crops: ``batch(epoch, step, n)`` -> LR (n, 3, S/s, S/s), HR (n, 3, S, S).

    Images are drawn with probability proportional to their area (every HR pixel equally likely to be
    seen); each crop is flipped left-right with p = 0.5 and rotated by k * 90 degrees, k uniform in
    0..3. With ``candidates`` > 1, that many crops are drawn and the one bicubic upscaling gets most
    wrong (largest mean squared HR - bicubic(LR) residual) is kept: photos are mostly smooth (on the
    built-in set the top quarter of random 96 px crops holds ~85% of the x2 bicubic error), so this
    spends the steps where there is something to learn. Randomness comes from
    ``numpy.random.default_rng([seed, epoch, step])`` alone, so a batch depends only on its
    coordinates: resuming mid-epoch reproduces the same batches exactly.
    """

    def __init__(
        self,
        hr: list[SRImage],
        scale: int,
        size: int,
        seed: int,
        lr: list[SRImage] | None = None,
        flip: bool = True,
        rot90: bool = True,
        warn: Callable[[str], None] | None = None,
        candidates: int = 1,
    ) -> None:
        if size % scale:
            raise DataError(f"HR crop size {size} must be a multiple of the scale {scale}")
        self.scale, self.size, self.seed, self.flip, self.rot90 = scale, size, seed, flip, rot90
        self.candidates = max(1, candidates)
        pairs: list[tuple[SRImage, SRImage | None]] = []
        lr_by_name = _match_lr(hr, lr, scale) if lr is not None else {}
        for im in hr:
            h, w = im.pixels.shape[-2:]
            if h < size or w < size:
                (warn or warnings.warn)(f"skipping {im.name}: {w}x{h} is smaller than the {size}px crop")
                continue
            pairs.append((im, lr_by_name.get(im.name)))
        if not pairs:
            raise DataError(f"no training image is at least {size}x{size} (the HR crop size)")
        self.pairs = pairs
        areas = np.array([im.pixels.shape[-1] * im.pixels.shape[-2] for im, _ in pairs], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return len(self.pairs)

    def _draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """Where one crop comes from: (image index, y, x) of its HR origin."""
        s, S = self.scale, self.size
        i = int(rng.choice(len(self.pairs), p=self.weights))
        h, w = self.pairs[i][0].pixels.shape[-2:]
        # Crop origin on the LR grid so HR and LR crops stay aligned pixel for pixel.
        y, x = int(rng.integers(0, (h - S) // s + 1)) * s, int(rng.integers(0, (w - S) // s + 1)) * s
        return i, y, x

    def _crop(self, i: int, y: int, x: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One un-augmented aligned pair: LR (3, S/s, S/s), HR (3, S, S)."""
        s, S = self.scale, self.size
        im, lr_im = self.pairs[i]
        hr = im.pixels[:, y : y + S, x : x + S].float() / 255.0
        if lr_im is None:
            return downscale(hr, s), hr
        return lr_im.pixels[:, y // s : (y + S) // s, x // s : (x + S) // s].float() / 255.0, hr

    def batch(
        self, epoch: int, step: int, n: int, part: tuple[int, int] = (0, 1)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs. With ``part`` = (rank, processes) the step's global batch is n x processes crops
        and this process makes only its share (the random draws of the others are skipped over)."""
        rank, world = part
        rng = np.random.default_rng([self.seed, epoch, step])
        lrs, hrs = [], []
        for j in range(n * world):
            draws = [self._draw(rng) for _ in range(self.candidates)]
            flip, k = bool(rng.random() < 0.5) and self.flip, int(rng.integers(0, 4)) if self.rot90 else 0
            if j // n != rank:
                continue
            options = [self._crop(*d) for d in draws]
            if len(options) > 1:
                err = [float((hr - upscale_bicubic(lr, self.scale)).pow(2).mean()) for lr, hr in options]
                options = [options[int(np.argmax(err))]]
            lr, hr = options[0]
            lrs.append(_augment(lr, flip, k))
            hrs.append(_augment(hr, flip, k))
        return torch.stack(lrs), torch.stack(hrs)


def _augment(x: torch.Tensor, flip: bool, k: int) -> torch.Tensor:
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _match_lr(hr: list[SRImage], lr: list[SRImage], scale: int) -> dict[str, SRImage]:
    """Pair LR images with HR ones by file name (exact name first, then the name without extension)."""
    exact = {im.name: im for im in lr}
    by_stem = {str(Path(im.name).with_suffix("")): im for im in lr}
    out: dict[str, SRImage] = {}
    missing = []
    for im in hr:
        lr_im = exact.get(im.name) or by_stem.get(str(Path(im.name).with_suffix("")))
        if lr_im is None:
            missing.append(im.name)
            continue
        (H, W), (h, w) = im.pixels.shape[-2:], lr_im.pixels.shape[-2:]
        if H // scale != h or W // scale != w:
            raise DataError(
                f"LR {lr_im.name} is {w}x{h} but HR {im.name} is {W}x{H}; with scale {scale} the LR must be "
                f"{W // scale}x{H // scale}"
            )
        out[im.name] = lr_im
    if missing:
        raise DataError(f"{len(missing)} HR image(s) have no LR image of the same name, e.g. {missing[0]}")
    return out
