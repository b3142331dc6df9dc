"""The offline demo dataset (photo tiles vs. cartoon tiles), the offline photos and their split, and the
cartoon rendering behind it."""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from ganlab.core import photos as core_photos  # noqa: E402
from ganlab.core.errors import MissingExtraError  # noqa: E402
from ganlab.core.images import read_rgb  # noqa: E402
from ganlab.cyclegan.demo import data as demo  # noqa: E402
from ganlab.cyclegan.demo import tiles as demo_tiles  # noqa: E402
from ganlab.cyclegan.demo.cartoon import cartoonize  # noqa: E402

SMALL = dict(n_train_a=10, n_train_b=10, n_test=4, tile=64, max_side=320)


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Pretend neither Debian wallpaper package is installed."""
    missing = tmp_path / "not-installed"
    monkeypatch.setattr(
        core_photos,
        "DEBIAN_PHOTO_DIRS",
        (
            (missing / "backgrounds", "lomiri-wallpapers-16.04", "lomiri"),
            (missing / "mate", "mate-backgrounds", "mate"),
        ),
    )
    monkeypatch.setattr(core_photos, "DEBIAN_DOC_DIR", missing / "doc")


def _photo_like(seed: int, h: int = 300, w: int = 420) -> np.ndarray:
    """A smooth random colour field with a few hard-edged discs: structure without any real photo."""
    rng = np.random.default_rng(seed)
    small = rng.random((6, 8, 3)).astype(np.float32)
    img = (
        np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
        / 255
    )
    yy, xx = np.mgrid[:h, :w]
    for _ in range(6):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(15, 60)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.random(3)
    return img


# ---------------------------------------------------------------- cartoon


def test_cartoon_shape_range_deterministic_and_fast():
    img = _photo_like(0, 128, 128)
    out = cartoonize(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(out, cartoonize(img.copy()))
    assert not np.allclose(out, img, atol=0.02)  # it actually restyles
    t = time.perf_counter()
    for _ in range(5):
        cartoonize(img)
    # ~5 ms here; generous so a busy shared CPU does not fail the test.
    assert (time.perf_counter() - t) / 5 < 0.2
    assert cartoonize(img[:3, :2]).shape == (3, 2, 3)  # tiny images do not crash the padding


def test_cartoon_depends_on_neighbourhood_not_just_pixel_colour():
    grey = np.float32(0.45)
    img = np.full((32, 32, 3), grey, np.float32)
    img[:, 16:] = 0.95  # a bright half: the pixel next to the boundary gets an outline
    out = cartoonize(img)
    flat, border = (16, 4), (16, 15)
    assert np.array_equal(img[flat], img[border])  # same input colour...
    assert out[border].mean() < 0.5 * out[flat].mean()  # ...but the border pixel is drawn dark


def test_cartoon_is_local():
    img = _photo_like(1, 64, 64)
    base = cartoonize(img)
    far = img.copy()
    far[40:, 40:] = 1.0 - far[40:, 40:]
    changed = np.any(cartoonize(far) != base, axis=2)
    # Receptive field: 2 bilateral passes of radius 2 plus the 3x3 Sobel = 5 px.
    assert not changed[:35, :].any() and not changed[:, :35].any()
    assert changed[40:, 40:].any()


# ---------------------------------------------------------------- photos and splits


def _fake_sources(n: int) -> list[core_photos.PhotoSource]:
    origins = ["pkg-a", "pkg-b", "pkg-c"]
    return [
        core_photos.PhotoSource(f"p{i:02d}", partial(_photo_like, i), "CC0", origins[i % 3 if i < 9 else 0])
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [4, 10, 37])
def test_split_photos_partition_is_deterministic_and_order_free(n):
    photos = _fake_sources(n)
    s = core_photos.split_photos(photos, seed=3)
    names = {k: [p.name for p in v] for k, v in s.items()}
    all_names = sum(names.values(), [])
    assert sorted(all_names) == sorted(p.name for p in photos)  # every photo exactly once
    assert len(names["test"]) == max(2, round(0.2 * n))
    assert names["train_a"] and names["train_b"]
    again = core_photos.split_photos(list(reversed(photos)), seed=3)
    assert {k: [p.name for p in v] for k, v in again.items()} == names
    others = [core_photos.split_photos(photos, seed=k) for k in range(5)]
    assert len({tuple(p.name for p in o["test"]) for o in others}) > 1  # the seed matters


def test_split_photos_rejects_too_few_and_duplicates():
    with pytest.raises(ValueError, match="at least"):
        core_photos.split_photos(_fake_sources(3))
    dup = _fake_sources(5)
    dup[1] = core_photos.PhotoSource("p00", dup[1].loader, "CC0", "pkg-a")
    with pytest.raises(ValueError, match="unique"):
        core_photos.split_photos(dup)


def test_balance_domains_matches_colour_and_keeps_the_test_split():
    # Twelve flat photos: six bluish, six reddish; a deal that puts all the blue ones in domain A.
    def flat(rgb):
        return Image.new("RGB", (64, 48), rgb)

    photos = [
        core_photos.PhotoSource(f"p{i:02d}", None, "CC0", "pkg-a" if i % 2 else "pkg-b") for i in range(14)
    ]
    working = {p.name: flat((40, 60, 200) if i < 6 else (200, 60, 40)) for i, p in enumerate(photos)}
    splits = {"train_a": photos[:6], "train_b": photos[6:12], "test": photos[12:]}
    out, dist = demo_tiles.balance_domains(splits, working, seed=0)
    assert [p.name for p in out["test"]] == ["p12", "p13"]
    names = sorted(p.name for p in out["train_a"] + out["train_b"])
    assert names == [f"p{i:02d}" for i in range(12)]  # the same training photos, each once
    assert abs(len(out["train_a"]) - len(out["train_b"])) <= 1
    assert dist["before"] > 50 and dist["after"] < 0.2 * dist["before"]
    blue = {f"p{i:02d}" for i in range(6)}
    assert 0 < sum(p.name in blue for p in out["train_a"]) < 6  # both colours in each domain
    again, _ = demo_tiles.balance_domains(splits, working, seed=0)
    assert [p.name for p in again["train_a"]] == [p.name for p in out["train_a"]]  # deterministic


def test_match_tiles_follows_the_reference_colour_distribution():
    # Reference: 20 tiles, half reddish half bluish. Candidates: 60 tiles, mostly grey, a few of each.
    rng = np.random.default_rng(0)

    def tiles(rgb, n):
        base = np.array(rgb, dtype=np.float64)
        return [np.clip(base + rng.normal(0, 6, (16, 16, 3)), 0, 255).astype(np.uint8) for _ in range(n)]

    ref = tiles((200, 60, 40), 10) + tiles((40, 60, 200), 10)
    cand = tiles((128, 128, 128), 36) + tiles((190, 70, 50), 12) + tiles((50, 70, 190), 12)
    idx = demo_tiles.match_tiles(ref, cand)
    assert len(idx) == 20 and len(set(idx)) == 20  # distinct candidates, one per reference tile
    assert all(36 <= j < 48 for j in idx[:10]) and all(48 <= j for j in idx[10:])  # reds and blues
    assert idx == demo_tiles.match_tiles(ref, cand)  # deterministic
    with pytest.raises(ValueError, match="at least 20 candidates"):
        demo_tiles.match_tiles(ref, cand[:19])


def test_build_rejects_a_bad_match_pool_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="match_pool must be >= 1"):
        demo.build_demo_dataset(tmp_path / "out", match_pool=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_build_without_scikit_image_names_the_extra(tmp_path, no_debian, monkeypatch):
    for module in ("skimage", "skimage.data", "sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    assert core_photos.offline_photos() == []
    with pytest.raises(MissingExtraError, match=r"scikit-image.*ganlab\[demo\]"):
        demo.build_demo_dataset(tmp_path / "out", progress=False, log=lambda s: None)
    assert not (tmp_path / "out").exists()


def test_offline_photos_load_as_float_rgb(no_debian):
    photos = core_photos.offline_photos()
    names = [p.name for p in photos]
    assert "skimage-astronaut" in names and "sklearn-china" in names
    assert not any(n.startswith(("lomiri-", "mate-")) for n in names)
    p = photos[names.index("sklearn-china")]
    full = p.loader()
    assert full.dtype == np.float32 and full.shape == (427, 640, 3) and 0 <= full.min() and full.max() <= 1
    small = p.load(max_side=200)
    assert max(small.shape[:2]) == 200 and small.dtype == np.float32
    assert all(p.license and p.origin for p in photos)


# ---------------------------------------------------------------- the dataset


def _files_on_disk(root: Path) -> set[str]:
    return {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()}


def test_build_is_deterministic_and_manifest_is_complete(tmp_path, no_debian):
    logged: list[str] = []
    m1 = demo.build_demo_dataset(tmp_path / "a", seed=5, log=logged.append, progress=False, **SMALL)
    demo.build_demo_dataset(tmp_path / "b", seed=5, log=lambda s: None, progress=False, **SMALL)
    d1, d2 = demo.file_digests(tmp_path / "a"), demo.file_digests(tmp_path / "b")
    assert d1 == d2 and len(d1) == 10 + 10 + 3 * 4 + 1

    # Missing Debian packages: one logged line, and a note in the manifest.
    assert len(logged) == 1 and "lomiri-wallpapers-16.04" in logged[0] and "mate-backgrounds" in logged[0]
    assert m1["notes"] == logged

    root = tmp_path / "a"
    assert json.loads((root / "manifest.json").read_text()) == m1
    assert _files_on_disk(root) == set(m1["files"]) | {"manifest.json"}
    assert m1["counts"] == {"trainA": 10, "trainB": 10, "testA": 4, "testB": 4, "testB_gt": 4}

    # Splits are disjoint at the photo level, and each file comes from a photo of its own split.
    split_sets = {k: set(v) for k, v in m1["splits"].items()}
    assert not (split_sets["train_a"] & split_sets["train_b"])
    assert not (split_sets["test"] & (split_sets["train_a"] | split_sets["train_b"]))
    folder_split = {
        "trainA": "train_a",
        "trainB": "train_b",
        "testA": "test",
        "testB": "test",
        "testB_gt": "test",
    }
    for rel, entry in m1["files"].items():
        assert rel.split("/")[0] == entry["split"]
        assert entry["photo"] in split_sets[folder_split[entry["split"]]]
        assert m1["sources"][entry["photo"]]["split"] == folder_split[entry["split"]]
        assert entry["license"] and len(entry["box"]) == 4
        left, top, right, bottom = entry["box"]
        w, h = m1["sources"][entry["photo"]]["size"]
        assert 0 <= left < right <= w and 0 <= top < bottom <= h and right - left == bottom - top

    # testB_gt pairs 1:1 with testA by name, and is exactly the cartoon of the saved testA tile.
    names_a = sorted(p.name for p in (root / "testA").iterdir())
    assert names_a == sorted(p.name for p in (root / "testB_gt").iterdir())
    assert names_a == sorted(p.name for p in (root / "testB").iterdir())
    for name in names_a:
        a = np.asarray(read_rgb(root / "testA" / name), np.float32) / 255
        gt = np.asarray(read_rgb(root / "testB_gt" / name))
        assert gt.shape == (64, 64, 3)
        assert np.array_equal(gt, (np.clip(cartoonize(a), 0, 1) * 255 + 0.5).astype(np.uint8))

    # No nearly-flat tiles.
    for rel in list(m1["files"])[:10]:
        lum = np.asarray(read_rgb(root / rel).convert("L"), np.float32) / 255
        assert lum.std() > 0.02


def test_build_uses_debian_folders_with_their_credits(tmp_path, monkeypatch):
    walls = tmp_path / "backgrounds"
    walls.mkdir()
    for i, name in enumerate(["Lake_by_Someone.jpg", "Hill_by_Other.jpg"]):
        Image.fromarray((_photo_like(10 + i, 900, 1400) * 255).astype(np.uint8)).save(
            walls / name, quality=90
        )
    doc = tmp_path / "doc" / "lomiri-wallpapers-16.04"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: Packagers\nLicense: Expat\n\n"
        "Files: 16.04/Lake_by_Someone.jpg\nCopyright: Some One, 2018\nLicense: CC-BY-4.0\n"
    )
    monkeypatch.setattr(
        core_photos,
        "DEBIAN_PHOTO_DIRS",
        ((walls, "lomiri-wallpapers-16.04", "lomiri"), (tmp_path / "none", "mate-backgrounds", "mate")),
    )
    monkeypatch.setattr(core_photos, "DEBIAN_DOC_DIR", tmp_path / "doc")
    logged: list[str] = []
    m = demo.build_demo_dataset(tmp_path / "out", seed=1, log=logged.append, progress=False, **SMALL)
    lake, hill = m["sources"]["lomiri-Lake_by_Someone"], m["sources"]["lomiri-Hill_by_Other"]
    assert lake["license"].startswith("CC-BY-4.0, (c) Some One, 2018")
    assert hill["license"].startswith("Expat")  # only the catch-all paragraph names it
    assert lake["original_size"] == [1400, 900] and max(lake["size"]) == 320  # downscaled first
    assert len(logged) == 1 and "mate-backgrounds" in logged[0] and "lomiri" not in logged[0]


def test_ensure_builds_only_when_needed(tmp_path, no_debian):
    out = tmp_path / "demo"
    logged: list[str] = []
    kw = dict(log=logged.append, progress=False, **SMALL)
    assert demo.ensure_demo_dataset(out, seed=2, **kw) == out
    assert any("building" in line for line in logged)
    before = demo.file_digests(out)

    logged.clear()
    demo.ensure_demo_dataset(out, seed=2, **kw)
    assert logged == []  # complete and same parameters: nothing to do

    victim = next(iter(sorted((out / "trainB").iterdir())))
    victim.unlink()
    demo.ensure_demo_dataset(out, seed=2, **kw)
    assert any("missing" in line for line in logged)
    assert demo.file_digests(out) == before

    # Different parameters rebuild, and the PNGs of the larger earlier build do not linger.
    logged.clear()
    demo.ensure_demo_dataset(out, seed=2, **{**kw, "n_train_a": 4})
    assert any("different parameters" in line for line in logged)
    assert len(list((out / "trainA").iterdir())) == 4
    assert demo.demo_dataset_problem(out, seed=2, **{**SMALL, "n_train_a": 4}) is None
