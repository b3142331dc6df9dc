"""Hostile files for every reader: the reader itself, training data (CycleGAN and SR), translate, sr
upscale, eval and the offline photos behind the demo data. Each file is used correctly or skipped with
one line naming it and the reason; a command over a folder exits 1 when an input failed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from ganlab.cli import main
from ganlab.core import photos as core_photos
from ganlab.core.errors import ConfigError
from ganlab.core.images import MAX_PIXELS_ENV, ImageReadError, list_images, open_image, read_rgb

from .conftest import TINY, make_dataset
from .hostile_corpus import SKIPPED, USED, build_corpus, deny_reading, encoded

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch) -> Path:
    folder = build_corpus(tmp_path / "hostile")
    deny_reading(monkeypatch, folder / "unreadable.png")
    return folder


def _lines_naming(text: str, folder: Path, name: str) -> list[str]:
    return [line for line in text.splitlines() if f"{folder / name}: " in line or f" {name}: " in line]


def test_reader_uses_or_refuses_each_file_with_its_reason(corpus: Path) -> None:
    assert sorted(p.name for p in list_images(corpus)) == sorted([*USED, *SKIPPED])  # loopdir not entered
    for name, size in USED.items():
        im = read_rgb(corpus / name)
        assert (im.mode, im.size) == ("RGB", size), name
    for name, why in SKIPPED.items():
        with pytest.raises(ImageReadError) as err:
            read_rgb(corpus / name)
        assert str(err.value).startswith(f"{corpus / name}: ") and why in str(err.value), str(err.value)
    # The content, not just the size: the GIF's first frame, transparency on white, 16-bit rescaled.
    assert read_rgb(corpus / "anim.gif").getpixel((5, 5)) == (255, 0, 0)
    pal = Image.open(corpus / "palette_t.png")
    clear = np.argwhere(np.asarray(pal) == 0)[0]
    assert read_rgb(corpus / "palette_t.png").getpixel((int(clear[1]), int(clear[0]))) == (255, 255, 255)
    deep = np.asarray(read_rgb(corpus / "deep16.png"))
    assert deep.min() < 10 and deep.max() > 200


def test_bombs_are_refused_from_the_header_and_the_limit_is_configurable(corpus: Path, monkeypatch) -> None:
    decoded: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    with pytest.raises(ImageReadError, match=r"30000x30000 exceeds the 268,435,456-pixel limit"):
        read_rgb(corpus / "bomb.png")
    assert decoded == []  # refused before a single pixel was decoded
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(ImageReadError, match=r"40x40 exceeds the 1,000-pixel limit"):
        read_rgb(corpus / "good.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "1600")
    assert read_rgb(corpus / "good.png").size == (40, 40)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_PIXELS_ENV):
        read_rgb(corpus / "good.png")


def test_cyclegan_train_translate_and_eval_on_hostile_files(tmp_path: Path, monkeypatch, capsys) -> None:
    root = make_dataset(tmp_path / "data", n_train=4, n_test=2)
    bad = build_corpus(root / "trainA" / "hostile")
    deny_reading(monkeypatch, bad / "unreadable.png")
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--preset", "model2", "--out", str(run), *TINY, "--epochs", "1"]
    fast = [
        "--set",
        "model.n_residual=1",
        "--set",
        "train.max_steps_per_epoch=2",
        "--set",
        "train.eval_images=0",
    ]
    assert main([*args, *fast]) == 0
    out = capsys.readouterr().out
    assert f"skipping {len(SKIPPED)} unreadable image(s)" in out
    for name, why in SKIPPED.items():
        (line,) = _lines_naming(out, bad, name)
        assert why in line

    result = tmp_path / "translated"
    assert main(["translate", "--run", str(run), str(bad), "--out", str(result)]) == 1
    captured = capsys.readouterr()
    for name, size in USED.items():
        assert Image.open(result / Path(name).with_suffix(".png")).size == size, name
    for name, why in SKIPPED.items():
        assert any(why in s for s in _lines_naming(captured.err, bad, name)), name
    assert f"{len(SKIPPED)} input(s) failed" in captured.err

    (tmp_path / "eval").mkdir()
    os.symlink(bad, tmp_path / "eval" / "testA")
    assert main(["eval", "--run", str(run), "--data", str(tmp_path / "eval"), "--json"]) == 0
    err = capsys.readouterr().err
    for name in [*SKIPPED, "one.png", "thin.png"]:  # the last two: too small to score
        assert _lines_naming(err, tmp_path / "eval" / "testA", name), name


def test_sr_train_upscale_and_eval_on_hostile_files(corpus: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    tiny = ["--set", "model.hidden=8", "--set", "model.n_residual=1", "--scale", "2", "--quiet"]
    tiny += ["--set", "data.eval_images=0"]
    args = ["sr", "train", "--data", str(corpus), "--out", str(run), "--size", "32", "--epochs", "1"]
    assert main([*args, *tiny, "--batch-size", "2", "--set", "train.steps_per_epoch=2"]) == 0
    out = capsys.readouterr().out
    for name, why in SKIPPED.items():
        assert any(why in s for s in _lines_naming(out, corpus, name)), name
    for name in ("one.png", "thin.png", "exif.jpg"):  # smaller than the 32 px crop
        assert any("smaller than the 32px crop" in s for s in _lines_naming(out, corpus, name)), name

    result = tmp_path / "up"
    up = ["sr", "upscale", str(corpus), "--run", str(run), "--out", str(result), "--tile", "0", "--quiet"]
    assert main(up) == 1
    err = capsys.readouterr().err
    for name, (w, h) in USED.items():
        assert Image.open(result / Path(name).with_suffix(".png")).size == (2 * w, 2 * h), name
    for name, why in SKIPPED.items():
        assert any(why in s for s in _lines_naming(err, corpus, name)), name

    assert main(["sr", "eval", "--run", str(run), "--data", str(corpus), "--json"]) == 0
    err = capsys.readouterr().err
    assert all(_lines_naming(err, corpus, name) for name in [*SKIPPED, "one.png", "thin.png"])


def test_offline_photos_skip_damaged_files(corpus: Path, monkeypatch, capsys) -> None:
    """The photo sources behind the demo data set and the built-in SR photos: a damaged wallpaper is
    skipped with a line naming it."""
    pytest.importorskip("skimage")
    from ganlab.cyclegan.demo import data as demo
    from ganlab.sr import data as sr_data

    monkeypatch.setattr(core_photos, "DEBIAN_PHOTO_DIRS", ((corpus, "lomiri-wallpapers-16.04", "lomiri"),))
    monkeypatch.setattr(core_photos, "DEBIAN_DOC_DIR", corpus / "no-doc")
    walls, _ = core_photos._debian_photos()
    jpgs = {p.path.name for p in walls}
    bad = {n for n in SKIPPED if n.endswith(".jpg")}
    assert bad < jpgs  # the damaged JPEGs are found, and every one is reported below
    notes: list[str] = []
    working, _ = demo._load_photos(walls, {"train_a": walls}, 64, notes.append, False)
    assert len(working) == len(jpgs - bad)
    for name in bad:
        (line,) = [n for n in notes if f"{corpus / name}: " in n]
        assert SKIPPED[name] in line

    def gray(v: float) -> np.ndarray:
        return np.full((48, 48, 3), v, np.float32)

    extra = [core_photos.PhotoSource(f"gen-{i}", lambda i=i: gray(i / 8), "-", "test") for i in range(6)]
    monkeypatch.setattr(sr_data, "offline_photos", lambda: walls + extra)
    sr_data._builtin_split.cache_clear()
    try:
        got = sr_data.builtin_images("train") + sr_data.builtin_images("test")
    finally:
        sr_data._builtin_split.cache_clear()
    assert len(got) == len(walls) + len(extra) - len(bad)
    err = capsys.readouterr().err
    assert all(f"{corpus / name}: " in err for name in bad)


# ------------------------------------------------------------------------------------ property fuzz

_SEEDS = [
    encoded(Image.new("RGB", (8, 6), (200, 30, 90)), fmt)
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
] + [encoded(Image.new("RGBA", (5, 7), (1, 2, 3, 4)), "PNG"), encoded(Image.new("I;16", (6, 5)), "PNG")]


@st.composite
def _image_bytes(draw: st.DrawFn) -> bytes:
    """Random bytes, or a small valid image with bytes flipped, cut off, or spliced in."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for pos, value in draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=6)
    ):
        data[pos] = value
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=40))
    return bytes(data)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_image_bytes(), st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif", ".webp"]))
def test_reader_fuzz_only_raises_image_read_error(blob: bytes, ext: str) -> None:
    fd, name = tempfile.mkstemp(suffix=ext)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        try:
            im = read_rgb(name, limit=1 << 16)  # a small limit: a mutated header may claim any size
        except ImageReadError as e:
            assert str(e).startswith(f"{name}: ")
        else:
            assert im.mode == "RGB" and im.width * im.height <= 1 << 16
        try:
            open_image(name, limit=1 << 16)
        except ImageReadError:
            pass
    finally:
        os.unlink(name)
