import math

import numpy as np
import pytest
from PIL import Image

from ganlab.core import metrics as M

skimage = pytest.importorskip("skimage")
from skimage import color, data  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    # 128x128 crop keeps every test fast while still being a real photo (face + background).
    return data.astronaut()[100:228, 150:278].astype(np.float64) / 255.0


def _blur(x: np.ndarray) -> np.ndarray:
    k = np.array([1.0, 2.0, 1.0]) / 4
    p = np.pad(x, [(1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 2), mode="edge")
    rows = sum(k[i] * p[i : i + x.shape[0]] for i in range(3))
    return sum(k[j] * rows[:, j : j + x.shape[1]] for j in range(3))


# ------------------------------------------------------------------------------ helpers / PSNR
def test_to_float01_and_integer_guard():
    u8 = np.array([[0, 255]], dtype=np.uint8)
    assert np.array_equal(M.to_float01(u8), [[0.0, 1.0]])
    assert M.to_float01(np.array([65535], dtype=np.uint16))[0] == 1.0
    pil = Image.fromarray(np.full((4, 4, 4), 255, np.uint8), mode="RGBA")
    out = M.to_float01(pil)
    assert out.shape == (4, 4, 3) and out.dtype == np.float64 and out.max() == 1.0
    with pytest.raises(TypeError):
        M.psnr(u8, u8)


def test_psnr_basic_and_inf():
    x = np.zeros((8, 8, 3), np.float32)
    assert M.psnr(x, x) == float("inf")
    y = x + 0.1  # MSE = 0.01 -> 20 dB
    assert M.psnr(x, y) == pytest.approx(20.0, abs=1e-5)
    assert M.psnr(x * 2, y * 2, data_range=2.0) == pytest.approx(20.0, abs=1e-5)


def test_mean_over_pairs_scalar_and_dict(astro):
    xs, ys = [astro, astro], [astro * 0.9, astro * 0.8]
    assert M.mean_over_pairs(M.psnr, xs, ys) == pytest.approx(
        (M.psnr(astro, ys[0]) + M.psnr(astro, ys[1])) / 2
    )
    d = M.mean_over_pairs(M.tint, xs, ys)
    assert set(d) == {"delta_L", "delta_a", "delta_b", "delta_e76", "delta_e2000"}
    with pytest.raises(ValueError):
        M.mean_over_pairs(M.psnr, xs, ys[:1])


# ------------------------------------------------------------------------------------- SSIM
def _sk_ssim(x, y, **kw):
    return structural_similarity(
        x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kw
    )


def test_ssim_matches_skimage_colour(astro):
    rng = np.random.default_rng(0)
    noisy = np.clip(astro + rng.normal(0, 0.05, astro.shape), 0, 1)
    for other in (noisy, _blur(astro), astro.astype(np.float32)):
        ref = _sk_ssim(astro, other.astype(np.float64), channel_axis=-1)
        assert M.ssim(astro, other) == pytest.approx(ref, abs=1e-3)
    assert M.ssim(astro, astro) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_skimage_gray():
    cam = data.camera()[200:300, 200:300].astype(np.float64) / 255.0
    rng = np.random.default_rng(1)
    noisy = np.clip(cam + rng.normal(0, 0.1, cam.shape), 0, 1)
    assert M.ssim(cam, noisy) == pytest.approx(_sk_ssim(cam, noisy), abs=1e-3)
    assert M.ssim(cam, _blur(cam)) == pytest.approx(_sk_ssim(cam, _blur(cam)), abs=1e-3)
    with pytest.raises(ValueError):
        M.ssim(cam[:10, :10], cam[:10, :10])


# --------------------------------------------------------------------------------- Y metrics
def test_rgb_to_y_range():
    assert M.rgb_to_y(np.zeros(3)) == pytest.approx(16 / 255)
    assert M.rgb_to_y(np.ones(3)) == pytest.approx(235 / 255)


def test_psnr_y_hand_computed():
    # 4x4 images, border 1 leaves the central 2x2. hr is black; sr differs from hr only inside the
    # crop, by pure green 0.5 at one pixel: dY = 128.553 * 0.5 / 255 there, 0 at the other 3 pixels.
    hr = np.zeros((4, 4, 3))
    sr = hr.copy()
    sr[1, 1, 1] = 0.5
    sr[0, :, :] = 1.0  # changes on the rim must be ignored
    dy = 128.553 * 0.5 / 255
    expected = 10 * math.log10(1.0 / (dy**2 / 4))
    assert M.psnr_y(sr, hr, border=1) == pytest.approx(expected, abs=1e-9)
    assert M.psnr_y(sr, hr, border=0) < expected


def test_ssim_y_crops_border(astro):
    bad = astro.copy()
    bad[:4] = 0.0
    assert M.ssim_y(bad, astro, border=4) == pytest.approx(1.0, abs=1e-12)
    assert M.ssim_y(bad, astro, border=0) < 0.99


# ----------------------------------------------------------------------------- affine colour
def test_affine_color_exact_recovery(astro):
    true = np.array([[0.7, 0.1, 0.05, 0.05], [0.05, 0.8, 0.0, 0.1], [0.1, 0.05, 0.6, 0.15]])
    src = [astro, astro[::-1, ::-1] * 0.5]
    dst = [s @ true[:, :3].T + true[:, 3] for s in src]
    assert max(d.max() for d in dst) <= 1.0 and min(d.min() for d in dst) >= 0.0  # no clipping occurred
    fit = M.fit_affine_color(src, dst)
    assert fit.shape == (3, 4)
    assert np.abs(fit - true).max() < 1e-6
    assert M.psnr(M.apply_affine_color(astro, fit), dst[0]) > 60
    # single-array form works too
    assert np.abs(M.fit_affine_color(src[0], dst[0]) - true).max() < 1e-6


# ------------------------------------------------------------------------------ checkerboard
def test_checkerboard_flat_and_period2():
    flat = np.full((32, 32, 3), 0.5)
    assert M.checkerboard_index(flat) == 0.0
    assert M.checkerboard_index(flat, highpass=True) == 0.0
    grid = flat.copy()
    grid[::2, ::2] += 0.05  # bias on one of the four polyphase components of a x2 upsampler
    assert M.checkerboard_index(grid) == pytest.approx(1.0, abs=1e-9)
    assert M.checkerboard_index(grid[:31, :33]) == pytest.approx(1.0, abs=1e-9)  # cropped to even sizes


def test_checkerboard_natural_low_and_grid_detected(astro):
    gradient = np.linspace(0, 1, 64)[None, :, None] * np.ones((64, 1, 3))
    assert M.checkerboard_index(gradient) < 0.01
    assert M.checkerboard_index(astro) < 0.01
    assert M.checkerboard_index(astro, highpass=True) < 0.05
    gridded = astro.copy()
    gridded[::2, ::2] += 0.03
    plain, hp = M.checkerboard_index(gridded), M.checkerboard_index(gridded, highpass=True)
    # A faint grid (3% of range) is a small share of a detailed photo's raw energy; the high-pass
    # re-weighting raises its share by more than an order of magnitude.
    assert hp > plain > 50 * M.checkerboard_index(astro)
    assert hp > 20 * plain and hp > 0.05


def test_checkerboard_period4():
    i = np.arange(32)
    # cos(pi i / 2) = 1, 0, -1, 0: energy only at u = +-H/4, which are x4 bins but not x2 bins.
    wave = 0.5 + 0.05 * np.cos(np.pi * i / 2)[:, None] * np.ones((1, 32))
    assert M.checkerboard_index(wave, factor_log2=2) == pytest.approx(1.0, abs=1e-9)
    assert M.checkerboard_index(wave, factor_log2=1) < 1e-12
    # A bias on one of 16 phases of a x4 upsampler sits entirely on the x4 bins, partly on the x2 ones.
    dots = np.full((32, 32), 0.5)
    dots[::4, ::4] += 0.05
    assert M.checkerboard_index(dots, factor_log2=2) == pytest.approx(1.0, abs=1e-9)
    assert 0.05 < M.checkerboard_index(dots, factor_log2=1) < 0.5


# -------------------------------------------------------------------------------------- CIELAB
def test_rgb_to_lab_known_colours():
    cols = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], float)
    # white, black by definition; primaries/mid-gray from the standard sRGB D65 tables.
    ref = np.array(
        [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86],
         [53.39, 0, 0]]
    )  # fmt: skip
    lab = M.rgb_to_lab(cols)
    assert np.abs(lab - ref).max() < 0.5
    rng = np.random.default_rng(2)
    rgb = rng.random((50, 3))
    assert np.abs(M.rgb_to_lab(rgb) - color.rgb2lab(rgb[None])[0]).max() < 0.5


