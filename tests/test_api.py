"""The Python API: ganlab.load / ganlab.load_sr give models that map PIL images to PIL images and arrays
to arrays of the same dtype; `import ganlab` stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import ganlab
from ganlab.core.errors import CheckpointError, UserError
from ganlab.core.rundir import RunDir, progress_meta
from ganlab.cyclegan.reference import import_reference
from ganlab.models.sr import SRResNet
from ganlab.sr.config import build_sr_config

from .reference_nets import RefGenerator, randomized, save_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def test_import_ganlab_is_light() -> None:
    code = "import sys, ganlab; assert callable(ganlab.load); print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_weights_file_and_run_give_the_same_model(tmp_path) -> None:
    weights = tmp_path / "g.pth"
    save_state_dict(randomized(RefGenerator(8, 6), 11).state_dict(), weights)
    import_reference(weights, tmp_path / "run", log=lambda m: None)
    from_file = ganlab.load(weights, precision="fp32", device="cpu")
    from_run = ganlab.load(tmp_path / "run", precision="fp32", device="cpu")

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (31, 22, 3), dtype=np.uint8)
    out = from_file.translate(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(from_run.translate(img), out)
    pil = from_file.translate(Image.fromarray(img))
    assert isinstance(pil, Image.Image) and pil.size == (22, 31) and np.array_equal(np.asarray(pil), out)
    flt = from_file.translate(img.astype(np.float32) / 255)
    assert flt.dtype == np.float32 and 0 <= flt.min() and flt.max() <= 1
    assert np.abs(flt * 255 - out).max() <= 0.51  # the same translation before 8-bit rounding
    gray = from_file.translate(img[..., 0])
    assert gray.shape == img.shape  # (H, W) in, (H, W, 3) out

    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    Image.fromarray(img).save(src / "a.png")
    written = from_run.translate_folder(tmp_path / "src", tmp_path / "dst", progress=False).written
    assert written == [tmp_path / "dst" / "sub" / "a.png"]
    assert np.array_equal(np.asarray(Image.open(written[0])), out)

    with pytest.raises(CheckpointError, match="no b2a generator"):
        from_file.translate(img, direction="b2a")
    with pytest.raises(UserError, match="unknown direction"):
        from_file.translate(img, direction="sideways")
    with pytest.raises(UserError, match="shape"):
        from_file.translate(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(CheckpointError, match="expected a run directory"):
        ganlab.load(tmp_path / "nothing.here")


def test_load_sr_upscales_pil_and_arrays(tmp_path) -> None:
    cfg = build_sr_config(
        preset="srresnet-small", overrides={"model": {"scale": 2, "hidden": 8, "n_residual": 1}}
    )
    torch.manual_seed(0)
    RunDir(tmp_path / "sr").save(
        0, 0, {"generator": SRResNet(cfg.model)}, progress_meta("sr", cfg, 0, 0, 0, 0.0), {}
    )
    m = ganlab.load_sr(tmp_path / "sr", precision="fp32", device="cpu")
    img = np.random.default_rng(3).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    big = m.upscale(img)
    assert big.dtype == np.uint8 and big.shape == (26, 34, 3)
    pil = m.upscale(Image.fromarray(img))
    assert pil.size == (34, 26) and np.array_equal(np.asarray(pil), big)
    flt = m.upscale(img.astype(np.float64) / 255)
    assert flt.dtype == np.float64 and flt.shape == (26, 34, 3)
    assert np.abs(flt * 255 - big).max() <= 0.51
    with pytest.raises(CheckpointError, match="super-resolution run"):
        ganlab.load(tmp_path / "sr")
