"""SR data, metrics wiring, training (pixel and GAN stage), exact resume, --init, eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.cli import main
from ganlab.core.checkpoint import load_checkpoint
from ganlab.core.metrics import psnr_y
from ganlab.core.rundir import RunDir, read_metrics
from ganlab.sr.data import (
    SRImage,
    SRPatchSampler,
    bicubic_resize,
    downscale,
    upscale_bicubic,
)
from ganlab.sr.evaluate import score_images


def _photo(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    c = rng.random((3, 3))
    img = np.stack([c[i, 0] * 0.5 + 0.4 * np.sin(9 * c[i, 1] * xx + 7 * c[i, 2] * yy) for i in range(3)], -1)
    img += 0.1 * rng.random((h, w, 1))  # fine texture for the network to recover
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


@pytest.fixture
def sr_data(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    train, test = tmp_path / "hr", tmp_path / "test"
    for folder, n in ((train, 3), (test, 2)):
        folder.mkdir()
        for i in range(n):
            _photo(rng, 40, 48).save(folder / f"img{i}.png")
    return train, test


def tiny_args(train: Path, test: Path) -> list[str]:
    sets = [
        "model.hidden=8",
        "model.n_residual=1",
        "disc.hidden=4",
        "disc.dense=16",
        "disc.pool=2",
        "train.steps_per_epoch=2",
        "train.log_every=1",
        f"data.eval_root={test}",
        "data.eval_images=1",
        "data.eval_size=32",
    ]
    args = [
        "--data",
        str(train),
        "--scale",
        "2",
        "--size",
        "16",
        "--batch-size",
        "2",
        "--quiet",
        "--device",
        "cpu",
    ]
    for s in sets:
        args += ["--set", s]
    return args


# ------------------------------------------------------------------------------------- bicubic / data


def test_bicubic_is_exact_on_constant_and_matches_pil() -> None:
    c = torch.full((1, 3, 24, 36), 0.4)
    lr = bicubic_resize(c, (12, 18))  # the kernel weights sum to 1: a constant stays that constant
    assert torch.allclose(lr, c[..., :12, :18], atol=1e-6)
    up = upscale_bicubic(downscale(torch.full((3, 24, 36), 100 / 255), 2), 2)
    assert torch.allclose(up, torch.full_like(up, 100 / 255), atol=1e-6)
    assert psnr_y(up.permute(1, 2, 0).double().numpy(), np.full((24, 36, 3), 100 / 255)) > 100
    # The same filter as PIL's antialiased BICUBIC (float mode, so no 8-bit rounding in PIL).
    a = np.random.default_rng(0).random((40, 36)).astype(np.float32)
    pil = np.asarray(Image.fromarray(a, "F").resize((18, 20), Image.BICUBIC, reducing_gap=None))
    ours = bicubic_resize(torch.from_numpy(a)[None, None], (20, 18))[0, 0].numpy()
    assert np.abs(pil - ours).max() < 1e-5


def test_sampler_is_deterministic_and_aligned() -> None:
    rng = np.random.default_rng(1)
    ims = [
        SRImage(f"{i}", torch.from_numpy(rng.integers(0, 256, (3, 30, 41), dtype=np.uint8))) for i in range(3)
    ]
    s = SRPatchSampler(ims, scale=3, size=12, seed=5)
    lr1, hr1 = s.batch(2, 7, 4)
    lr2, hr2 = SRPatchSampler(ims, scale=3, size=12, seed=5).batch(2, 7, 4)
    assert torch.equal(lr1, lr2) and torch.equal(hr1, hr2)
    assert lr1.shape == (4, 3, 4, 4) and hr1.shape == (4, 3, 12, 12)
    assert torch.equal(lr1, downscale(hr1, 3))
    assert not torch.equal(hr1, s.batch(2, 8, 4)[1])


def test_paired_lr_folder_crops_align() -> None:
    hr = torch.rand(3, 32, 40)
    lr = downscale(hr, 2) * 0.5  # a "camera" LR that differs from our bicubic: it must be used as is
    s = SRPatchSampler(
        [SRImage("a.png", (hr * 255).round().byte())],
        2,
        16,
        0,
        lr=[SRImage("a.jpg", (lr * 255).round().byte())],
        flip=False,
        rot90=False,
    )
    lr_b, hr_b = s.batch(1, 0, 3)
    assert float(lr_b.mean()) < 0.6 * float(downscale(hr_b, 2).mean())


# ----------------------------------------------------------------------------------------- metrics


def test_score_images_y_psnr_by_hand() -> None:
    hr = torch.rand(3, 20, 24)
    im = SRImage("x", (hr * 255).round().byte())
    gray = lambda lr: torch.full((lr.shape[0], 3, lr.shape[2] * 2, lr.shape[3] * 2), 0.5)  # noqa: E731
    res = score_images(gray, [im], scale=2, device=torch.device("cpu"), max_side=64)
    h = im.float().double().permute(1, 2, 0).numpy()[2:-2, 2:-2]  # scale-pixel border cropped
    y_hr = (16 + h @ np.array([65.481, 128.553, 24.966])) / 255
    y_sr = (16 + 128 / 255 * (65.481 + 128.553 + 24.966)) / 255  # 0.5 rounds to 128/255
    assert res["psnr_y"] == pytest.approx(10 * math.log10(1 / np.mean((y_sr - y_hr) ** 2)), abs=1e-5)
    # A "model" that is bicubic scores exactly the bicubic baseline.
    bic = score_images(lambda lr: upscale_bicubic(lr, 2), [im], 2, torch.device("cpu"), max_side=64)
    assert bic["psnr_y"] == bic["bicubic_psnr_y"] and bic["ssim_y"] == bic["bicubic_ssim_y"]


# ----------------------------------------------------------------------------------------- training


def test_pixel_run_layout_eval_and_errors(tmp_path, sr_data, capsys) -> None:
    train, test = sr_data
    run = tmp_path / "pix"
    assert main(["sr", "train", *tiny_args(train, test), "--epochs", "1", "--out", str(run)]) == 0
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "latest.json").is_file()
    ckpt = load_checkpoint(RunDir(run).resolve_checkpoint("latest"))
    assert (
        ckpt.meta["task"] == "sr" and ckpt.meta["epoch"] == 1 and ckpt.meta["config"]["model"]["hidden"] == 8
    )
    steps, epochs = read_metrics(run, "step"), read_metrics(run, "epoch")
    assert len(steps) == 2 and "pixel" in steps[0]
    for key in ("seconds", "peak_mem_mb", "psnr_y", "bicubic_psnr_y"):
        assert key in epochs[0]

    capsys.readouterr()
    assert main(["sr", "eval", "--run", str(run), "--data", str(test), "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "per_image"):
        assert key in res
    assert len(res["per_image"]) == 2 and (run / "sr_eval.json").is_file()

    # --init from a run with another architecture: a clear error naming both configs.
    bad = ["--set", "model.hidden=12"]
    args = ["sr", "train", *tiny_args(train, test), *bad, "--stage", "gan", "--epochs", "1"]
    assert main([*args, "--init", str(run), "--out", str(tmp_path / "bad2")]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main(["sr", "train", "--set", "train.nope=1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown config key train.nope" in capsys.readouterr().err
    assert main(["sr", "train", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "srresnet-small" in capsys.readouterr().err


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(RunDir(run).resolve_checkpoint("latest"))
    return {k: v for k, v in ckpt.tensors.items() if k.startswith(("model/", "optim/"))}


def test_gan_stage_resumes_bit_for_bit(tmp_path, sr_data) -> None:
    train, test = sr_data
    base = tiny_args(train, test)
    pix = tmp_path / "pix"
    assert main(["sr", "train", *base, "--epochs", "1", "--out", str(pix)]) == 0
    # A constant lr: a schedule over the total epochs would differ between a 1-epoch and a 2-epoch run.
    gan = [*base, "--stage", "gan", "--init", str(pix), "--set", "train.adv_kind=relativistic"]
    gan += ["--set", "train.lr_schedule=constant"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["sr", "train", *gan, "--epochs", "2", "--out", str(straight)]) == 0
    assert main(["sr", "train", *gan, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["sr", "train", "--resume", str(split), "--epochs", "2", "--quiet"]) == 0
    a, b = _weights(straight), _weights(split)
    assert set(a) == set(b) and any(k.startswith("model/discriminator/") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses_a = [r["loss_d"] for r in read_metrics(straight, "step")]
    losses_b = [r["loss_d"] for r in read_metrics(split, "step")]
    assert losses_a == losses_b
