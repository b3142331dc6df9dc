"""Translate pictures of any size with a trained CycleGAN generator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ganlab.core.checkpoint import load_module_state
from ganlab.core.config import from_dict
from ganlab.core.device import autocast, resolve_precision
from ganlab.core.images import (  # collect_inputs: imported from here by callers too
    ImageReadError,
    collect_inputs,
    pil_to_tensor,
    read_rgb,
    save_image,
    tensor_to_pil,
)
from ganlab.core.rundir import load_run_checkpoint
from ganlab.core.tiling import tiled_apply
from ganlab.cyclegan.config import CycleGANConfig
from ganlab.cyclegan.seamless import translate_seamless
from ganlab.cyclegan.step import build_models
from ganlab.models.generator import ResnetGenerator

DIRECTIONS = {"a2b": "G_A2B", "b2a": "G_B2A"}


def load_run_models(
    run_dir: str | Path,
    checkpoint: str | int = "latest",
    device: torch.device | None = None,
    use_ema: bool = True,
) -> tuple[nn.ModuleDict, CycleGANConfig, dict[str, Any]]:
    """Rebuild the four networks from a checkpoint's own config and load their weights (the generators'
    moving averages when the run kept them and ``use_ema``)."""
    ckpt = load_run_checkpoint(run_dir, checkpoint, "cyclegan")
    cfg = from_dict(CycleGANConfig, ckpt.meta["config"])
    models = build_models(cfg)
    for name in models:
        # Generators: the EMA weights when the run kept them (they are the better generator).
        ema = f"{name}_ema"
        use = ema if use_ema and name.startswith("G_") and ckpt.section(f"model/{ema}") else name
        load_module_state(ckpt, use, models[name])
    models.to(device or torch.device("cpu")).eval()
    return models, cfg, ckpt.meta


@torch.no_grad()
def translate_tensor(
    g: nn.Module,
    x: torch.Tensor,
    tile: int | None = None,
    tile_pad: int = 32,
    precision: str = "fp32",
    tile_stats: str = "exact",
) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] -> (1, 3, H, W) float. With ``tile``, pictures larger than a tile are
    computed piece by piece with bounded memory; ``tile_stats`` says where the instance-norm statistics
    come from (exact, approx or tile: see ganlab.cyclegan.seamless; ``tile_pad`` is the context margin of
    the tile mode). ``precision`` is a resolved one (fp32 or bf16 autocast)."""

    def fn(t: torch.Tensor) -> torch.Tensor:
        with autocast(t.device, precision):
            return g(t).float()

    if tile and max(x.shape[-2:]) > tile and tile_stats != "tile" and isinstance(g, ResnetGenerator):
        return translate_seamless(g, x, tile, tile_stats, ctx=lambda: autocast(x.device, precision))
    if tile:
        return tiled_apply(fn, x, tile=tile, pad=tile_pad, scale=1)
    return fn(x)


def translate_paths(
    run_dir: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    direction: str = "a2b",
    checkpoint: str | int = "latest",
    device: torch.device | None = None,
    tile: int | None = None,
    tile_pad: int = 32,
    ext: str = ".png",
    warn: Callable[[str], None] = print,
    progress: bool = True,
    precision: str = "auto",
    tile_stats: str = "exact",
) -> list[Path]:
    """Translate every input image; each output keeps its input's size and name (with ``ext``).
    ``precision`` auto: bf16 autocast where the hardware has it (within 40 dB PSNR of fp32; tested)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use a2b or b2a")
    device = device or torch.device("cpu")
    models, _, _ = load_run_models(run_dir, checkpoint, device)
    g = models[DIRECTIONS[direction]]
    precision = resolve_precision(precision, device, warn)
    files = collect_inputs(inputs)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, inputs))}")
    out_dir = Path(out_dir)
    written = []
    for src, rel in tqdm(files, desc=f"translate {direction}", unit="img", disable=not progress):
        try:
            x = pil_to_tensor(read_rgb(src))[None].to(device)
        except ImageReadError as e:
            warn(f"warning: skipping {e}")
            continue
        y = translate_tensor(g, x, tile, tile_pad, precision, tile_stats)
        dst = out_dir / rel.with_suffix(ext)
        save_image(tensor_to_pil(y[0]), dst)
        written.append(dst)
    return written
