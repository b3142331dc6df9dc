"""Shared fixtures: tiny generated image sets (no network, no real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def make_image(rng: np.random.Generator, size: int, domain: str) -> Image.Image:
    """Domain A: smooth colour blobs; domain B: the same kind of picture with stripes (a 'style')."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    c = rng.random((3, 3))
    img = np.stack([c[i, 0] + 0.5 * np.sin(6 * c[i, 1] * xx + 5 * c[i, 2] * yy) for i in range(3)], -1)
    if domain == "B":
        img = img * (0.7 + 0.3 * ((np.arange(size) // 2) % 2))[None, :, None]
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def make_dataset(root: Path, n_train: int = 6, n_test: int = 3, size: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for dom in ("A", "B"):
            folder = root / f"{split}{dom}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make_image(rng, size, dom).save(folder / f"{i:03d}.png")
    gt = root / "testB_gt"
    gt.mkdir(exist_ok=True)
    for p in sorted((root / "testA").glob("*.png")):
        Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(gt / p.name)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


# Settings that make a CycleGAN run take about a second on a CPU.
TINY = [
    "--set",
    "model.hidden=8",
    "--set",
    "disc.hidden=8",
    "--set",
    "disc.n_layers=2",
    "--size",
    "32",
    "--batch-size",
    "2",
    "--quiet",
    "--set",
    "train.eval_images=2",
    "--set",
    "train.samples=2",
]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is as fast, and does not thrash when the CPU is shared (modules opt in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
