"""Colour photos available offline, with their licences, and the photo-level train/test split.

Photos come from what is installed locally, never from the network:

* scikit-image's bundled sample photos (read straight from its data folder, so nothing can trigger a
  pooch download),
* scikit-learn's two sample images (china, flower),
* when the Debian packages are installed, the photo wallpapers of ``lomiri-wallpapers-16.04``
  (/usr/share/backgrounds) and ``mate-backgrounds`` (/usr/share/backgrounds/mate/nature), with the
  per-file credit parsed from the packages' copyright files.

Each source is optional: a missing package just contributes no photos. Both tasks use these photos
and :func:`split_photos`, so CycleGAN's demo dataset and the super-resolution data hold out the same
test photos for a seed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ganlab.core.images import list_images, read_rgb

# (folder, Debian package, short prefix for photo names). Module-level so tests can point them elsewhere.
DEBIAN_PHOTO_DIRS: tuple[tuple[Path, str, str], ...] = (
    (Path("/usr/share/backgrounds"), "lomiri-wallpapers-16.04", "lomiri"),
    (Path("/usr/share/backgrounds/mate/nature"), "mate-backgrounds", "mate"),
)
DEBIAN_DOC_DIR = Path("/usr/share/doc")

# Colour photographs that ship inside the scikit-image wheel (file name in skimage/data, credit text
# from the loaders' docstrings). Synthetic images (colorwheel, logo, chessboard) are left out, and so is
# the right motorcycle view: it is nearly the left one, and the two could land in different splits.
_SKIMAGE_PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "astronaut.png", "NASA photograph of Eileen Collins; public domain (no known copyright)."),
    ("chelsea", "chelsea.png", "Chelsea the cat; CC0 by the photographer, Stefan van der Walt."),
    (
        "coffee",
        "coffee.png",
        "Coffee cup, courtesy of Pikolo Espresso Bar; CC0 by the photographer, Rachel Michetti.",
    ),
    ("rocket", "rocket.jpg", "DSCOVR launch on Falcon 9, SpaceX; released into the public domain by SpaceX."),
    (
        "immunohistochemistry",
        "ihc.png",
        "IHC staining of colonic glands, Center for Microscopy And Molecular Imaging (CMMI); "
        "no known copyright restrictions.",
    ),
    (
        "retina",
        "retina.jpg",
        "Fundus photograph of a normal left eye, Mikael Haggstrom (Wikimedia Commons); CC0 1.0.",
    ),
    ("hubble_deep_field", "hubble_deep_field.jpg", "Hubble eXtreme Deep Field, NASA; public domain."),
    (
        "motorcycle",
        "motorcycle_left.png",
        "Left view of the Middlebury 2014 stereo 'motorcycle' scene (Scharstein et al., Middlebury "
        "College), downsampled 4x as shipped with scikit-image; no license stated there.",
    ),
)
_SKLEARN_PHOTOS: tuple[tuple[str, str], ...] = (
    (
        "china",
        "CC BY 2.0, danielbuechele on Flickr (photos/danielbuechele/6061409035); scikit-learn sample image.",
    ),
    ("flower", "CC BY 2.0, vultilion on Flickr (photos/vultilion/6056698931); scikit-learn sample image."),
)

SPLITS = ("train_a", "train_b", "test")


@dataclass(frozen=True)
class PhotoSource:
    """One photo: a unique ``name``, a zero-argument ``loader`` returning float32 RGB (HxWx3 in [0,1],
    full resolution), its ``license``/credit text and the ``origin`` package it comes from."""

    name: str
    loader: Callable[[], np.ndarray] = field(repr=False, compare=False)
    license: str
    origin: str
    path: Path | None = None

    def load(self, max_side: int | None = None) -> np.ndarray:
        """The photo as float32 RGB in [0,1], downscaled with antialiasing (never upscaled) so its
        longer side is at most ``max_side``."""
        return np.asarray(self.load_pil(max_side), dtype=np.float32) / 255.0

    def load_pil(self, max_side: int | None = None) -> Image.Image:
        """The photo as an RGB PIL image, downscaled like :meth:`load`; read from ``path`` when set
        (may raise :class:`ganlab.core.images.ImageReadError`), else built from ``loader``."""
        if self.path is not None:
            im = read_rgb(self.path)
        else:
            im = Image.fromarray(to_uint8(self.loader()), "RGB")
        return downscale(im, max_side)


def downscale(im: Image.Image, max_side: int | None) -> Image.Image:
    """``im`` resized with antialiasing so its longer side is at most ``max_side`` (never upscaled)."""
    if max_side is None or max(im.size) <= max_side:
        return im
    s = max_side / max(im.size)
    size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
    # reducing_gap: box-reduce first, then Lanczos; fast on 5K photos and still antialiased.
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Float RGB in [0,1] (clipped) -> uint8, rounded to nearest."""
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _read_float(path: Path) -> np.ndarray:
    return np.asarray(read_rgb(path), dtype=np.float32) / 255.0


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _skimage_photos() -> list[PhotoSource]:
    """scikit-image's bundled photos; [] when scikit-image is not installed."""
    try:
        import skimage.data
    except ImportError:
        return []
    data_dir = Path(skimage.data.__file__).parent
    out = []
    for name, fname, credit in _SKIMAGE_PHOTOS:
        path = data_dir / fname
        if path.is_file():
            out.append(
                PhotoSource(f"skimage-{name}", partial(_read_float, path), credit, "scikit-image", path)
            )
    return out


