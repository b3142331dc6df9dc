from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ganlab.core import images
from ganlab.core.images import ImageReadError, read_rgb


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(tmp_path, mode: str) -> None:
    rgb = Image.fromarray((np.random.default_rng(0).random((12, 9, 3)) * 255).astype(np.uint8))
    if mode == "I;16":
        im = Image.fromarray((np.arange(108).reshape(12, 9) * 600).astype(np.uint16))
        assert im.mode == "I;16"
    else:
        im = rgb.convert(mode)
    ext = {"CMYK": ".jpg", "I": ".tiff", "F": ".tiff"}.get(mode, ".png")
    path = tmp_path / f"x{ext}"
    im.save(path)
    out = read_rgb(path)
    assert out.mode == "RGB" and out.size == (9, 12)
    if mode == "I;16":  # 16-bit data is rescaled, not clipped to white
        assert 0 < np.asarray(out).mean() < 255


def test_exif_orientation_applied(tmp_path) -> None:
    im = Image.new("RGB", (20, 10), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "o.jpg", exif=exif)
    assert read_rgb(tmp_path / "o.jpg").size == (10, 20)


def test_bad_files_raise_clear_errors(tmp_path, monkeypatch) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    buf = tmp_path / "full.jpg"
    Image.new("RGB", (64, 64), "blue").save(buf)
    (tmp_path / "cut.jpg").write_bytes(buf.read_bytes()[:200])
    cases = {"empty.png": "empty file", "text.png": "not a recognised image", "cut.jpg": "truncated"}
    for name, why in cases.items():
        with pytest.raises(ImageReadError, match=why):
            read_rgb(tmp_path / name)
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_rgb(buf)
