"""Colour balance and tiles for the demo dataset: which training photos go to which domain, and which
square crops of them become the training and test tiles.

Why balance at all: with a few dozen photos per domain, the photos behind one domain differ from the
other's in colour and contrast. A discriminator then tells the domains apart by content colour as well
as by style, and the generators learn a colour shift (such as a blue tint) as part of the mapping
(docs/cpu-recipe.md has the measurements). ``balance_domains`` evens out the photos' average colour;
``match_tiles`` then picks train B tiles whose colour and contrast follow the train A tiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ganlab.core.metrics import rgb_to_lab
from ganlab.core.photos import PhotoSource


def _colour_features(rgb: np.ndarray) -> np.ndarray:
    """Mean CIELAB L, a*, b*, chroma and the standard deviation of L (contrast) of an HxWx3 uint8 image."""
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

    A random split of a few dozen photos gives the two domains different colour statistics (see the
    module docstring for why that matters). Among ``candidates`` seeded re-deals that keep each origin's
    photos alternating between the domains (plus the original deal), pick the one whose domain means of
    L, a*, b* and chroma (photos weighted like the tile sampler, by the square root of their area) are
    closest. Returns the splits and the before/after distance (CIELAB units).
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


def sample_tiles(
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
    standard deviation below ``min_std``) are redrawn. ``bar`` advances by one per kept tile.
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

    Why: even with the photos' average colour balanced, the crops behind the B tiles can differ from
    the A tiles in brightness, colour and contrast, and a GAN learns that content difference as part of
    the mapping. Greedy nearest neighbour in standardised feature space, reference tiles taken
    hardest-first (those whose nearest candidate is farthest), so rare colours get their best match
    before it is used up.
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


__all__ = ["balance_domains", "match_tiles", "sample_tiles"]
