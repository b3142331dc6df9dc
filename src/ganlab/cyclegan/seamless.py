"""Tiled translation of large pictures with a CycleGAN generator, in one of three statistics modes.

Instance norm makes every output pixel depend on per-channel statistics of the *whole* image, so how a
tiled run gets those statistics decides whether tiles meet without seams:

- ``exact``: the whole image's statistics, as an untiled run computes them (ganlab.core.seamless): one
  pass over the image per norm layer, each computing about one layer, keeping the narrow deep activations
  in scratch files. Equals the untiled output (within float rounding); costs about one forward pass plus
  scratch I/O (disk for large images).
- ``approx``: the statistics of a copy downscaled to about half a megapixel, then one band-by-band pass
  with frozen statistics. No scratch; each band carries the receptive radius of context rows, so the
  cost is one forward pass times about 1 + 2 * radius / band rows. Close to exact on photos (see
  docs/export-and-tiles.md for the measured error); no seams.
- ``tile``: each tile's own statistics (the old behaviour, ganlab.core.tiling): cheapest, but tiles differ
  in tone and meet at visible seams.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from ganlab.core.layertree import layer_tree
from ganlab.core.seamless import Context, approx_stats, run_banded, run_exact
from ganlab.models.generator import ResnetGenerator

TILE_STATS = ("exact", "approx", "tile")


@torch.no_grad()
def translate_seamless(
    g: ResnetGenerator,
    x: torch.Tensor,
    tile: int,
    stats: str = "exact",
    ctx: Context = contextlib.nullcontext,
    scratch_dir: str | Path | None = None,
    memory_bytes: int = 1536 << 20,
) -> torch.Tensor:
    """g(x) for (1, 3, H, W) ``x``, computed in full-width bands of about tile x tile pixels with the
    ``stats`` mode ``exact`` or ``approx`` (see the module docstring). Returns (1, 3, H, W) float32."""
    if stats not in ("exact", "approx"):
        raise ValueError(f"unknown statistics mode {stats!r}; use exact or approx")
    h, w = x.shape[-2:]
    m = g.multiple
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:  # as ResnetGenerator.forward: reflect-pad to a multiple of 2^n_down, crop back below
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
    tree = layer_tree(g.net)
    opts = dict(band_pixels=tile * tile, scratch_dir=scratch_dir, memory_bytes=memory_bytes, ctx=ctx)
    if stats == "exact":
        y = run_exact(tree, x, **opts)
    else:
        with ctx():
            approx_stats(tree, x, multiple=m)
        y = run_banded(tree, x, **opts)[0]
    if g.cfg.global_skip:
        y = torch.tanh(torch.atanh(x.float().clamp(-0.999, 0.999)) + y)
    return y[..., :h, :w] if (ph or pw) else y
