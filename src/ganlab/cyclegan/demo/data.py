"""The offline, unpaired photo <-> cartoon dataset for trying CycleGAN on a CPU: its builder, its
manifest, and the check that a finished build with the requested parameters is present.

Photos are the offline ones of :mod:`ganlab.core.photos` (never the network), split at photo level by
``split_photos``. Domain A is photo tiles, domain B is ``cartoonize`` applied to tiles of *other*
photos, so the two training sets are genuinely unpaired; :mod:`.tiles` balances the domains' colour
and samples and matches the tiles. For evaluation, ``testB_gt/`` holds the exact cartoon of every
``testA/`` tile (same file name), which a metric can compare A->B translations against.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganlab.core.errors import MissingExtraError
from ganlab.core.images import ImageReadError, save_image
from ganlab.core.photos import PhotoSource, downscale, find_offline_photos, split_photos, to_uint8

from .cartoon import cartoonize
from .tiles import balance_domains, match_tiles, sample_tiles

# Output folders, in the reference CycleGAN layout plus the paired ground truth.
FOLDERS = ("trainA", "trainB", "testA", "testB", "testB_gt")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "ganlab-demo/3"  # 2: colour-balanced training domains; 3: tile-matched train B

Tile = tuple[str, list[int], np.ndarray]  # (photo name, [left, top, right, bottom], uint8 pixels)


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
    side is at most ``max_side`` px, and cut into ``tile`` px PNG tiles (see ``sample_tiles`` for
    ``scales`` and ``min_std``). Train B draws ``match_pool`` times as many candidate tiles as it keeps
    and keeps those whose source crops match the train A tiles in colour and contrast (``match_tiles``;
    1 turns matching off). The same arguments give byte-identical files on the same machine.
    Missing Debian wallpaper packages are reported through ``log`` and in the manifest's ``notes``.
    Stale PNGs from an earlier build in the five folders are removed; nothing else under ``out`` is.
    Raises :class:`MissingExtraError` when too few photos are found because scikit-image is missing.
    """
    out = Path(out)
    if match_pool < 1:
        raise ValueError(f"match_pool must be >= 1, got {match_pool}")
    params = _params_of(locals())
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        log(msg)

    photos = _available_photos(note)
    splits = split_photos(photos, seed, test_fraction)
    # A manifest marks a finished build; drop the old one first so an interrupted rebuild reads as
    # incomplete to ensure_demo_dataset.
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)

    working, sources = _load_photos(photos, splits, max_side, note, progress)
    splits = _usable_splits(splits, working, tile, note)
    splits, balance = balance_domains(splits, working, seed)
    for s_name, ps in splits.items():
        for p in ps:
            sources[p.name]["split"] = s_name

    counts = {"train_a": n_train_a, "train_b": n_train_b, "test": n_test}
    files = _write_tiles(
        out, splits, working, sources, counts, seed, tile, scales, min_std, match_pool, progress
    )
    _remove_stale_pngs(out, files)
    return _write_manifest(out, params, sources, splits, balance, files, notes)


def _available_photos(note: Callable[[str], None]) -> list[PhotoSource]:
    """The offline photos, noting missing Debian wallpaper packages; raises when fewer than 4 are found."""
    photos, missing = find_offline_photos()
    if missing:
        note(
            f"Debian photo package(s) not installed: {', '.join(missing)}; building from the "
            f"{len(photos)} photos available (apt install {' '.join(missing)} adds more variety)."
        )
    if len(photos) < 4:
        try:
            import skimage.data  # noqa: F401  (its bundled photos alone are enough)
        except ImportError:
            raise MissingExtraError("the offline demo dataset", "demo", "scikit-image") from None
        raise RuntimeError(
            f"only {len(photos)} offline photos found; install scikit-image and scikit-learn "
            "(pip install 'ganlab[demo]') or the Debian wallpaper packages"
        )
    return photos


def _load_photos(
    photos: list[PhotoSource],
    splits: dict[str, list[PhotoSource]],
    max_side: int,
    note: Callable[[str], None],
    progress: bool,
) -> tuple[dict[str, Image.Image], dict[str, dict]]:
    """Each readable photo downscaled to at most ``max_side`` px, and its manifest ``sources`` entry."""
    split_of = {p.name: s for s, ps in splits.items() for p in ps}
    sources: dict[str, dict] = {}
    working: dict[str, Image.Image] = {}
    for p in tqdm(photos, desc="demo photos", unit="photo", disable=not progress):
        try:
            im = p.load_pil(None)
        except ImageReadError as e:
            note(f"skipped unreadable photo {p.name}: {e}")
            continue
        working[p.name] = downscale(im, max_side)
        sources[p.name] = {
            "origin": p.origin,
            "license": p.license,
            "split": split_of[p.name],
            "original_size": list(im.size),
            "size": list(working[p.name].size),
        }
    return working, sources


