"""An offline, unpaired photo <-> cartoon dataset for trying CycleGAN on a CPU.

Photos come from what is installed locally, never from the network:

* scikit-image's bundled sample photos (read straight from its data folder, so nothing can trigger a
  pooch download),
* scikit-learn's two sample images (china, flower),
* when the Debian packages are installed, the photo wallpapers of ``lomiri-wallpapers-16.04``
  (/usr/share/backgrounds) and ``mate-backgrounds`` (/usr/share/backgrounds/mate/nature), with the
  per-file credit parsed from the packages' copyright files.

Domain A is photo tiles, domain B is ``cartoonize`` applied to tiles of *other* photos, so the two
training sets are genuinely unpaired. For evaluation, ``testB_gt/`` holds the exact cartoon of every
``testA/`` tile (same file name), which a metric can compare A->B translations against.

``offline_photos`` and ``split_photos`` are public so other experiments (super-resolution) can use the
same photos and the same photo-level train/test split.
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganlab.core.images import ImageReadError, list_images, read_rgb, save_image

from .cartoon import cartoonize

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
# Output folders, in the reference CycleGAN layout plus the paired ground truth.
FOLDERS = ("trainA", "trainB", "testA", "testB", "testB_gt")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "ganlab-demo/3"  # 2: colour-balanced training domains; 3: tile-matched train B


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
        return np.asarray(self._load_pil(max_side), dtype=np.float32) / 255.0

    def _load_pil(self, max_side: int | None) -> Image.Image:
        if self.path is not None:
            im = read_rgb(self.path)
        else:
            im = Image.fromarray(_to_uint8(self.loader()), "RGB")
        return _downscale(im, max_side)


def _downscale(im: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None or max(im.size) <= max_side:
        return im
    s = max_side / max(im.size)
    size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
    # reducing_gap: box-reduce first, then Lanczos; fast on 5K photos and still antialiased.
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _read_float(path: Path) -> np.ndarray:
    return np.asarray(read_rgb(path), dtype=np.float32) / 255.0


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _skimage_photos() -> list[PhotoSource]:
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


def offline_photos() -> list[PhotoSource]:
    """Every colour photo available on this machine without a network: scikit-image's bundled photos,
    scikit-learn's sample images and, when installed, the Debian wallpaper packages. Sorted by name."""
    photos = _skimage_photos() + _sklearn_photos() + _debian_photos()[0]
    return sorted(photos, key=lambda p: p.name)


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


def _colour_features(rgb: np.ndarray) -> np.ndarray:
    """Mean CIELAB L, a*, b*, chroma and the standard deviation of L (contrast) of an HxWx3 uint8 image."""
    from ganlab.core.metrics import rgb_to_lab

    lab = rgb_to_lab(rgb.astype(np.float64) / 255.0).reshape(-1, 3)
    return np.array([*lab.mean(0), np.hypot(lab[:, 1], lab[:, 2]).mean(), lab[:, 0].std()])


def _colour_stats(im: Image.Image) -> np.ndarray:
    """Mean CIELAB L, a*, b* and chroma of a photo (on a 96 px thumbnail: only the average matters)."""
    thumb = im.copy()
    thumb.thumbnail((96, 96), Image.Resampling.BILINEAR)
    return _colour_features(np.asarray(thumb))[:4]


def balance_domains(
    splits: dict[str, list[PhotoSource]],
    working: dict[str, Image.Image],
    seed: int = 0,
    candidates: int = 256,
) -> tuple[dict[str, list[PhotoSource]], dict[str, float]]:
    """Re-deal the training photos between ``train_a`` and ``train_b`` so the two domains have the same
    average colour; the test split is kept as it is.

    With a few dozen photos a random split gives the two domains different colour statistics (measured
    on seed 0: train B's cartoons averaged b* 12.6 against 25.2 for the cartoons of train A, i.e. bluer
    and less saturated). A discriminator then tells the domains apart by content colour as well as by
    style, and the generators learn a colour shift (a blue tint) instead of the style. Among
    ``candidates`` seeded re-deals that keep each origin's photos alternating between the domains (plus
    the original deal), pick the one whose domain means of L, a*, b* and chroma (photos weighted like
    the tile sampler, by the square root of their area) are closest. Returns the splits and the
    before/after distance (CIELAB units).
    """
    pool = sorted(splits["train_a"] + splits["train_b"], key=lambda p: p.name)
    stats = {p.name: _colour_stats(working[p.name]) for p in pool}
    weight = {p.name: float(np.sqrt(working[p.name].width * working[p.name].height)) for p in pool}

    def distance(a: list[PhotoSource], b: list[PhotoSource]) -> float:
        def mean(ps: list[PhotoSource]) -> np.ndarray:
            w = np.array([weight[p.name] for p in ps])
            return (np.stack([stats[p.name] for p in ps]) * w[:, None]).sum(0) / w.sum()

        return float(np.linalg.norm(mean(a) - mean(b)))

    best = (distance(splits["train_a"], splits["train_b"]), splits["train_a"], splits["train_b"])
    before = best[0]
    groups = [[p for p in pool if p.origin == o] for o in sorted({p.origin for p in pool})]
    rng = np.random.default_rng([seed, 1000])
    for _ in range(candidates):
        a: list[PhotoSource] = []
        b: list[PhotoSource] = []
        flip = int(rng.integers(2))
        for group in groups:
            for i in rng.permutation(len(group)):
                (a if flip % 2 == 0 else b).append(group[i])
                flip += 1
        if a and b and (d := distance(a, b)) < best[0]:
            best = (d, a, b)
    out = dict(splits)
    out["train_a"] = sorted(best[1], key=lambda p: p.name)
    out["train_b"] = sorted(best[2], key=lambda p: p.name)
    return out, {"before": round(before, 3), "after": round(best[0], 3)}


