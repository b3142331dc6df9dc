"""The one image reader used everywhere: every format Pillow reads, every mode, EXIF orientation,
and a clear error for files that are not usable images."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from ganlab.core.errors import GanlabError

if TYPE_CHECKING:  # torch is imported where tensors are made, so `translate --onnx` runs without it
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# Pillow warns above ~89 MP and raises above twice that; we refuse anything over this many pixels.
MAX_PIXELS = 16384 * 16384


class ImageReadError(GanlabError, ValueError):
    """A file could not be used as an image; the message names the file and the reason."""


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` by extension, sorted (deterministic order)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def open_image(path: str | Path) -> Image.Image:
    """Open, fully decode and orient an image (EXIF transpose). Mode is left as stored.

    Raises ImageReadError for missing, empty, truncated, non-image and decompression-bomb files.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageReadError(
                        f"{path}: {im.width}x{im.height} exceeds the {MAX_PIXELS:,}-pixel limit "
                        "(possible decompression bomb)"
                    )
                im.load()
                return ImageOps.exif_transpose(im)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"{path}: refused as a possible decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        # Truncated or corrupt data surfaces as OSError ("image file is truncated") or SyntaxError.
        raise ImageReadError(f"{path}: corrupt or truncated image ({e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB. Alpha is composited on white; 16-bit and float modes are rescaled."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            a = a / 65535.0
        else:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        return Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


def read_rgb(path: str | Path) -> Image.Image:
    """open_image + to_rgb: the usual way to read a training or test picture."""
    return to_rgb(open_image(path))


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [-1, 1]."""
    import torch

    a = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [-1, 1] -> RGB PIL image."""
    import torch

    a = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, "RGB")


def collect_inputs(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """Files and folders -> (file, path relative to its root) so outputs mirror folder structure."""
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in list_images(p)]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return out


def save_image(im: Image.Image, path: str | Path) -> None:
    """Write atomically (temp file then rename) so a crash never leaves half an image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fmt = {
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".png": "PNG",
        ".webp": "WEBP",
        ".bmp": "BMP",
        ".tif": "TIFF",
        ".tiff": "TIFF",
    }.get(path.suffix.lower(), "PNG")
    im.save(tmp, format=fmt)
    tmp.replace(path)
