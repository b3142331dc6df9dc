"""Tiled translation with whole-image instance-norm statistics (core/layertree, core/seamless,
cyclegan/seamless) and `ganlab translate --tile --tile-stats`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ganlab.cli import main
from ganlab.core.layertree import layer_tree, receptive_radius
from ganlab.core.rundir import write_weights_run
from ganlab.core.seamless import approx_stats, run_banded
from ganlab.core.tiling import tiled_apply
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.seamless import translate_seamless
from ganlab.cyclegan.step import build_models
from ganlab.models.blocks import ResidualBlock
from ganlab.models.generator import GeneratorConfig, ResnetGenerator


def wake(m: nn.Module, seed: int = 0) -> nn.Module:
    """Random non-trivial weights (zero-initialised last layers would hide differences)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return m.eval()


def make_cyclegan_run(root: Path) -> Path:
    """A run directory holding an untrained tiny resnet9-layout CycleGAN with random weights."""
    cfg = build_cyclegan_config("resnet9", overrides={"model": {"hidden": 4, "n_residual": 1}})
    return write_weights_run(root, "cyclegan", cfg, dict(wake(build_models(cfg)).items()))


@pytest.mark.parametrize(
    "cfg",
    [
        GeneratorConfig(hidden=4, n_down=2, n_residual=3, upsample="convtranspose"),
        GeneratorConfig(hidden=4, n_down=2, n_residual=2, upsample="pixelshuffle", down_padding="reflect"),
        GeneratorConfig(
            hidden=4, n_down=1, n_residual=2, upsample="resize_conv", global_skip=True, dropout=0.5
        ),
    ],
    ids=["resnet-convT", "pixelshuffle-reflect", "resize-skip"],
)
@pytest.mark.parametrize("memory", [1 << 30, 0], ids=["in-memory", "on-disk"])
@torch.no_grad()
def test_exact_tiles_equal_the_untiled_output(cfg: GeneratorConfig, memory: int, tmp_path: Path) -> None:
    g = wake(ResnetGenerator(cfg))
    x = torch.rand(1, 3, 61, 45) * 2 - 1  # odd sides: the generator pads to a multiple and crops back
    full = g(x)
    tiled = translate_seamless(g, x, tile=20, stats="exact", scratch_dir=tmp_path, memory_bytes=memory)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max() <= 1e-4
    assert not list(tmp_path.iterdir())  # scratch files removed
    # Per-tile statistics, for contrast, are far off.
    per_tile = tiled_apply(g, x, tile=16, pad=4)
    assert (per_tile - full).abs().max() > 1e-2


class ConvRows(TorchDispatchMode):
    """Counts the output rows every convolution computes, by weight."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: Counter[int] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default:
            self.rows[args[1].data_ptr()] += out.shape[2]
        return out


@torch.no_grad()
def test_exact_mode_computes_each_layer_about_once() -> None:
    """O(layers), not O(layers^2): every conv of the residual blocks produces each of its output rows
    once; the thin layers before and after them are recomputed a few times (plus context rows). Whole-image
    statistics by recomputation from the input would run the first layers once per norm layer (14 here)."""
    cfg = GeneratorConfig(hidden=4, n_down=2, n_residual=4, upsample="convtranspose")
    g = wake(ResnetGenerator(cfg))
    x = torch.rand(1, 3, 96, 64) * 2 - 1
    with ConvRows() as full:
        g(x)
    with ConvRows() as tiled:
        translate_seamless(g, x, tile=32, memory_bytes=0)  # all scratch on disk: recomputes the most
    ratio = {k: tiled.rows[k] / full.rows[k] for k in full.rows}
    blocks = {
        c.weight.data_ptr()
        for b in g.net
        if isinstance(b, ResidualBlock)
        for c in b.body
        if isinstance(c, nn.Conv2d)
    }
    assert len(blocks) == 8 and max(ratio[k] for k in blocks) == 1.0
    assert len(ratio) == 14 and max(ratio.values()) < 5.0


@torch.no_grad()
def test_approx_mode_is_exact_for_its_statistics() -> None:
    g = wake(ResnetGenerator(GeneratorConfig(hidden=4, n_down=2, n_residual=2, upsample="pixelshuffle")))
    tree = layer_tree(g.net)
    x = torch.rand(1, 3, 64, 48) * 2 - 1
    # Statistics from the full-size copy are the true ones: the banded pass then equals the network.
    assert approx_stats(tree, x, max_pixels=64 * 48) == 1.0
    y, info = run_banded(tree, x, band_pixels=48 * 8)
    assert info.passes == 1 and info.peak_disk == info.peak_memory == 0  # one pass, no scratch
    assert (y - g.net(x)).abs().max() <= 1e-4
    # From a copy at a quarter of the pixels: other statistics (error measured in benchmarks/tiles.py).
    assert approx_stats(tree, x, max_pixels=32 * 24) == pytest.approx(0.5)
    y2 = run_banded(tree, x, band_pixels=48 * 8)[0]
    assert y2.shape == y.shape and torch.isfinite(y2).all() and not torch.allclose(y2, y, atol=1e-3)


def test_receptive_radius_of_a_plain_stack() -> None:
    net = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 3, 7), nn.Conv2d(3, 3, 3, padding=1))
    assert receptive_radius(layer_tree(net)) == 4


def test_unsupported_layer_is_named() -> None:
    with pytest.raises(TypeError, match="Upsample"):
        layer_tree(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear")))


def test_translate_cli_tile_modes(tmp_path: Path) -> None:
    run = make_cyclegan_run(tmp_path / "run")
    rgb = np.random.default_rng(0).integers(0, 256, (70, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    outs = {}
    for name, extra in [
        ("full", []),
        ("exact", ["--tile", "24"]),
        ("tile", ["--tile", "24", "--tile-stats", "tile"]),
    ]:
        argv = ["translate", "--run", str(run), str(tmp_path / "a.png"), "--out", str(tmp_path / name)]
        assert main([*argv, "--precision", "fp32", *extra]) == 0
        outs[name] = np.asarray(Image.open(tmp_path / name / "a.png")).astype(int)
    assert np.abs(outs["exact"] - outs["full"]).max() <= 1  # one 8-bit rounding step at most
    assert np.abs(outs["tile"] - outs["full"]).max() > 1