def test_delta_e2000_sharma_and_skimage():
    # First pairs of the Sharma et al. 2005 test table.
    l1 = np.array([[50, 2.6772, -79.7751], [50, 3.1571, -77.2803], [50, 2.8361, -74.0200], [50, 0, 0]])
    l2 = np.array([[50, 0, -82.7485], [50, 0, -82.7485], [50, 0, -82.7485], [50, -1, 2]])
    assert np.allclose(M.delta_e2000(l1, l2), [2.0425, 2.8615, 3.4412, 2.3669], atol=1e-4)
    rng = np.random.default_rng(3)
    a = M.rgb_to_lab(rng.random((200, 3)))
    b = M.rgb_to_lab(rng.random((200, 3)))
    b[:5] = a[:5] + rng.normal(0, 1, (5, 3))  # also some small differences
    assert np.abs(M.delta_e2000(a, b) - color.deltaE_ciede2000(a, b)).max() < 1e-3
    assert np.allclose(M.delta_e2000(a, a), 0.0)
    assert np.allclose(M.delta_e76(a, b), color.deltaE_cie76(a, b))


def test_tint_blue_and_yellow(astro):
    blue = np.clip(astro + np.array([-0.02, -0.02, 0.08]), 0, 1)
    t = M.tint(astro, blue)
    assert t["delta_b"] < -3 and abs(t["delta_a"]) < 0.5 * abs(t["delta_b"])
    assert t["delta_e2000"] > 0 and t["delta_e76"] >= t["delta_e2000"] * 0.5
    yellow = np.clip(astro + np.array([0.05, 0.05, -0.08]), 0, 1)
    assert M.tint(astro, yellow)["delta_b"] > 3
    same = M.tint(astro, astro)
    assert all(abs(v) < 1e-9 for v in same.values())


