"""A corpus of hostile image files (made on the fly: no binary fixtures in the repository) and what the
reader must make of each: the size it is used at, or the reason it is skipped."""

from __future__ import annotations

import builtins
import errno
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (width, height) the reader returns (EXIF orientation applied)
USED = {
    "good.png": (40, 40),
    "with space.png": (40, 40),
    "ünïcödé 画像.png": (40, 40),
    "one.png": (1, 1),
    "thin.png": (5000, 1),
    "deep16.png": (40, 40),
    "cmyk.jpg": (40, 40),
    "palette_t.png": (40, 40),
    "la.png": (40, 40),
    "rgba.png": (40, 40),
    "anim.gif": (40, 40),
    "exif.jpg": (20, 40),  # stored 40x20, orientation 6 (rotate 90 on display)
}
# name -> words of the reason it is skipped with
SKIPPED = {
    "zero.jpg": "empty file",
    "text.jpg": "not a recognised image format",
    "truncated.jpg": "truncated",
    "short.png": "truncated",
    "badcrc.png": "damaged header",  # Pillow rejects the header before naming a format
    "bomb.png": "30000x30000 exceeds the",
    "loop.jpg": "symlink loop",
    "broken.png": "broken symlink",
    "unreadable.png": "permission denied",
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring width x height over a few bytes of compressed data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * width) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def build_corpus(folder: Path, seed: int = 0) -> Path:
    """Write every file of USED and SKIPPED (plus a folder symlink loop, ``loopdir``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def photo(w: int, h: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")

    for name in ("good.png", "with space.png", "ünïcödé 画像.png", "unreadable.png"):
        photo(40, 40).save(folder / name)
    photo(1, 1).save(folder / "one.png")
    photo(5000, 1).save(folder / "thin.png")
    Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16)).save(folder / "deep16.png")
    photo(40, 40).convert("CMYK").save(folder / "cmyk.jpg")
    pal = photo(40, 40).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(folder / "palette_t.png", transparency=0)
    photo(40, 40).convert("LA").save(folder / "la.png")
    photo(40, 40).convert("RGBA").save(folder / "rgba.png")
    red, blue = Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 255))
    red.save(folder / "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(40, 20).save(folder / "exif.jpg", exif=exif)

    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    jpeg, png = encoded(photo(40, 40), "JPEG"), encoded(photo(40, 40), "PNG")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "short.png").write_bytes(png[: len(png) // 2])
    bad = bytearray(png)
    bad[29] ^= 0xFF  # the IHDR chunk's CRC (8 signature + 8 length/type + 13 data bytes precede it)
    (folder / "badcrc.png").write_bytes(bytes(bad))
    (folder / "bomb.png").write_bytes(bomb_png())
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("missing.png", folder / "broken.png")
    os.symlink(".", folder / "loopdir")
    os.chmod(folder / "unreadable.png", 0)
    return folder


def deny_reading(monkeypatch, *paths: Path) -> None:
    """Make ``open`` refuse ``paths`` as a chmod 000 file would (root ignores the mode bits)."""
    denied = {os.path.realpath(p) for p in paths}
    real = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.realpath(file) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
