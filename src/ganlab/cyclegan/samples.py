"""Fixed sample images and the per-epoch sample grid (real | translation | reconstruction)."""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from ganlab.core.images import pil_to_tensor, read_rgb, tensor_to_pil
from ganlab.cyclegan.data import UnpairedData, load_test_images


def sample_grid(
    models: nn.ModuleDict, imgs_a: list[torch.Tensor], imgs_b: list[torch.Tensor], device: torch.device
) -> Image.Image:
    """Rows: real A | A->B | A->B->A, then real B | B->A | B->A->B; one column per sample image."""
    rows: list[list[Image.Image]] = []
    with torch.no_grad():
        for imgs, g, h in (
            (imgs_a, models["G_A2B"], models["G_B2A"]),
            (imgs_b, models["G_B2A"], models["G_A2B"]),
        ):
            if not imgs:
                continue
            x = torch.stack(imgs).to(device)
            y = g(x)
            z = h(y)
            for t in (x, y, z):
                rows.append([tensor_to_pil(im) for im in t])
    s = rows[0][0].width
    grid = Image.new("RGB", (s * max(len(r) for r in rows), s * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.resize((s, s)), (c * s, r * s))
    return grid


def sample_images(data: UnpairedData, n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Fixed sample images: test images when the data root has them, else the first training images;
    centre crops at the training size so the grid is comparable across epochs."""
    size = data.cfg.size

    def centre(t: torch.Tensor) -> torch.Tensor:
        t = torch.nn.functional.interpolate(
            t[None],
            size=(data.cfg.resolved_load_size,) * 2,
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )[0]
        o = (t.shape[-1] - size) // 2
        return t[:, o : o + size, o : o + size]

    out = []
    for dom, split in ((data.a, "testA"), (data.b, "testB")):
        folder = dom.folder.parent / split
        tests = load_test_images(folder, n) if data.cfg.root else []
        if tests:
            out.append([centre(t) for _, t in tests])
        else:
            out.append([centre(pil_to_tensor(read_rgb(p))) for p in dom.paths[:n]])
    return out[0], out[1]
