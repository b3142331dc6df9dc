"""tiled_apply (generic, any scale) and `ganlab sr upscale` (modes, sizes, names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganlab.cli import main
from ganlab.core.rundir import write_weights_run
from ganlab.core.tiling import tiled_apply
from ganlab.models.sr import SRResNet
from ganlab.sr.config import build_sr_config


@torch.no_grad()
def test_tiled_equals_untiled_srresnet() -> None:
    torch.manual_seed(0)
    cfg = build_sr_config("srresnet-small", overrides={"model": {"scale": 2, "hidden": 8, "n_residual": 2}})
    g = SRResNet(cfg.model).eval()
    torch.nn.init.normal_(g.tail.weight, std=0.05)  # the preset starts silent (zero tail): wake it up
    x = torch.rand(1, 3, 45, 70)
    full = g(x)
    tiled = tiled_apply(g, x, tile=16, pad=10, scale=2)
    assert tiled.shape == full.shape == (1, 3, 90, 140)
    b = 8  # "away from the border" (our tiles see the true border, so the whole image matches anyway)
    assert (tiled - full)[..., b:-b, b:-b].abs().mean() < 1 / 255
    assert (tiled - full).abs().mean() < 1 / 255
    # With the model's receptive-field radius as padding, tiling is exact (up to float rounding).
    exact = tiled_apply(g, x, tile=16, pad=g.receptive_radius, scale=2)
    assert torch.allclose(exact, full, atol=1e-5)


@torch.no_grad()
def test_tiling_is_exact_when_pad_covers_the_receptive_field() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 5, padding=2))  # radius 3
    x = torch.rand(2, 3, 37, 29)
    out = tiled_apply(net, x, tile=8, pad=3, scale=1)
    assert out.shape == (2, 2, 37, 29)
    assert torch.allclose(out, net(x), atol=1e-6)
    assert torch.equal(tiled_apply(net, x, tile=0, pad=3), net(x))  # tile 0: one call


@pytest.fixture
def sr_run(tmp_path: Path) -> Path:
    """A run directory holding an untrained tiny x2 generator (upscale only needs a checkpoint)."""
    cfg = build_sr_config("srresnet-small", overrides={"model": {"scale": 2, "hidden": 8, "n_residual": 1}})
    return write_weights_run(tmp_path / "run", "sr", cfg, {"generator": SRResNet(cfg.model)})


def test_upscale_keeps_alpha_gray_16bit_and_names(tmp_path: Path, sr_run: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    rgba = rng.integers(0, 256, (11, 13, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:5, :, 3] = 0  # top half transparent
    Image.fromarray(rgba, "RGBA").save(src / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (9, 14), dtype=np.uint8), "L").save(src / "gray.png")
    Image.fromarray(rng.integers(0, 65536, (7, 10), dtype=np.uint16)).save(src / "deep.png")
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), "RGB").save(src / "photo.jpg")
    out = tmp_path / "out"
    assert (
        main(
            [
                "sr",
                "upscale",
                "--run",
                str(sr_run),
                str(src),
                "--out",
                str(out),
                "--tile",
                "6",
                "--tile-pad",
                "4",
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with Image.open(out / "rgba.png") as im:
        assert im.mode == "RGBA" and im.size == (26, 22)
        a = np.asarray(im.getchannel("A"))
        assert a[:8].max() == 0 and a[12:].min() == 255  # alpha upscaled, not composited away
    with Image.open(out / "gray.png") as im:
        assert im.mode == "L" and im.size == (28, 18)
    with Image.open(out / "deep.png") as im:
        assert im.mode.startswith("I") and im.size == (20, 14)
        assert np.asarray(im).max() > 255  # written as 16-bit, not reduced to 8 bits
    with Image.open(out / "photo.png") as im:
        assert im.mode == "RGB" and im.size == (24, 24)
    # A single file keeps its name too; a missing input is a user error.
    assert (
        main(
            [
                "sr",
                "upscale",
                "--run",
                str(sr_run),
                str(src / "gray.png"),
                "--out",
                str(tmp_path / "o2"),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (tmp_path / "o2" / "gray.png").is_file()
    assert main(["sr", "upscale", "--run", str(sr_run), str(src / "nope.png"), "--out", str(out)]) == 2
