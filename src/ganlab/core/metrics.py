"""Image quality and colour metrics: pure numpy functions, no torch, no scipy, no skimage.

Conventions for every function here: images are float arrays with values in [0, 1], shape (H, W, 3)
for colour or (H, W) for grayscale; float32 and float64 are accepted and all arithmetic is done in
float64. Integer arrays are refused (a uint8 image silently treated as [0, 255] floats is the classic
"PSNR of 0 dB" bug); convert them with :func:`to_float01` first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "to_float01",
    "mean_over_pairs",
    "psnr",
    "ssim",
    "rgb_to_y",
    "psnr_y",
    "ssim_y",
    "fit_affine_color",
    "apply_affine_color",
    "checkerboard_index",
    "rgb_to_lab",
    "change_alignment",
    "delta_e76",
    "delta_e2000",
    "tint",
]


# ----------------------------------------------------------------------------------------- helpers
def _f64(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"expected a float image in [0, 1], got dtype {a.dtype}; use to_float01() first")
    return a.astype(np.float64, copy=False)


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _f64(x), _f64(y)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    return x, y


def to_float01(img: Any) -> np.ndarray:
    """PIL image or integer/bool/float array -> float64 array in [0, 1].

    PIL modes other than L/RGB (P, RGBA, CMYK, I;16 ...) are converted to RGB first; uint8 is divided by
    255, uint16 by 65535, bool maps to {0, 1}; float input is returned as float64 unchanged.
    """
    if hasattr(img, "mode") and hasattr(img, "convert"):  # duck-typed PIL.Image
        img = np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))
    a = np.asarray(img)
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    return _f64(a)


def mean_over_pairs(fn: Callable[[np.ndarray, np.ndarray], Any], xs: Sequence, ys: Sequence) -> Any:
    """Mean of ``fn(x, y)`` over paired sequences; dict results (e.g. :func:`tint`) are averaged per key."""
    if len(xs) != len(ys) or len(xs) == 0:
        raise ValueError(f"need equally long, non-empty sequences (got {len(xs)} and {len(ys)})")
    vals = [fn(x, y) for x, y in zip(xs, ys)]
    if isinstance(vals[0], dict):
        return {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
    return float(np.mean(vals))


# ------------------------------------------------------------------------------------- PSNR / SSIM
def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); ``inf`` for identical images."""
    x, y = _pair(x, y)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * math.log10(data_range**2 / mse)


# Wang et al. 2004 ("Image quality assessment: from error visibility to structural similarity"):
# 11x11 circular-symmetric Gaussian window, sigma 1.5. Radius 5 = int(3.5 * 1.5 + 0.5), the same
# truncation skimage/scipy use, so the two agree to rounding.
_SSIM_RADIUS, _SSIM_SIGMA = 5, 1.5
_SSIM_K = np.exp(-0.5 * (np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1) / _SSIM_SIGMA) ** 2)
_SSIM_K /= _SSIM_K.sum()