def _luma_std(tile: np.ndarray) -> float:
    return float((tile.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).std() / 255.0)


def _sample_tiles(
    images: list[tuple[str, Image.Image]],
    n: int,
    tile: int,
    scales: Sequence[float],
    min_std: float,
    rng: np.random.Generator,
    bar: tqdm,
) -> list[tuple[str, list[int], np.ndarray]]:
    """n random square crops (photo, [left, top, right, bottom], uint8 tile x tile x 3) from ``images``.

    Crops of ``scale * tile`` px are resized to ``tile`` px, which mixes fine detail and broader
    structure. Photos are picked with probability proportional to the square root of their area so a
    big photo contributes more tiles without drowning the small ones. Nearly flat crops (luminance
    standard deviation below ``min_std``) are redrawn.
    """
    areas = np.array([im.width * im.height for _, im in images], dtype=np.float64)
    p = np.sqrt(areas) / np.sqrt(areas).sum()
    out: list[tuple[str, list[int], np.ndarray]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise RuntimeError(
                f"only {len(out)} of {n} tiles were not nearly flat after {attempts} tries; lower min_std"
            )
        name, im = images[int(rng.choice(len(images), p=p))]
        size = min(round(tile * float(rng.choice(scales))), im.width, im.height)
        left = int(rng.integers(0, im.width - size + 1))
        top = int(rng.integers(0, im.height - size + 1))
        box = [left, top, left + size, top + size]
        crop = im.crop(box)
        if size != tile:
            crop = crop.resize((tile, tile), Image.Resampling.LANCZOS)
        arr = np.asarray(crop, dtype=np.uint8)
        if _luma_std(arr) < min_std:
            continue
        out.append((name, box, arr))
        bar.update(1)
    return out


def _tile_features(tiles: Sequence[np.ndarray]) -> np.ndarray:
    """(n, 5) ``_colour_features`` of each tile, on 32 px copies."""
    return np.stack(
        [
            _colour_features(np.asarray(Image.fromarray(t).resize((32, 32), Image.Resampling.BILINEAR)))
            for t in tiles
        ]
    )


def match_tiles(reference: Sequence[np.ndarray], candidates: Sequence[np.ndarray]) -> list[int]:
    """Indices of ``len(reference)`` distinct candidates, one per reference tile, picked so the chosen
    candidates have the reference tiles' colour and contrast distribution (``_tile_features``).

    Why: with a few photos per domain, the photos behind the B tiles differ from the A photos in
    colour and contrast (measured on seed 0, whole-photo balance only: the cartoons of train B were 4 L*
    darker, 5 b* bluer and 17% more contrasted than the cartoons of train A would be). A GAN cannot tell
    that content difference from the style and learns it as part of the mapping (a dark blue cast).
    Greedy nearest neighbour in standardised feature space, reference tiles taken hardest-first (those
    whose nearest candidate is farthest), so rare colours get their best match before it is used up.
    """
    if len(candidates) < len(reference):
        raise ValueError(f"need at least {len(reference)} candidates, got {len(candidates)}")
    ref, cand = _tile_features(reference), _tile_features(candidates)
    scale = np.concatenate([ref, cand]).std(0) + 1e-6
    dist = np.linalg.norm((ref[:, None, :] - cand[None, :, :]) / scale, axis=2)  # (n_ref, n_cand)
    free = np.ones(len(candidates), dtype=bool)
    chosen = [-1] * len(reference)
    # Stable sort on (-nearest distance): deterministic ties.
    for i in np.argsort(-dist.min(1), kind="stable"):
        j = int(np.argmin(np.where(free, dist[i], np.inf)))
        chosen[i] = j
        free[j] = False
    return chosen


def build_demo_dataset(
    out: str | Path,
    seed: int = 0,
    tile: int = 128,
    n_train_a: int = 400,
    n_train_b: int = 400,
    n_test: int = 48,
    max_side: int = 640,
    scales: Sequence[float] = (1.0, 1.5, 2.0),
    min_std: float = 0.04,
    test_fraction: float = 0.2,
    match_pool: int = 12,
    log: Callable[[str], object] = print,
    progress: bool = True,
) -> dict:
    """Build the photo -> cartoon demo dataset under ``out`` and return its manifest.

    Layout: ``trainA/`` photo tiles, ``trainB/`` cartoons of tiles from other photos, ``testA/`` tiles
    of held-out photos, ``testB_gt/`` the cartoon of each testA tile under the same file name (paired
    ground truth, for evaluation only), ``testB/`` the same cartoons again for the B->A direction (whose
    ground truth is then testA), and ``manifest.json``.

    Photos are split with ``split_photos(offline_photos(), seed, test_fraction)``, the training photos
    re-dealt by ``balance_domains`` so both domains have the same average colour, downscaled so the long
    side is at most ``max_side`` px, and cut into ``tile`` px PNG tiles (see ``_sample_tiles`` for
    ``scales`` and ``min_std``). Train B draws ``match_pool`` times as many candidate tiles as it keeps
    and keeps those whose source crops match the train A tiles in colour and contrast (``match_tiles``;
    1 turns matching off). The same arguments give byte-identical files on the same machine.
    Missing Debian wallpaper packages are reported through ``log`` and in the manifest's ``notes``.
    Stale PNGs from an earlier build in the five folders are removed; nothing else under ``out`` is.
    """
    out = Path(out)
    if match_pool < 1:
        raise ValueError(f"match_pool must be >= 1, got {match_pool}")
    params = _params_of(locals())
    notes: list[str] = []
    debian, missing = _debian_photos()
    photos = sorted(_skimage_photos() + _sklearn_photos() + debian, key=lambda p: p.name)
    if missing:
        msg = (
            f"Debian photo package(s) not installed: {', '.join(missing)}; building from the "
            f"{len(photos)} photos available (apt install {' '.join(missing)} adds more variety)."
        )
        notes.append(msg)
        log(msg)
    if len(photos) < 4:
        raise RuntimeError(
            f"only {len(photos)} offline photos found; install scikit-image and scikit-learn "
            "(pip install 'ganlab[demo]') or the Debian wallpaper packages"
        )
    splits = split_photos(photos, seed, test_fraction)
    split_of = {p.name: s for s, ps in splits.items() for p in ps}

    # A manifest marks a finished build; drop the old one first so an interrupted rebuild reads as
    # incomplete to ensure_demo_dataset.
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)

    sources: dict[str, dict] = {}
    working: dict[str, Image.Image] = {}
    for p in tqdm(photos, desc="demo photos", unit="photo", disable=not progress):
        try:
            im = p._load_pil(None)
        except ImageReadError as e:
            msg = f"skipped unreadable photo {p.name}: {e}"
            notes.append(msg)
            log(msg)
            continue
        working[p.name] = _downscale(im, max_side)
        sources[p.name] = {
            "origin": p.origin,
            "license": p.license,
            "split": split_of[p.name],
            "original_size": list(im.size),
            "size": list(working[p.name].size),
        }
    too_small = sorted(n for n, im in working.items() if min(im.size) < tile)
    if too_small:
        msg = f"skipped photos smaller than the {tile}px tile: {', '.join(too_small)}"
        notes.append(msg)
        log(msg)
    splits = {s: [p for p in ps if p.name in working and p.name not in too_small] for s, ps in splits.items()}
    empty = [s for s, ps in splits.items() if not ps]
    if empty:
        raise RuntimeError(f"no usable photos left in split(s) {empty}")
    splits, balance = balance_domains(splits, working, seed)
    for s_name, ps in splits.items():
        for p in ps:
            sources[p.name]["split"] = s_name

    def cartoon_u8(arr: np.ndarray) -> np.ndarray:
        return _to_uint8(cartoonize(arr.astype(np.float32) / 255.0))

    files: dict[str, dict] = {}
    train_a_tiles: list[tuple[str, list[int], np.ndarray]] = []
    jobs = (("train_a", n_train_a), ("train_b", n_train_b), ("test", n_test))
    with tqdm(
        total=n_train_a + n_train_b + n_test, desc="demo tiles", unit="tile", disable=not progress
    ) as bar:
        for k, (split, count) in enumerate(jobs):
            # One generator per split, so changing one count leaves the other splits' tiles unchanged.
            rng = np.random.default_rng([seed, k])
            images = [(p.name, working[p.name]) for p in splits[split]]
            if split == "train_b" and match_pool > 1:
                bar.total += (match_pool - 1) * count
                pool = _sample_tiles(images, match_pool * count, tile, scales, min_std, rng, bar)
                # One reference A tile per B tile (cycled when the counts differ).
                ref = [train_a_tiles[i % len(train_a_tiles)][2] for i in range(count)]
                tiles = [pool[j] for j in match_tiles(ref, [t[2] for t in pool])]
            else:
                tiles = _sample_tiles(images, count, tile, scales, min_std, rng, bar)
            if split == "train_a":
                train_a_tiles = tiles
            for i, (name, box, arr) in enumerate(tiles):
                if split == "train_a":
                    outputs = {"trainA": arr}
                elif split == "train_b":
                    outputs = {"trainB": cartoon_u8(arr)}
                else:
                    # Computed from the uint8 tile exactly as saved, so cartoonize(testA file / 255)
                    # reproduces testB_gt.
                    gt = cartoon_u8(arr)
                    outputs = {"testA": arr, "testB_gt": gt, "testB": gt}
                fname = f"{i:04d}_{name}.png"
                for folder, pixels in outputs.items():
                    save_image(Image.fromarray(pixels, "RGB"), out / folder / fname)
                    files[f"{folder}/{fname}"] = {
                        "photo": name,
                        "split": folder,
                        "box": box,
                        "license": sources[name]["license"],
                    }

    # Remove PNGs left by an earlier, larger build so the folders hold exactly what the manifest lists.
    for folder in FOLDERS:
        for f in (out / folder).glob("*.png"):
            if f"{folder}/{f.name}" not in files:
                f.unlink()

    manifest = {
        "format": MANIFEST_FORMAT,
        "params": params,
        "box_coordinates": "[left, top, right, bottom] in pixels of the photo resized to sources[photo].size",
        "testB": "testB holds the same cartoons as testB_gt, so testA is the paired ground truth for B->A",
        "sources": sources,
        "splits": {s: [p.name for p in ps] for s, ps in splits.items()},
        # Distance between the training domains' mean L, a*, b*, chroma before/after balance_domains.
        "domain_colour_distance": balance,
        "counts": {folder: sum(1 for f in files.values() if f["split"] == folder) for folder in FOLDERS},
        "files": files,
        "notes": notes,
    }
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(out / MANIFEST)
    return manifest


