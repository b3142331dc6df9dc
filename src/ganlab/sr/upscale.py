"""``ganlab sr upscale``: super-resolve image files with a trained SR run, tile by tile.

Image modes: RGB in -> RGB out. Grayscale stays grayscale: L (and 1) -> L, the model sees the gray
replicated to RGB and its output is converted back with the BT.601 luma weights PIL uses for "L".
16-bit grayscale (I;16, or I with values <= 65535, e.g. a 16-bit PNG) is processed without 8-bit
rounding and written as a 16-bit PNG. Alpha (RGBA, LA, PA, P with transparency) is upscaled with the
same antialiased bicubic as the baselines and re-attached. Pillow has no 16-bit RGB mode, so 48-bit
RGB files arrive already reduced to 8 bits. Every output is PNG and keeps its input's name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ganlab.core.device import autocast, resolve_precision, select_device
from ganlab.core.errors import GanlabError
from ganlab.core.images import BatchResult, ImageReadError, list_images, open_image, save_image, to_rgb
from ganlab.core.tiling import tiled_apply
from ganlab.models.sr import SRResNet
from ganlab.sr.data import bicubic_resize
from ganlab.sr.evaluate import load_sr_generator


class UpscaleError(GanlabError, ValueError):
    """The inputs cannot be upscaled as asked (e.g. two inputs would write the same output file)."""


ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# BT.601 luma, the weights of PIL's RGB -> L conversion.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _is_16bit_gray(im: Image.Image) -> bool:
    if im.mode.startswith("I;16"):
        return True
    if im.mode == "I":
        lo, hi = im.getextrema()
        return 0 <= lo and hi <= 65535
    return False


def split_image(im: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """PIL image -> colour (1, 3, H, W) in [0, 1], alpha (1, 1, H, W) or None, output kind.

    kind: ``rgb`` | ``gray`` (8-bit L out) | ``gray16`` (16-bit out).
    """
    alpha = None
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("LA") if im.mode in ("LA", "La") else im.convert("RGBA")
        alpha = torch.from_numpy(np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0)[None, None]
        im = rgba.convert("L") if rgba.mode == "LA" else rgba.convert("RGB")  # drop alpha, no compositing
    if _is_16bit_gray(im):
        a, kind = np.asarray(im, dtype=np.float32) / 65535.0, "gray16"
    elif im.mode in ("L", "1"):
        a, kind = np.asarray(im.convert("L"), dtype=np.float32) / 255.0, "gray"
    else:
        a, kind = np.asarray(to_rgb(im), dtype=np.float32) / 255.0, "rgb"
    t = torch.from_numpy(np.ascontiguousarray(a))
    t = t[None, None].expand(1, 3, -1, -1) if t.dim() == 2 else t.permute(2, 0, 1)[None]
    return t.contiguous(), alpha, kind


def merge_image(y: torch.Tensor, alpha: torch.Tensor | None, kind: str) -> Image.Image:
    """Inverse of :func:`split_image` for the upscaled colour (1, 3, H, W) and alpha (1, 1, H, W)."""
    y = y.detach().float().cpu().clamp(0, 1)
    if kind == "rgb":
        arr = np.round(y[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        out = Image.fromarray(arr, "RGB")
    else:
        gray = (y * _LUMA).sum(1)[0].clamp(0, 1).numpy()
        if kind == "gray16":
            return Image.fromarray(np.round(gray * 65535).astype(np.uint16))  # mode I;16, 16-bit PNG
        out = Image.fromarray(np.round(gray * 255).astype(np.uint8), "L")
    if alpha is not None:
        a = np.round(alpha[0, 0].clamp(0, 1).numpy() * 255).astype(np.uint8)
        out.putalpha(Image.fromarray(a, "L"))  # RGB -> RGBA, L -> LA
    return out


@torch.no_grad()
def upscale_image(
    model: Callable[[torch.Tensor], torch.Tensor],
    im: Image.Image,
    scale: int,
    device: torch.device,
    tile: int = 256,
    pad: int = 32,
    precision: str = "fp32",
) -> Image.Image:
    """Super-resolve one PIL image (any mode, any size) to exactly ``scale`` times its size
    (``precision``: a resolved one, fp32 or bf16 autocast)."""
    x, alpha, kind = split_image(im)

    def fn(t: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return model(t.to(device)).float().clamp(0, 1).cpu()

    y = tiled_apply(fn, x, tile, pad, scale)
    if alpha is not None:
        alpha = bicubic_resize(alpha, (alpha.shape[-2] * scale, alpha.shape[-1] * scale))
    return merge_image(y, alpha, kind)


def collect_inputs(inputs: list[str | Path], out: Path) -> list[tuple[Path, Path]]:
    """(input file, output PNG) pairs: a file -> OUT/<stem>.png, a folder -> OUT/<relative path>.png."""
    pairs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = list_images(item)
            if not files:
                raise FileNotFoundError(f"no images found under {item}")
            pairs += [(f, out / f.relative_to(item).with_suffix(".png")) for f in files]
        elif item.is_file():
            pairs.append((item, out / f"{item.stem}.png"))
        else:
            raise FileNotFoundError(f"input not found: {item}")
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in seen:
            raise UpscaleError(
                f"{src} and {seen[dst]} would both be written to {dst}; upscale them separately"
            )
        seen[dst] = src
    return pairs


class Upscaler:
    """An SR run's generator ready for inference (what :func:`ganlab.load_sr` returns).

    ``upscale`` maps a PIL image (any mode, see the module docstring) to a PIL image, or a numpy array
    to an array of the same dtype: uint8 (H, W), (H, W, 3) or (H, W, 4), or float (H, W) / (H, W, 3) in
    [0, 1]. Tiles of ``tile`` px with ``pad`` px of context (default: the receptive radius, exact).
    """

    def __init__(
        self, model: SRResNet, device: torch.device | None = None, precision: str = "auto", source: str = ""
    ) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.scale = model.cfg.scale
        self.precision = resolve_precision(precision, self.device)
        self.source = source

    def upscale(self, image: ImageLike, tile: int = 256, pad: int | None = None) -> ImageLike:
        pad = self.model.receptive_radius if pad is None else pad
        if isinstance(image, Image.Image):
            return upscale_image(self.model, image, self.scale, self.device, tile, pad, self.precision)
        if not isinstance(image, np.ndarray):
            raise UpscaleError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
        if image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
            return np.asarray(self.upscale(Image.fromarray(image), tile, pad))
        if np.issubdtype(image.dtype, np.floating) and (image.ndim == 2 or image.shape[-1] == 3):
            x = torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))
            x = x[None, None].expand(1, 3, -1, -1) if x.dim() == 2 else x.permute(2, 0, 1)[None]
            y = self._tensor(x.contiguous(), tile, pad)[0]
            y = (y * _LUMA[0]).sum(0) if image.ndim == 2 else y.permute(1, 2, 0)
            return y.numpy().astype(image.dtype)
        raise UpscaleError(
            f"unsupported array {image.dtype} {image.shape}; use uint8 (H, W[, 3|4]) or float (H, W[, 3])"
        )

    @torch.no_grad()
    def _tensor(self, x: torch.Tensor, tile: int, pad: int) -> torch.Tensor:
        """(1, 3, h, w) in [0, 1] -> (1, 3, scale*h, scale*w) clamped to [0, 1], on the CPU."""

        def fn(t: torch.Tensor) -> torch.Tensor:
            with autocast(self.device, self.precision):
                return self.model(t.to(self.device)).float().clamp(0, 1).cpu()

        return tiled_apply(fn, x, tile, pad, self.scale)


def load_upscaler(
    run_dir: str | Path, checkpoint: str | int = "latest", device: str = "auto", precision: str = "auto"
) -> Upscaler:
    """An SR run's generator as an :class:`Upscaler`."""
    dev = select_device(device)
    model, _, _ = load_sr_generator(run_dir, checkpoint, dev)
    return Upscaler(model, dev, precision, str(run_dir))


def upscale_files(
    run_dir: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    tile: int = 256,
    pad: int | None = None,
    checkpoint: str | int = "latest",
    device: str = "auto",
    progress: bool = True,
    precision: str = "auto",
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> BatchResult:
    """Upscale every input file (or image under an input folder) with the run's generator; an input that
    is not a usable image is warned about (file and reason) and listed in the result's ``failed``.

    ``pad`` None: the generator's receptive-field radius, which makes tiling exact. ``precision`` auto:
    bf16 autocast where the hardware has it.
    """
    up = load_upscaler(run_dir, checkpoint, device, precision)
    pairs = collect_inputs(inputs, Path(out))
    result = BatchResult()
    for src, dst in tqdm(pairs, desc="upscale", unit="image", disable=not progress, dynamic_ncols=True):
        try:
            im = open_image(src)
        except ImageReadError as e:
            warn(f"warning: skipping {e}")
            result.failed.append((src, str(e).removeprefix(f"{src}: ")))
            continue
        save_image(up.upscale(im, tile, pad), dst)
        result.written.append(dst)
    return result