def test_change_alignment_separates_direction_from_strength() -> None:
    from ganlab.core.metrics import change_alignment

    rng = np.random.default_rng(0)
    xs = [rng.random((16, 16, 3)) for _ in range(3)]
    ts = [np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1) for x in xs]
    weak = [x + 0.1 * (t - x) for x, t in zip(xs, ts)]  # right direction, a tenth of the way
    assert change_alignment(xs, weak, ts) == pytest.approx(1.0)
    away = [x - 0.5 * (t - x) for x, t in zip(xs, ts)]
    assert change_alignment(xs, away, ts) == pytest.approx(-1.0)
    noise = [x + rng.normal(0, 0.1, x.shape) for x in xs]
    assert abs(change_alignment(xs, noise, ts)) < 0.1
    assert np.isnan(change_alignment(xs, xs, ts))  # the identity changes nothing


def test_flat_checkerboard_scores_the_8_bit_output() -> None:
    """A 2 px grid under half a grey level (fp32 rounding) is invisible in the saved image and scores 0;
    one of a few grey levels scores as a pure grid."""
    import torch

    from ganlab.cyclegan.evaluate import flat_checkerboard

    def grid(amplitude: float):
        def g(x: torch.Tensor) -> torch.Tensor:
            yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
            return x + amplitude * ((yy + xx) % 2 * 2 - 1).to(x.dtype)

        return g

    cpu = torch.device("cpu")
    assert flat_checkerboard(grid(1e-4), 1, cpu) == 0.0
    assert flat_checkerboard(grid(4 / 255), 1, cpu) > 0.99
