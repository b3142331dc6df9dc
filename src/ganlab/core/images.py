"""The one image reader used everywhere: every format Pillow reads, every mode, EXIF orientation,
and one error type, :class:`ImageReadError` (a line naming the file and the reason), for every file that
is not a usable image: empty, truncated, corrupt, not an image, unreadable, a broken symlink or loop, or a
decompression bomb. Bombs are refused from the header, before any pixel is decoded: the limit is
``GANLAB_MAX_PIXELS`` (environment) or :data:`MAX_PIXELS`."""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from ganlab.core.errors import ConfigError, GanlabError

if TYPE_CHECKING:  # torch is imported where tensors are made, so `translate --onnx` runs without it
    import torch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

# Images with more pixels than this are refused before decoding (override: GANLAB_MAX_PIXELS=N).
MAX_PIXELS = 16384 * 16384
MAX_PIXELS_ENV = "GANLAB_MAX_PIXELS"
_PILLOW_LIMIT = threading.Lock()


class ImageReadError(GanlabError, ValueError):
    """A file could not be used as an image; the message names the file and the reason."""


class ImageTooLargeError(ImageReadError):
    """An image declares more pixels than allowed (a decompression bomb, or simply too large)."""


@dataclass
class BatchResult:
    """What a command over many image files did: the outputs written and the inputs that failed."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)

    def report(self, out: str | Path) -> tuple[str, int]:
        """The closing lines (wrote N image(s) to OUT; then each failed input) and the exit code: 1 when
        an input failed, else 0."""
        lines = [f"wrote {len(self.written)} image(s) to {out}"]
        if self.failed:
            lines.append(f"{len(self.failed)} input(s) failed:")
            lines += [f"  {p}: {why}" for p, why in self.failed]
        return "\n".join(lines), int(bool(self.failed))


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Entries under ``folder`` with an image extension, sorted (deterministic order). Broken symlinks
    and symlink loops are listed too, so the reader reports them instead of their vanishing silently;
    symlinked folders are not descended into (no loops)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir())


def max_pixels() -> int:
    """The pixel limit in force: ``GANLAB_MAX_PIXELS`` when set, else :data:`MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}: expected a positive pixel count, got {raw!r}")
    return value


# The limit in force, under a name that decode_image's ``max_pixels`` argument does not shadow.
_limit_in_force = max_pixels


@contextmanager
def _own_bomb_check() -> Iterator[None]:
    """Pillow's global decompression-bomb limit off while a header is parsed: ours replaces it (and may be
    larger). A lock, as the setting is process-wide."""
    with _PILLOW_LIMIT:
        old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _unusable_path(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (None: it can be tried)."""
    try:
        st = path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop"
        if e.errno == errno.ENOENT:
            return "broken symlink" if path.is_symlink() else "no such file"
        return e.strerror or str(e)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return "empty file (0 bytes)" if st.st_size == 0 else None


def open_image(path: str | Path, limit: int | None = None) -> Image.Image:
    """Open, fully decode and orient an image (EXIF transpose). Mode is left as stored.

    Raises :class:`ImageReadError` (and nothing else) for a file that is not a usable image; ``limit``
    (default :func:`max_pixels`) bounds width x height, checked from the header before decoding.
    """
    path = Path(path)
    limit = limit or max_pixels()
    why = _unusable_path(path)
    if why:
        raise ImageReadError(f"{path}: {why}")
    try:
        fh = open(path, "rb")
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except OSError as e:
        raise ImageReadError(f"{path}: {e.strerror or e}") from None
    with fh:
        return _decode(fh, str(path), limit)


def decode_image(data: bytes, label: str = "image", max_pixels: int | None = None) -> Image.Image:
    """:func:`open_image` for bytes in memory (an upload): the size the header declares is checked against
    ``max_pixels`` (default: the limit in force) before any pixel is decoded (:class:`ImageTooLargeError`)."""
    if not data:
        raise ImageReadError(f"{label}: empty (0 bytes)")
    return _decode(io.BytesIO(data), label, max_pixels or _limit_in_force())


def _decode(source: BinaryIO, label: str, limit: int) -> Image.Image:
    """Decode and orient an open image file; every failure becomes an :class:`ImageReadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit replaces it
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # "Truncated File Read"...
            with _own_bomb_check():
                im = Image.open(source)
            with im:
                # Image.open reads the header only: refuse a bomb before its pixels are allocated.
                if im.width * im.height > limit:
                    raise ImageTooLargeError(
                        f"{label}: {im.width}x{im.height} exceeds the {limit:,}-pixel limit "
                        f"(possible decompression bomb; raise it with {MAX_PIXELS_ENV})"
                    )
                im.load()
                return ImageOps.exif_transpose(im)
    except ImageReadError:
        raise
    except PermissionError:
        raise ImageReadError(f"{label}: permission denied") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"{label}: refused as a possible decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(f"{label}: not a recognised image format (or a damaged header)") from None
    except Exception as e:  # noqa: BLE001 - decoders raise many types (OSError, SyntaxError, EOFError, ...)
        # Truncated or corrupt data surfaces as OSError ("image file is truncated"), SyntaxError, etc.
        raise ImageReadError(f"{label}: corrupt or truncated image ({type(e).__name__}: {e})") from None


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


def read_rgb(path: str | Path, limit: int | None = None) -> Image.Image:
    """open_image + to_rgb: the usual way to read a training or test picture (only
    :class:`ImageReadError` escapes)."""
    im = open_image(path, limit)
    try:
        return to_rgb(im)
    except Exception as e:  # noqa: BLE001 - an exotic mode Pillow cannot convert
        raise ImageReadError(f"{path}: cannot convert mode {im.mode} to RGB ({e})") from None


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
