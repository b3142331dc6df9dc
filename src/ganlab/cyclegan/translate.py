"""Translate pictures of any size with a trained CycleGAN generator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ganlab.core.checkpoint import load_module_state
from ganlab.core.config import from_dict
from ganlab.core.device import autocast, resolve_precision
from ganlab.core.errors import CheckpointError, UserError
from ganlab.core.images import (  # collect_inputs: imported from here by callers too
    BatchResult,
    ImageReadError,
    collect_inputs,
    pil_to_tensor,
    read_rgb,
    save_image,
    tensor_to_pil,
    to_rgb,
)
from ganlab.core.rundir import load_run_checkpoint
from ganlab.core.tiling import tiled_apply
from ganlab.cyclegan.config import CycleGANConfig
from ganlab.cyclegan.reference import describe_missing, load_reference, reference_files
from ganlab.cyclegan.seamless import translate_seamless
from ganlab.cyclegan.step import build_models
from ganlab.models.generator import ResnetGenerator

DIRECTIONS = {"a2b": "G_A2B", "b2a": "G_B2A"}
ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)
# Smaller sides are edge-padded to this (and the output cropped back): the generator's reflect pads need
# a few pixels at its coarsest level.
MIN_SIDE = 16


def load_run_models(
    run_dir: str | Path,
    checkpoint: str | int = "latest",
    device: torch.device | None = None,
    use_ema: bool = True,
) -> tuple[nn.ModuleDict, CycleGANConfig, dict[str, Any]]:
    """Rebuild the networks from a checkpoint's own config and load their weights (the generators'
    moving averages when the run kept them and ``use_ema``). A run imported from generator weights alone
    lacks some networks (its checkpoint lists what it has): those are left out of the result."""
    ckpt = load_run_checkpoint(run_dir, checkpoint, "cyclegan")
    cfg = from_dict(CycleGANConfig, ckpt.meta["config"])
    models = build_models(cfg)
    present = ckpt.meta.get("modules", list(models))
    for name in list(models):
        if name not in present:
            del models[name]
            continue
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

    fmt = _layout(g)

    def fn(t: torch.Tensor) -> torch.Tensor:
        with autocast(t.device, precision):
            return g(t.contiguous(memory_format=fmt)).float().contiguous()

    h, w = x.shape[-2:]
    if min(h, w) < MIN_SIDE:
        x = F.pad(x, (0, max(0, MIN_SIDE - w), 0, max(0, MIN_SIDE - h)), mode="replicate")
        return translate_tensor(g, x, tile, tile_pad, precision, tile_stats)[..., :h, :w]
    if tile and max(x.shape[-2:]) > tile and tile_stats != "tile" and isinstance(g, ResnetGenerator):
        return translate_seamless(g, x, tile, tile_stats, ctx=lambda: autocast(x.device, precision))
    if tile:
        return tiled_apply(fn, x, tile=tile, pad=tile_pad, scale=1)
    return fn(x)


def _layout(g: nn.Module) -> torch.memory_format:
    """The memory layout of ``g``'s convolution weights, for its inputs (a layout mismatch costs a copy
    per layer)."""
    for p in g.parameters():
        if p.dim() == 4:
            cl = p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            return torch.channels_last if cl else torch.contiguous_format
    return torch.contiguous_format


class Translator:
    """CycleGAN generators ready for inference (what :func:`ganlab.load` returns).

    ``translate`` maps one PIL image or numpy array to the same type; ``translate_paths`` and
    ``translate_folder`` translate files, each output keeping its input's size and relative path.
    ``precision`` auto: bf16 autocast where the hardware has it (within 40 dB PSNR of fp32; tested).
    """

    def __init__(
        self,
        generators: dict[str, nn.Module],
        cfg: CycleGANConfig,
        device: torch.device | None = None,
        precision: str = "auto",
        source: str = "",
        missing: str = "",
    ) -> None:
        self.device = device or torch.device("cpu")
        # channels_last on CPU and CUDA: inference 1.4-1.5x faster than NCHW on an AVX-512 CPU and 1.2x
        # with the CPU kernels limited to AVX2 (docs/performance.md).
        cl = self.device.type in ("cpu", "cuda")
        fmt = torch.channels_last if cl else torch.contiguous_format
        self.generators = {d: g.to(self.device, memory_format=fmt).eval() for d, g in generators.items()}
        self.cfg, self.source, self._missing = cfg, source, missing
        self.precision = resolve_precision(precision, self.device)

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions this model can translate: ("a2b", "b2a") or ("a2b",) for one generator."""
        return tuple(d for d in DIRECTIONS if d in self.generators)

    def generator(self, direction: str = "a2b") -> nn.Module:
        if direction not in DIRECTIONS:
            raise UserError(f"unknown direction {direction!r}; use a2b or b2a")
        g = self.generators.get(direction)
        if g is None:
            why = f" ({self._missing})" if self._missing else ""
            raise CheckpointError(
                f"{self.source or 'this model'} has no {direction} generator{why}; "
                f"available: {', '.join(self.directions) or 'none'}"
            )
        return g

    def translate_tensor(
        self,
        x: torch.Tensor,
        direction: str = "a2b",
        tile: int | None = None,
        tile_pad: int = 32,
        tile_stats: str = "exact",
    ) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 3, H, W) float on the CPU (``tile_stats``: see translate_tensor)."""
        g = self.generator(direction)
        return translate_tensor(g, x.to(self.device), tile, tile_pad, self.precision, tile_stats).cpu()

    def translate(
        self,
        image: ImageLike,
        direction: str = "a2b",
        tile: int | None = None,
        tile_pad: int = 32,
        tile_stats: str = "exact",
    ) -> ImageLike:
        """A PIL image (any mode; RGB out) or an (H, W) / (H, W, 3) array (uint8, uint16, or float in
        [0, 1]; (H, W, 3) of the same dtype out) translated to the same type, at the same size."""
        if isinstance(image, Image.Image):
            x = pil_to_tensor(to_rgb(image))[None]
            return tensor_to_pil(self.translate_tensor(x, direction, tile, tile_pad, tile_stats)[0])
        x, back = array_to_tensor(image)
        return back(self.translate_tensor(x[None], direction, tile, tile_pad, tile_stats)[0])

    def translate_paths(
        self,
        inputs: list[str | Path],
        out_dir: str | Path,
        direction: str = "a2b",
        tile: int | None = None,
        tile_pad: int = 32,
        ext: str = ".png",
        warn: Callable[[str], None] = print,
        progress: bool = True,
        tile_stats: str = "exact",
    ) -> BatchResult:
        """Translate image files and folders into ``out_dir`` (folders keep their structure; outputs
        take ``ext``). An input that is not a usable image is warned about (one line: file and reason)
        and listed in the result's ``failed``."""
        self.generator(direction)  # an unavailable direction fails before any file is read
        files = collect_inputs(inputs)
        if not files:
            raise FileNotFoundError(f"no images found in {', '.join(map(str, inputs))}")
        out_dir = Path(out_dir)
        result = BatchResult()
        for src, rel in tqdm(files, desc=f"translate {direction}", unit="img", disable=not progress):
            try:
                x = pil_to_tensor(read_rgb(src))[None]
            except ImageReadError as e:
                warn(f"warning: skipping {e}")
                result.failed.append((src, str(e).removeprefix(f"{src}: ")))
                continue
            y = self.translate_tensor(x, direction, tile, tile_pad, tile_stats)
            dst = out_dir / rel.with_suffix(ext)
            save_image(tensor_to_pil(y[0]), dst)
            result.written.append(dst)
        return result

    def translate_folder(
        self, src: str | Path, dst: str | Path, direction: str = "a2b", **kw: Any
    ) -> BatchResult:
        """Every image under ``src`` into ``dst`` (same relative paths); keywords as translate_paths."""
        if not Path(src).is_dir():
            raise FileNotFoundError(f"not a folder: {src}")
        return self.translate_paths([src], dst, direction, **kw)


