"""Super-resolution evaluation: Y-channel PSNR/SSIM of the model and of bicubic upscaling.

Protocol (the usual SR-paper one, e.g. Ledig et al. 2017 sec. 3.1): HR = centre crop of each test image
(at most ``max_side`` per side, sides a multiple of the scale); LR = the antialiased bicubic downscale
of ``ganlab.sr.data`` rounded to 8 bits; model output and bicubic upscale of LR are clamped and
rounded to 8 bits (what a saved PNG holds); PSNR and SSIM on BT.601 luma with ``scale`` pixels cropped
from every border.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganlab.core.checkpoint import Checkpoint, load_module_state
from ganlab.core.device import select_device
from ganlab.core.metric_table import format as fmt
from ganlab.core.metrics import psnr_y, ssim_y
from ganlab.core.rundir import load_run_checkpoint
from ganlab.models.sr import SRResNet
from ganlab.sr.config import SRConfig, build_sr_config
from ganlab.sr.data import (
    SRImage,
    builtin_images,
    center_crop,
    downscale,
    quantize,
    read_folder,
    upscale_bicubic,
)

METRIC_KEYS = ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")


def load_sr_generator(
    run_dir: str | Path, checkpoint: str | int = "latest", device: torch.device | None = None
) -> tuple[SRResNet, SRConfig, Checkpoint]:
    """The generator of an SR run in eval mode, with the run's config and the checkpoint read."""
    ckpt = load_run_checkpoint(run_dir, checkpoint, "sr")
    cfg = build_sr_config(base=ckpt.meta["config"])
    model = SRResNet(cfg.model)
    load_module_state(ckpt, "generator", model)
    model.eval()
    return model.to(device or torch.device("cpu")), cfg, ckpt


def _np(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float64 array."""
    return x.detach().cpu().double().permute(1, 2, 0).numpy()


@torch.no_grad()
def score_images(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: list[SRImage],
    scale: int,
    device: torch.device,
    max_side: int = 512,
    keep_outputs: bool = False,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Any]:
    """Mean and per-image Y-PSNR/SSIM of ``model`` and of bicubic; restores the model's train/eval mode.
    An image too small for SSIM after the ``scale``-pixel border crop is skipped (``warn``).

    With ``keep_outputs`` each per-image entry also holds its ``lr``, ``bicubic``, ``sr`` and ``hr``
    tensors (3, H, W) for reports.
    """
    was_training = getattr(model, "training", None)  # plain functions (baselines, tests) have none
    if was_training is not None:
        model.eval()
    per_image = []
    try:
        for im in images:
            h, w = im.pixels.shape[-2:]
            if min(h, w) < 11 + 3 * scale:  # SSIM's 11 px window inside the border-cropped centre crop
                warn(f"warning: skipping {im.name}: {w}x{h} is too small to score at scale {scale}")
                continue
            hr = center_crop(im.float(), max_side, scale)
            lr = downscale(hr, scale)
            sr = quantize(model(lr[None].to(device))[0].float().cpu())
            bic = quantize(upscale_bicubic(lr, scale))
            hr_np, sr_np, bic_np = _np(hr), _np(sr), _np(bic)
            entry: dict[str, Any] = {
                "name": im.name,
                "size": [int(hr.shape[-1]), int(hr.shape[-2])],
                "psnr_y": psnr_y(sr_np, hr_np, border=scale),
                "ssim_y": ssim_y(sr_np, hr_np, border=scale),
                "bicubic_psnr_y": psnr_y(bic_np, hr_np, border=scale),
                "bicubic_ssim_y": ssim_y(bic_np, hr_np, border=scale),
            }
            if keep_outputs:
                entry.update(lr=lr, bicubic=bic, sr=sr, hr=hr)
            per_image.append(entry)
    finally:
        if was_training is not None:
            model.train(was_training)
    if not per_image:
        raise ValueError("no images to evaluate")
    out: dict[str, Any] = {k: float(np.mean([e[k] for e in per_image])) for k in METRIC_KEYS}
    out["gain_db"] = out["psnr_y"] - out["bicubic_psnr_y"]
    out["per_image"] = per_image
    return out


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    checkpoint: str | int = "latest",
    max_side: int = 512,
    device: str = "auto",
    write: bool = True,
) -> dict[str, Any]:
    """Score a run on ``data`` (default: the built-in held-out test photos); writes RUN_DIR/sr_eval.json."""
    dev = select_device(device)
    model, cfg, ckpt = load_sr_generator(run_dir, checkpoint, dev)
    images = (
        read_folder(data) if data else builtin_images("test", cfg.data.split_seed, cfg.data.photo_max_side)
    )
    res = score_images(model, images, cfg.model.scale, dev, max_side=max_side)
    res.update(
        scale=cfg.model.scale,
        preset=cfg.preset,
        data=str(data) if data else "built-in offline photos (test split)",
        checkpoint=ckpt.path.name if ckpt.path else None,
        epoch=ckpt.meta.get("epoch"),
        global_step=ckpt.meta.get("global_step"),
        max_side=max_side,
    )
    if write:
        path = Path(run_dir) / "sr_eval.json"
        tmp = path.with_name(".sr_eval.json.tmp")
        tmp.write_text(json.dumps(res, indent=2))
        tmp.replace(path)
    return res


def format_table(res: dict[str, Any]) -> str:
    """Per-image and mean rows: PSNR-Y / SSIM-Y of the model vs bicubic (formats from core.metric_table)."""

    def cells(e: dict[str, Any]) -> str:
        return (
            f"{fmt('psnr_y', e['psnr_y']):>8} {fmt('bicubic_psnr_y', e['bicubic_psnr_y']):>8} "
            f"{fmt('ssim_y', e['ssim_y']):>7} {fmt('bicubic_ssim_y', e['bicubic_ssim_y']):>7}"
        )

    lines = [f"{'image':<28} {'size':>9} {'PSNR-Y':>8} {'bicubic':>8} {'SSIM-Y':>7} {'bicubic':>7}"]
    for e in res["per_image"]:
        size = f"{e['size'][0]}x{e['size'][1]}"
        lines.append(f"{e['name'][:28]:<28} {size:>9} {cells(e)}")
    lines.append(f"{'mean':<28} {'':>9} {cells(res)}   (gain {fmt('gain_db', res['gain_db'])} dB)")
    return "\n".join(lines)