def _sklearn_photos() -> list[PhotoSource]:
    """scikit-learn's sample images; [] when scikit-learn is not installed."""
    try:
        import sklearn.datasets
    except ImportError:
        return []
    # The files behind sklearn.datasets.load_sample_images(); reading them with our own reader keeps one
    # decoding path for every source.
    image_dir = Path(sklearn.datasets.__file__).parent / "images"
    out = []
    for name, credit in _SKLEARN_PHOTOS:
        path = image_dir / f"{name}.jpg"
        if path.is_file():
            out.append(
                PhotoSource(f"sklearn-{name}", partial(_read_float, path), credit, "scikit-learn", path)
            )
    return out


def _debian_copyright(package: str) -> list[dict[str, str]]:
    """Paragraphs of a machine-readable (DEP-5) Debian copyright file; [] when absent or unreadable."""
    path = DEBIAN_DOC_DIR / package / "copyright"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
        if "Files" in fields:
            paragraphs.append(fields)
    return paragraphs


def _debian_credit(paragraphs: list[dict[str, str]], filename: str, package: str) -> str:
    """Credit for one installed file. DEP-5 patterns are relative to the source tree, whose layout we do
    not know, so a pattern matches when its last component is the file name or when it matches the
    bare name as a glob ("*", "*.jpg"); as in DEP-5, the last matching paragraph wins."""
    pointer = f"Debian package {package}, see {DEBIAN_DOC_DIR / package / 'copyright'}"
    credit = None
    for par in paragraphs:
        patterns = par["Files"].split()
        if any(p.rsplit("/", 1)[-1] == filename or fnmatch.fnmatchcase(filename, p) for p in patterns):
            lic = par.get("License", "").split("\n", 1)[0]
            owner = "; ".join(
                " ".join(line.split()) for line in par.get("Copyright", "").splitlines() if line.strip()
            )
            credit = f"{lic}, (c) {owner}; {pointer}"
    return credit or f"license not found in the copyright file; {pointer}"


def _debian_photos() -> tuple[list[PhotoSource], list[str]]:
    """Wallpaper photos from the Debian packages, and the packages that were not found."""
    photos, missing = [], []
    for folder, package, prefix in DEBIAN_PHOTO_DIRS:
        files = list_images(folder, recursive=False) if folder.is_dir() else []
        files = [f for f in files if f.suffix.lower() in (".jpg", ".jpeg")]
        if not files:
            missing.append(package)
            continue
        paragraphs = _debian_copyright(package)
        for f in files:
            credit = _debian_credit(paragraphs, f.name, package)
            name = _safe_name(f"{prefix}-{f.stem}")
            photos.append(PhotoSource(name, partial(_read_float, f), credit, f"debian:{package}", f))
    return photos, missing


def find_offline_photos() -> tuple[list[PhotoSource], list[str]]:
    """Every offline photo (see :func:`offline_photos`), and the Debian wallpaper packages that were
    not found (so a caller can say what installing them would add)."""
    debian, missing = _debian_photos()
    photos = sorted(_skimage_photos() + _sklearn_photos() + debian, key=lambda p: p.name)
    return photos, missing


def offline_photos() -> list[PhotoSource]:
    """Every colour photo available on this machine without a network: scikit-image's bundled photos,
    scikit-learn's sample images and, when installed, the Debian wallpaper packages. Sorted by name."""
    return find_offline_photos()[0]


def split_photos(
    photos: Sequence[PhotoSource], seed: int = 0, test_fraction: float = 0.2, min_test: int = 2
) -> dict[str, list[PhotoSource]]:
    """Assign every photo to exactly one of ``train_a``, ``train_b`` and ``test``.

    Deterministic for a seed and independent of the input order. ``test`` gets ``round(test_fraction *
    n)`` photos but at least ``min_test``; the rest alternate between the two training splits. Photos are
    dealt within each origin package in turn, so every split gets a mix of sources (not, say, all the
    wallpapers in one training domain). Each returned list is sorted by name.
    """
    ordered = sorted(photos, key=lambda p: p.name)
    names = [p.name for p in ordered]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"photo names must be unique; duplicated: {dupes}")
    n = len(ordered)
    n_test = max(min_test, round(test_fraction * n))
    if n < n_test + 2:
        raise ValueError(
            f"need at least {n_test + 2} photos to split (test {n_test} + one per training split), got {n}"
        )

    rng = np.random.default_rng(seed)
    # Shuffle, then group by origin (stable, so the shuffle survives within a group) and deal the
    # sequence in a repeating test, A, B, A, B pattern: roughly 20/40/40 inside each origin too.
    shuffled = [ordered[i] for i in rng.permutation(n)]
    origins = sorted({p.origin for p in ordered})
    sequence = sorted(shuffled, key=lambda p: origins.index(p.origin))
    stride = max(2, round(1.0 / test_fraction)) if test_fraction > 0 else n + 1
    out: dict[str, list[PhotoSource]] = {k: [] for k in SPLITS}
    flip = 0
    for i, p in enumerate(sequence):
        if i % stride == 0 and len(out["test"]) < n_test:
            out["test"].append(p)
        else:
            out["train_a" if flip % 2 == 0 else "train_b"].append(p)
            flip += 1
    # Top up the test split from the larger training split (the pattern can fall short for small n).
    while len(out["test"]) < n_test:
        donor = "train_a" if len(out["train_a"]) >= len(out["train_b"]) else "train_b"
        out["test"].append(out[donor].pop(int(rng.integers(len(out[donor])))))
    return {k: sorted(v, key=lambda p: p.name) for k, v in out.items()}


__all__ = [
    "DEBIAN_DOC_DIR",
    "DEBIAN_PHOTO_DIRS",
    "SPLITS",
    "PhotoSource",
    "downscale",
    "find_offline_photos",
    "offline_photos",
    "split_photos",
    "to_uint8",
]