def _params_of(arguments: dict) -> dict:
    """The build arguments that determine the output, JSON-shaped (tuples -> lists)."""
    keep = [
        k for k in inspect.signature(build_demo_dataset).parameters if k not in ("out", "log", "progress")
    ]
    return {k: list(arguments[k]) if isinstance(arguments[k], tuple) else arguments[k] for k in keep}


def _requested_params(seed: int, kwargs: dict) -> dict:
    sig = inspect.signature(build_demo_dataset)
    bound = sig.bind(None, seed=seed, **kwargs)
    bound.apply_defaults()
    return _params_of(bound.arguments)


def demo_dataset_problem(out: str | Path, seed: int = 0, **kwargs) -> str | None:
    """Why the dataset under ``out`` is not a finished build for these arguments, or None if it is."""
    out = Path(out)
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{out / MANIFEST} is missing"
    except (OSError, ValueError) as e:
        return f"{out / MANIFEST} is unreadable ({e})"
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return f"{out / MANIFEST} is not a {MANIFEST_FORMAT} manifest"
    if manifest.get("params") != _requested_params(seed, kwargs):
        return "it was built with different parameters"
    files = manifest.get("files") or {}
    missing = [f for f in files if not (out / f).is_file()]
    if missing:
        return f"{len(missing)} listed file(s) are missing, e.g. {missing[0]}"
    return None


def ensure_demo_dataset(
    out: str | Path, seed: int = 0, log: Callable[[str], object] = print, **kwargs
) -> Path:
    """Return ``out``, building the demo dataset there first unless a finished build with the same
    arguments (``seed`` and any ``build_demo_dataset`` keyword in ``kwargs``) is already present."""
    out = Path(out)
    problem = demo_dataset_problem(out, seed, **kwargs)
    if problem is None:
        return out
    log(f"building the demo dataset in {out} ({problem})")
    build_demo_dataset(out, seed=seed, log=log, **kwargs)
    return out


def file_digests(root: str | Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path (used to check reproducibility)."""
    root = Path(root)
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


__all__ = [
    "DEBIAN_PHOTO_DIRS",
    "PhotoSource",
    "balance_domains",
    "build_demo_dataset",
    "demo_dataset_problem",
    "ensure_demo_dataset",
    "file_digests",
    "offline_photos",
    "split_photos",
]