def _filter_valid(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation over axes 0 and 1: (H, W, ...) -> (H-n+1, W-n+1, ...), n = len(k).

    Only windows fully inside the image are kept, so no padding convention enters the result; this is
    exactly the region skimage averages over after cropping its padded filter output.
    """
    n = len(k)
    h, w = a.shape[0] - n + 1, a.shape[1] - n + 1
    rows = sum(k[i] * a[i : i + h] for i in range(n))
    return sum(k[j] * rows[:, j : j + w] for j in range(n))


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004), Gaussian window 11 / sigma 1.5, K1 = 0.01, K2 = 0.03.

    Population (not sample) covariances; averaged over all valid window positions (the 5-pixel rim is
    dropped) and, for colour, over channels. Needs H, W >= 11.
    """
    x, y = _pair(x, y)
    if x.shape[0] < 2 * _SSIM_RADIUS + 1 or x.shape[1] < 2 * _SSIM_RADIUS + 1:
        raise ValueError(f"ssim needs images of at least 11x11, got {x.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = lambda a: _filter_valid(a, _SSIM_K)  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    # Every channel has the same number of windows, so the global mean is the mean of channel means.
    return float(s.mean())


# --------------------------------------------------------------------------- luma metrics (SR papers)
def rgb_to_y(x: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma as in SR papers (MATLAB rgb2ycbcr): (..., 3) in [0, 1] -> (...) in [16/255, 235/255].

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255.
    """
    x = _f64(x)
    if x.shape[-1] != 3:
        raise ValueError(f"rgb_to_y needs a trailing RGB axis, got shape {x.shape}")
    return (16.0 + x @ np.array([65.481, 128.553, 24.966])) / 255.0


def _luma_cropped(img: np.ndarray, border: int) -> np.ndarray:
    y = _f64(img)
    y = y if y.ndim == 2 else rgb_to_y(y)  # a 2-D input is taken to be luma already
    if border < 0:
        raise ValueError("border must be >= 0")
    return y[border : y.shape[0] - border, border : y.shape[1] - border] if border else y


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR on BT.601 luma after cropping ``border`` pixels on every side (usually the scale factor)."""
    return psnr(_luma_cropped(sr, border), _luma_cropped(hr, border), data_range=1.0)


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """SSIM on BT.601 luma after cropping ``border`` pixels on every side."""
    return ssim(_luma_cropped(sr, border), _luma_cropped(hr, border), data_range=1.0)


# ------------------------------------------------------------------------- affine colour baseline
def fit_affine_color(
    src: np.ndarray | Sequence[np.ndarray], dst: np.ndarray | Sequence[np.ndarray]
) -> np.ndarray:
    """Least-squares (3, 4) matrix M with dst_rgb ~= M @ [src_rgb, 1], pooled over all pixels of all pairs.

    Accumulates the 4x4 normal equations pair by pair (memory independent of the number of images)
    and solves them with lstsq, so rank-deficient data (e.g. gray src with R = G = B) gives the
    minimum-norm solution instead of an error.
    """
    srcs = [src] if isinstance(src, np.ndarray) else list(src)
    dsts = [dst] if isinstance(dst, np.ndarray) else list(dst)
    if len(srcs) != len(dsts) or not srcs:
        raise ValueError("src and dst must hold the same, non-zero number of images")
    ata, atb = np.zeros((4, 4)), np.zeros((4, 3))
    for s, d in zip(srcs, dsts):
        s, d = _pair(s, d)
        a = np.concatenate([s.reshape(-1, 3), np.ones((s.size // 3, 1))], axis=1)  # (N, 4)
        ata += a.T @ a
        atb += a.T @ d.reshape(-1, 3)
    return np.linalg.lstsq(ata, atb, rcond=None)[0].T  # (4, 3) -> (3, 4)


def apply_affine_color(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a (3, 4) affine colour map from :func:`fit_affine_color` to (..., 3) and clip to [0, 1]."""
    img, m = _f64(img), np.asarray(m, dtype=np.float64)
    return np.clip(img @ m[:, :3].T + m[:, 3], 0.0, 1.0)


def change_alignment(inputs: Sequence, outputs: Sequence, targets: Sequence) -> float:
    """Cosine similarity between what a translation changed (output - input) and what it should have
    changed (target - input), pooled over all pixels of all pairs.

    1: it moves exactly toward the truth (at any strength); 0: its changes are unrelated to the truth
    (noise, or a shift the truth does not have); negative: it moves away. Unlike PSNR it separates
    "learned the right direction, too weakly" from "learned something else". NaN if nothing changed.
    """
    dot = dd = tt = 0.0
    for x, y, t in zip(inputs, outputs, targets):
        x, y, t = _f64(x), _f64(y), _f64(t)
        d, e = y - x, t - x
        dot += float((d * e).sum())
        dd += float((d * d).sum())
        tt += float((e * e).sum())
    return dot / np.sqrt(dd * tt) if dd > 0 and tt > 0 else float("nan")


# ---------------------------------------------------------------------------------- checkerboard
def checkerboard_index(img: np.ndarray, factor_log2: int = 1, highpass: bool = False) -> float:
    """Share of non-DC spectral energy on the aliasing bins of x2^k upsampling (Odena et al. 2016 artefacts).

    With F = 2**factor_log2, the image is cropped to H' = F*floor(H/F), W' = F*floor(W/F) (top-left kept),
    each channel c has its mean removed, and with X_c its 2-D DFT::

        P(u, v) = sum_c |X_c(u, v)|^2 * G(u, v)
        A       = {(u, v) : u = 0 mod H'/F, v = 0 mod W'/F} minus {(0, 0)}
        index   = sum_{(u,v) in A} P(u, v) / sum_{(u,v) != (0,0)} P(u, v)      in [0, 1]

    A holds the F*F - 1 frequencies of any pattern with period F in both axes (for F = 2: the
    Nyquist bins (pi, 0), (0, pi), (pi, pi)), i.e. where a fixed per-phase bias of a sub-pixel
    upsampler lands. G = 1 by default. With ``highpass=True`` the image first has a 5x5 binomial blur
    ([1, 4, 6, 4, 1]/16 per axis, ~Gaussian sigma 1) subtracted, applied circularly so that it is
    exactly G(u, v) = (1 - b(2 pi u / H') b(2 pi v / W'))^2 with b(w) = cos^4(w / 2): G = 1 at Nyquist,
    0.56 at pi/2, ~w^4/4 near DC, which damps smooth image content. A flat image returns 0.0.
    """
    x = _f64(img)
    x = x[..., None] if x.ndim == 2 else x
    f = 2 ** int(factor_log2)
    h, w = (x.shape[0] // f) * f, (x.shape[1] // f) * f
    if h == 0 or w == 0:
        raise ValueError(f"image {x.shape[:2]} is smaller than the factor {f}")
    x = x[:h, :w]
    x = x - x.mean(axis=(0, 1))
    p = (np.abs(np.fft.fft2(x, axes=(0, 1))) ** 2).sum(axis=-1)  # (H', W')
    if highpass:
        b = lambda n: np.cos(np.pi * np.fft.fftfreq(n)) ** 4  # noqa: E731  cos^4(w/2), w = 2 pi k / n
        p = p * (1.0 - b(h)[:, None] * b(w)[None, :]) ** 2
    p[0, 0] = 0.0
    total = float(p.sum())
    # Relative threshold: mean removal leaves ~1e-30 of rounding energy on a flat image.
    if total <= 1e-20 * h * w * x.shape[-1]:
        return 0.0
    return float(p[:: h // f, :: w // f].sum() / total)


# ------------------------------------------------------------------------------------ CIELAB tint
_SRGB_TO_XYZ = np.array(  # IEC 61966-2-1 sRGB primaries, D65 white
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(x: np.ndarray) -> np.ndarray:
    """sRGB (..., 3) in [0, 1] -> CIELAB (..., 3) (L in [0, 100]), D65 white, 2-degree observer."""
    x = _f64(x)
    if x.shape[-1] != 3:
        raise ValueError(f"rgb_to_lab needs a trailing RGB axis, got shape {x.shape}")
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)  # sRGB gamma -> linear
    t = (lin @ _SRGB_TO_XYZ.T) / _D65
    d = 6.0 / 29.0
    ft = np.where(t > d**3, np.cbrt(t), t / (3 * d * d) + 4.0 / 29.0)
    fx, fy, fz = ft[..., 0], ft[..., 1], ft[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def delta_e76(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIE76 colour difference: Euclidean distance in Lab, (..., 3) x (..., 3) -> (...)."""
    return np.linalg.norm(np.asarray(lab1, np.float64) - np.asarray(lab2, np.float64), axis=-1)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1), (..., 3) x (..., 3) -> (...).

    Follows Sharma, Wu & Dalal 2005, "The CIEDE2000 color-difference formula: implementation notes,
    supplementary test data, and mathematical observations", eqs. (1)-(22), including their conventions
    for hue when a chroma is zero.
    """
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, np.mod(np.arctan2(b1, a1p), 2 * np.pi))
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, np.mod(np.arctan2(b2, a2p), 2 * np.pi))
    zero_c = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(dh > np.pi, dh - 2 * np.pi, np.where(dh < -np.pi, dh + 2 * np.pi, dh))
    dh = np.where(zero_c, 0.0, dh)
    d_l, d_c, d_h = l2 - l1, c2p - c1p, 2 * np.sqrt(c1p * c2p) * np.sin(dh / 2)
    lbar, cbar = (l1 + l2) / 2, (c1p + c2p) / 2
    hsum, hdiff = h1p + h2p, np.abs(h1p - h2p)
    hbar = np.where(hdiff <= np.pi, hsum / 2, np.where(hsum < 2 * np.pi, hsum / 2 + np.pi, hsum / 2 - np.pi))
    hbar = np.where(zero_c, hsum, hbar)
    deg = np.pi / 180
    t = (
        1
        - 0.17 * np.cos(hbar - 30 * deg)
        + 0.24 * np.cos(2 * hbar)
        + 0.32 * np.cos(3 * hbar + 6 * deg)
        - 0.20 * np.cos(4 * hbar - 63 * deg)
    )
    dtheta = 30 * deg * np.exp(-(((hbar / deg - 275) / 25) ** 2))
    rc = 2 * np.sqrt(cbar**7 / (cbar**7 + 25.0**7))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbar, 1 + 0.015 * cbar * t
    rt = -np.sin(2 * dtheta) * rc
    return np.sqrt((d_l / sl) ** 2 + (d_c / sc) ** 2 + (d_h / sh) ** 2 + rt * (d_c / sc) * (d_h / sh))


def tint(inp: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Colour cast of ``out`` relative to ``inp`` (same-shape sRGB images) in CIELAB units.

    delta_L / delta_a / delta_b: mean of out minus inp (negative delta_b = bluer, positive = yellower;
    negative delta_a = greener); delta_e76 / delta_e2000: mean per-pixel colour distance.
    """
    inp, out = _pair(inp, out)
    li, lo = rgb_to_lab(inp), rgb_to_lab(out)
    d = (lo - li).reshape(-1, 3).mean(axis=0)
    return {
        "delta_L": float(d[0]),
        "delta_a": float(d[1]),
        "delta_b": float(d[2]),
        "delta_e76": float(delta_e76(li, lo).mean()),
        "delta_e2000": float(delta_e2000(li, lo).mean()),
    }
