"""Unpaired two-domain data: scan and validate, resize, random crop, flip; B paired with A at random.

Randomness is a pure function of (seed, epoch): each epoch has a plan of (index A, index B, item seed)
triples, so the data order is the same with any number of workers and a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ganlab.core.distributed import shard
from ganlab.core.errors import DataError
from ganlab.core.images import ImageReadError, list_images, pil_to_tensor, read_rgb
from ganlab.cyclegan.config import DataConfig


@dataclass
class Domain:
    """The usable images of one domain (decoded and resized when cached) and what was skipped."""

    name: str
    folder: Path
    paths: list[Path]
    images: list[np.ndarray] | None  # uint8 (load, load, 3) when cached
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def resolve_folders(cfg: DataConfig, split: str = "train") -> tuple[Path, Path]:
    """(folder A, folder B) from ``root`` (reference layout trainA/trainB) or explicit ``a``/``b``."""
    if cfg.a or cfg.b:
        if not (cfg.a and cfg.b):
            raise DataError("give both domain folders (--data-a and --data-b), or --data with trainA/trainB")
        return Path(cfg.a), Path(cfg.b)
    if not cfg.root:
        raise DataError(
            "no data given: pass --data DIR (with trainA/ and trainB/) or --data-a DIR --data-b DIR"
        )
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    return root / f"{split}A", root / f"{split}B"


def _resize_square(im: Image.Image, size: int) -> np.ndarray:
    return np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.uint8)


def scan_domain(
    name: str, folder: Path, load_size: int | None, max_images: int | None = None, progress: bool = True
) -> Domain:
    """List and decode every image of a domain; unreadable files are recorded in ``skipped``.

    With ``load_size`` the decoded images are resized to load_size x load_size and kept in memory.
    """
    if not folder.is_dir():
        raise DataError(f"domain {name}: folder not found: {folder}")
    files = list_images(folder)
    if max_images:
        files = files[:max_images]
    paths: list[Path] = []
    images: list[np.ndarray] = []
    skipped: list[tuple[Path, str]] = []
    for p in tqdm(
        files,
        desc=f"checking {name} images",
        unit="img",
        disable=not progress or len(files) < 50,
        leave=False,
    ):
        try:
            im = read_rgb(p)
        except ImageReadError as e:
            skipped.append((p, str(e).removeprefix(f"{p}: ")))
            continue
        paths.append(p)
        if load_size:
            images.append(_resize_square(im, load_size))
    if not paths:
        why = f" ({len(skipped)} unreadable)" if skipped else ""
        raise DataError(f"domain {name}: no usable images in {folder}{why}")
    return Domain(name, folder, paths, images if load_size else None, skipped)


class UnpairedPlanDataset(torch.utils.data.Dataset):
    """Item i of an epoch plan -> {"A": (3, S, S), "B": (3, S, S)} in [-1, 1]."""

    def __init__(self, a: Domain, b: Domain, plan: np.ndarray, size: int, load_size: int, flip: bool) -> None:
        self.a, self.b, self.plan = a, b, plan
        self.size, self.load_size, self.flip = size, load_size, flip

    def __len__(self) -> int:
        return len(self.plan)

    def _image(self, dom: Domain, i: int) -> np.ndarray:
        if dom.images is not None:
            return dom.images[i]
        return _resize_square(read_rgb(dom.paths[i]), self.load_size)

    def _augment(self, img: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        s, ls = self.size, self.load_size
        y, x = int(rng.integers(0, ls - s + 1)), int(rng.integers(0, ls - s + 1))
        crop = img[y : y + s, x : x + s]
        if self.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float()
        return t / 127.5 - 1.0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ia, ib, seed = (int(v) for v in self.plan[i])
        rng = np.random.default_rng(seed)
        return {
            "A": self._augment(self._image(self.a, ia), rng),
            "B": self._augment(self._image(self.b, ib), rng),
        }


def epoch_plan(n_a: int, n_b: int, seed: int, epoch: int) -> np.ndarray:
    """(max(n_a, n_b), 3) int64 rows (index A, index B, item seed) for a 1-based epoch.

    A is walked in a shuffled order (repeated if B is larger); B is drawn at random for each item, so the
    pairing changes every epoch (the data are unpaired).
    """
    rng = np.random.default_rng([seed, epoch])
    n = max(n_a, n_b)
    reps = -(-n // n_a)
    ia = np.concatenate([rng.permutation(n_a) for _ in range(reps)])[:n]
    ib = rng.integers(0, n_b, size=n)
    seeds = rng.integers(0, 2**31 - 1, size=n)
    return np.stack([ia, ib, seeds], axis=1)


@dataclass
class UnpairedData:
    """Both training domains plus the loader factory for an epoch."""

    a: Domain
    b: Domain
    cfg: DataConfig

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return self.a.skipped + self.b.skipped

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-max(len(self.a), len(self.b)) // batch_size)

    def loader(
        self, seed: int, epoch: int, batch_size: int, skip_batches: int = 0, part: tuple[int, int] = (0, 1)
    ) -> torch.utils.data.DataLoader:
        """Batches of the epoch from global step ``skip_batches`` on. The plan is global: process
        ``part`` = (rank, processes) takes its share of each global step (core.distributed.shard)."""
        plan = epoch_plan(len(self.a), len(self.b), seed, epoch)
        ds = UnpairedPlanDataset(
            self.a, self.b, plan, self.cfg.size, self.cfg.resolved_load_size, self.cfg.flip
        )
        batches = shard(len(plan), batch_size, *part)[skip_batches:]
        # A generator of its own: a loader draws a seed from it for its workers each time it starts, and
        # drawn from torch's global one that would shift every later random number of a resumed run.
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return torch.utils.data.DataLoader(
            ds, batch_sampler=batches, num_workers=self.cfg.workers, generator=gen
        )


def load_unpaired(
    cfg: DataConfig, warn: Callable[[str], None] = print, progress: bool = True
) -> UnpairedData:
    """Scan both training domains; warn once about each skipped file, naming it and the reason."""
    fa, fb = resolve_folders(cfg)
    load = cfg.resolved_load_size if cfg.cache else None
    a = scan_domain("A", fa, load, cfg.max_images, progress)
    b = scan_domain("B", fb, load, cfg.max_images, progress)
    data = UnpairedData(a, b, cfg)
    if data.skipped:
        lines = "\n".join(f"  {p}: {why}" for p, why in data.skipped)
        warn(f"warning: skipping {len(data.skipped)} unreadable image(s):\n{lines}")
    return data


def load_test_images(
    folder: Path, limit: int | None = None, warn: Callable[[str], None] | None = None
) -> list[tuple[Path, torch.Tensor]]:
    """Readable images of a test folder as (path, (3, H, W) tensor in [-1, 1]); unreadable ones are
    skipped (and each named with its reason through ``warn``)."""
    out = []
    if not folder.is_dir():
        return out
    for p in list_images(folder)[: limit or None]:
        try:
            out.append((p, pil_to_tensor(read_rgb(p))))
        except ImageReadError as e:
            if warn is not None:
                warn(f"warning: skipping {e}")
    return out