def array_to_tensor(a: np.ndarray) -> tuple[torch.Tensor, Callable[[torch.Tensor], np.ndarray]]:
    """(H, W) or (H, W, 3) array -> (3, H, W) in [-1, 1], and the map of a result back to an (H, W, 3)
    array of the input's dtype (uint8 / uint16 full range, floats in [0, 1])."""
    if not isinstance(a, np.ndarray):
        raise UserError(f"expected a PIL image or a numpy array, got {type(a).__name__}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise UserError(f"expected an (H, W) or (H, W, 3) array, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        top = float(np.iinfo(a.dtype).max)
        dtype = a.dtype

        def back(t: torch.Tensor) -> np.ndarray:
            v = ((t.float().clamp(-1, 1) + 1) * (top / 2)).round().permute(1, 2, 0).numpy()
            return v.astype(dtype)

        x = torch.from_numpy(a.astype(np.float32) / (top / 2) - 1.0)
    elif np.issubdtype(a.dtype, np.floating):
        dtype = a.dtype

        def back(t: torch.Tensor) -> np.ndarray:
            return ((t.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy().astype(dtype)

        x = torch.from_numpy(np.clip(a, 0.0, 1.0).astype(np.float32) * 2 - 1.0)
    else:
        raise UserError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    return x.permute(2, 0, 1).contiguous(), back


def load_translator(
    run_dir: str | Path,
    checkpoint: str | int = "latest",
    device: torch.device | None = None,
    use_ema: bool = True,
    precision: str = "auto",
) -> Translator:
    """A run's generators as a :class:`Translator`."""
    models, cfg, meta = load_run_models(run_dir, checkpoint, device, use_ema)
    gens = {d: models[name] for d, name in DIRECTIONS.items() if name in models}
    return Translator(gens, cfg, device, precision, str(run_dir), describe_missing(meta, run_dir))


def load_reference_translator(
    source: str | Path,
    device: torch.device | None = None,
    precision: str = "auto",
    b2a: str | Path | None = None,
) -> Translator:
    """Reference CycleGAN weights (a generator .pth, optionally ``b2a`` for the other direction, or a
    reference checkpoints folder) as a :class:`Translator`, without writing a run."""
    models, cfg = load_reference(reference_files(source, b2a))
    gens = {d: models[name] for d, name in DIRECTIONS.items() if name in models}
    missing = "" if "b2a" in gens else "a single generator file is the a2b direction only"
    return Translator(gens, cfg, device, precision, str(source), missing)