def _usable_splits(
    splits: dict[str, list[PhotoSource]],
    working: dict[str, Image.Image],
    tile: int,
    note: Callable[[str], None],
) -> dict[str, list[PhotoSource]]:
    """``splits`` without the unreadable photos and those smaller than a tile; raises if one empties."""
    too_small = sorted(n for n, im in working.items() if min(im.size) < tile)
    if too_small:
        note(f"skipped photos smaller than the {tile}px tile: {', '.join(too_small)}")
    splits = {s: [p for p in ps if p.name in working and p.name not in too_small] for s, ps in splits.items()}
    empty = [s for s, ps in splits.items() if not ps]
    if empty:
        raise RuntimeError(f"no usable photos left in split(s) {empty}")
    return splits


def _write_tiles(
    out: Path,
    splits: dict[str, list[PhotoSource]],
    working: dict[str, Image.Image],
    sources: dict[str, dict],
    counts: dict[str, int],
    seed: int,
    tile: int,
    scales: Sequence[float],
    min_std: float,
    match_pool: int,
    progress: bool,
) -> dict[str, dict]:
    """Sample, cartoonize and save every split's tiles; returns the manifest's ``files`` entries."""
    files: dict[str, dict] = {}
    train_a_tiles: list[Tile] = []
    # train B samples match_pool candidates per tile; counted from the start, so the bar's total holds.
    total = sum(counts.values()) + (match_pool - 1) * counts.get("train_b", 0) * (match_pool > 1)
    with tqdm(total=total, desc="demo tiles", unit="tile", disable=not progress) as bar:
        for k, (split, count) in enumerate(counts.items()):
            # One generator per split, so changing one count leaves the other splits' tiles unchanged.
            rng = np.random.default_rng([seed, k])
            images = [(p.name, working[p.name]) for p in splits[split]]
            if split == "train_b" and match_pool > 1:
                pool = sample_tiles(images, match_pool * count, tile, scales, min_std, rng, bar)
                # One reference A tile per B tile (cycled when the counts differ).
                ref = [train_a_tiles[i % len(train_a_tiles)][2] for i in range(count)]
                tiles = [pool[j] for j in match_tiles(ref, [t[2] for t in pool])]
            else:
                tiles = sample_tiles(images, count, tile, scales, min_std, rng, bar)
            if split == "train_a":
                train_a_tiles = tiles
            for i, (name, box, arr) in enumerate(tiles):
                fname = f"{i:04d}_{name}.png"
                for folder, pixels in _tile_outputs(split, arr).items():
                    save_image(Image.fromarray(pixels, "RGB"), out / folder / fname)
                    files[f"{folder}/{fname}"] = {
                        "photo": name,
                        "split": folder,
                        "box": box,
                        "license": sources[name]["license"],
                    }
    return files


def _tile_outputs(split: str, arr: np.ndarray) -> dict[str, np.ndarray]:
    """The images one tile of ``split`` becomes, by output folder."""
    if split == "train_a":
        return {"trainA": arr}
    if split == "train_b":
        return {"trainB": _cartoon_u8(arr)}
    # Computed from the uint8 tile exactly as saved, so cartoonize(testA file / 255) reproduces testB_gt.
    gt = _cartoon_u8(arr)
    return {"testA": arr, "testB_gt": gt, "testB": gt}


def _cartoon_u8(arr: np.ndarray) -> np.ndarray:
    return to_uint8(cartoonize(arr.astype(np.float32) / 255.0))


def _remove_stale_pngs(out: Path, files: dict[str, dict]) -> None:
    """Remove PNGs left by an earlier, larger build so the folders hold exactly what the manifest lists."""
    for folder in FOLDERS:
        for f in (out / folder).glob("*.png"):
            if f"{folder}/{f.name}" not in files:
                f.unlink()


def _write_manifest(
    out: Path,
    params: dict,
    sources: dict[str, dict],
    splits: dict[str, list[PhotoSource]],
    balance: dict[str, float],
    files: dict[str, dict],
    notes: list[str],
) -> dict:
    """Write ``manifest.json`` (atomically: it marks a finished build) and return it."""
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
    "FOLDERS",
    "MANIFEST",
    "build_demo_dataset",
    "demo_dataset_problem",
    "ensure_demo_dataset",
    "file_digests",
]
