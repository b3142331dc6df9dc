"""Tiled inference with whole-image instance-norm statistics, at about the cost of one forward pass.

InstanceNorm needs each channel's mean and variance over the whole image before it can be applied, so a
tile cannot simply run the network on its own pixels (that gives per-tile statistics: seams and tone
shifts). Recomputing everything below each norm layer for every norm layer would cost O(layers^2).

:func:`run_exact` walks the network's layer tree (``ganlab.core.layertree``) from the input to the output
once. Each *pass* sweeps full-width bands of rows over the whole image, computing one short stretch of
layers (usually one conv) from the last kept activation, with just the context rows that stretch needs;
it accumulates the per-channel sums the next norm layer needs and may keep its result, as a scratch
activation in memory (up to a budget) or in a file of rows on disk, memory-mapped a band at a time (fp32,
or bf16 under bf16 autocast). A norm layer whose statistics are known is point-wise, so it is applied
when the next pass reads. Which activations are kept:
- the input of a residual block (read twice: by the block's body and by its skip), written by the
  block's first pass as it reads it (:class:`Tee`), and
- a norm layer's input when it is no larger than what its pass reads (deep, narrow activations), or fits
  in the memory budget left; wide, shallow ones (the first full-resolution layers) are recomputed from
  the input instead, which is cheap because they are few and thin.
So there is one pass per norm layer plus one for the output, every layer is computed about once (the thin
full-resolution ones two or three times), and the scratch traffic is three writes and reads of the
narrow activations per residual block.

:func:`approx_stats` is the cheap alternative: the statistics of a downscaled copy, after which every
norm layer is point-wise and :func:`run_banded` needs a single pass (each band then carries the context
rows of the whole network's receptive field) and no scratch.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganlab.core.layertree import Chain, Local, Node, Norm, Residual, evaluate

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: fault the pages in with one call
Context = Callable[[], contextlib.AbstractContextManager]


class Stored:
    """A kept activation (1, C, H, W), rows written once band by band, read any number of times. Kept in
    memory, or in a file of rows (H, C, W), so that a band of rows is one contiguous
    piece of the file, mapped into memory while it is used."""

    def __init__(self, height: int, folder: Path | None) -> None:
        self.height = height
        self.folder = folder
        self.mem: torch.Tensor | None = None  # (1, C, H, W) when kept in memory
        self.fd: int | None = None
        self.path: Path | None = None
        self.shape: tuple[int, int] | None = None  # (C, W)
        self.dtype = torch.float32

    @classmethod
    def of(cls, x: torch.Tensor) -> Stored:
        """A whole (1, C, H, W) tensor, kept as it is (no copy)."""
        s = cls(x.shape[2], None)
        s.shape, s.dtype, s.mem = (x.shape[1], x.shape[3]), x.dtype, x
        return s

    def numel(self) -> int:
        assert self.shape is not None
        return self.height * self.shape[0] * self.shape[1]

    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize if self.shape else 0

    def _row_bytes(self) -> int:
        assert self.shape is not None
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def write(self, r0: int, y: torch.Tensor) -> None:
        if self.shape is None:
            self.shape, self.dtype = (y.shape[1], y.shape[3]), y.dtype
            if self.folder is not None:
                fd, name = tempfile.mkstemp(prefix="act-", suffix=".bin", dir=self.folder)
                self.fd, self.path = fd, Path(name)
                os.ftruncate(fd, self.height * self._row_bytes())
            else:
                self.mem = y.new_empty(1, y.shape[1], self.height, y.shape[3])
        if self.mem is not None:
            self.mem[:, :, r0 : r0 + y.shape[2]] = y
            return
        self._map(r0, r0 + y.shape[2], False).copy_(y[0].transpose(0, 1))  # one copy, into the page cache

    def read(self, r0: int, r1: int) -> torch.Tensor:
        """Rows [r0, r1) as (1, C, r1 - r0, W); may be a view of kept memory (do not modify it)."""
        assert self.shape is not None, "read before write"
        if self.mem is not None:
            return self.mem[:, :, r0:r1]
        # One copy out of the file's pages (the mapping is dropped at once, so the resident set holds
        # only the bands in use); contiguous, as the layers reading it work fastest on.
        return self._map(r0, r1, True).transpose(0, 1).unsqueeze(0).contiguous()

    def _map(self, r0: int, r1: int, populate: bool) -> torch.Tensor:
        """Rows [r0, r1) of the file as a writable (rows, C, W) tensor over a shared memory map
        (``populate``: fault all its pages in at once; faster for reading, slower for fresh writes)."""
        c, w = self.shape
        rb = self._row_bytes()
        start = r0 * rb
        base = start - start % mmap.ALLOCATIONGRANULARITY
        mm = mmap.mmap(
            self.fd, r1 * rb - base, offset=base, flags=mmap.MAP_SHARED | (_POPULATE if populate else 0)
        )
        a = np.frombuffer(mm, dtype=np.uint8, count=(r1 - r0) * rb, offset=start - base)
        t = torch.from_numpy(a)
        return t.view(self.dtype).view(r1 - r0, c, w)

    def full(self) -> torch.Tensor:
        return self.read(0, self.height)

    def leaves(self) -> list[Stored]:
        return [self]

    def release(self) -> None:
        self.mem = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.path.unlink(missing_ok=True)


class Computed:
    """Rows of ``chain`` applied to ``src``, computed on demand with the context rows the chain needs."""

    def __init__(self, src, chain: Chain) -> None:
        self.src, self.chain = src, chain
        self.height = chain.out_size(src.height)

    def read(self, r0: int, r1: int) -> torch.Tensor:
        i0, i1 = self.chain.need(r0, r1, self.src.height)
        return self.chain.run(self.src.read(i0, i1), i0, self.src.height, r0, r1)

    def leaves(self) -> list[Stored]:
        return self.src.leaves()


class Added:
    """a + b, row by row (a residual block's skip plus its body)."""

    def __init__(self, a, b) -> None:
        self.a, self.b, self.height = a, b, a.height

    def read(self, r0: int, r1: int) -> torch.Tensor:
        a, b = self.a.read(r0, r1), self.b.read(r0, r1)
        # Into a contiguous tensor even when a band is a strided view of a mapped file (convs would copy).
        out = torch.empty(a.shape, dtype=torch.promote_types(a.dtype, b.dtype))
        return torch.add(a, b, out=out)

    def leaves(self) -> list[Stored]:
        return self.a.leaves() + self.b.leaves()


class _Moments:
    """Per-channel mean and variance of (1, C, rows, W) bands, accumulated in fp64. Sums are taken about
    a per-channel shift (the first band's mean) so that fp32 band sums lose nothing to a large mean;
    much faster than torch.var_mean on this layout."""

    def __init__(self) -> None:
        self.n, self.shift, self.s1, self.s2 = 0, None, 0.0, 0.0

    def add(self, y: torch.Tensor) -> None:
        nb = y.shape[2] * y.shape[3]
        if y.dtype != torch.float32:
            # bf16 (autocast) values carry 3 significant digits: unshifted fp32 sums of them are exact
            # enough. One fp32 copy of the band (reductions with dtype= would each make their own).
            self.shift, d = 0.0, y.float()
        else:
            if self.shift is None:
                self.shift = y.sum((2, 3), keepdim=True) / nb
            d = y - self.shift
        self.s1 = self.s1 + d.sum((2, 3), keepdim=True).double()
        self.s2 = self.s2 + torch.linalg.vector_norm(d, dim=(2, 3), keepdim=True).double() ** 2
        self.n += nb

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.s1 / self.n
        shift = self.shift.double() if isinstance(self.shift, torch.Tensor) else self.shift
        return shift + m, (self.s2 / self.n - m * m).clamp_min(0)


class Tee:
    """``src``, kept on the way: the first pass that reads it (top to bottom, with context rows) writes
    each row once into a new Stored; later reads come from that store. A residual block's input is so
    kept by the block's first pass instead of by a pass of its own."""

    def __init__(self, src, ex: Executor) -> None:
        self.src, self.ex, self.height = src, ex, src.height
        self.store: Stored | None = None
        self.done = 0  # rows [0, done) are written

    def read(self, r0: int, r1: int) -> torch.Tensor:
        if self.done == self.height:
            return self.store.read(r0, r1)
        if r0 > self.done:
            raise AssertionError(f"rows {self.done}..{r0} were never read")
        y = self.src.read(r0, r1)
        if self.store is None:
            self.store = self.ex.new_store(self.height, y[0, :, :1].numel() * self.height * y.element_size())
        if r1 > self.done:
            self.store.write(self.done, y[:, :, self.done - r0 :])
            self.done = r1
        return y

    def leaves(self) -> list[Stored]:
        return (
            [self.store]
            if self.done == self.height
            else self.src.leaves() + ([self.store] if self.store else [])
        )


def _then(src, pending: list[Node]):
    return Computed(src, Chain(pending)) if pending else src


def _cheap(src) -> bool:
    """Reading ``src`` costs one read of one kept activation plus point-wise work."""
    return isinstance(src, Stored) or (
        isinstance(src, Computed) and isinstance(src.src, Stored) and src.chain.pointwise()
    )


@dataclass
class RunInfo:
    """What a banded run did: passes over the image, and the most scratch held at once (bytes)."""

    passes: int = 0
    peak_memory: int = 0
    peak_disk: int = 0

    def note(self, live: list[Stored], new_bytes: int, in_memory: bool) -> None:
        mem = sum(s.nbytes() for s in live if s.folder is None) + new_bytes * in_memory
        disk = sum(s.nbytes() for s in live if s.folder is not None) + new_bytes * (not in_memory)
        self.peak_memory, self.peak_disk = max(self.peak_memory, mem), max(self.peak_disk, disk)


class Executor:
    """Runs one layer tree band by band over one image; scratch activations live under ``folder``."""

    def __init__(self, band_pixels: int, in_rows: int, in_width: int, folder: Path, memory_bytes: int):
        self.band_pixels, self.in_rows, self.in_width = band_pixels, in_rows, in_width
        self.folder, self.memory_left = folder, memory_bytes
        self.live: list[Stored] = []
        self.info = RunInfo()

    def band_rows(self, height: int) -> int:
        """Rows per band at an activation ``height`` rows tall: about ``band_pixels`` input pixels."""
        return max(1, round(self.band_pixels / self.in_width * height / self.in_rows))

    def new_store(self, height: int, nbytes_hint: int) -> Stored:
        in_memory = nbytes_hint <= self.memory_left
        s = Stored(height, None if in_memory else self.folder)
        if in_memory:
            self.memory_left -= nbytes_hint
        self.live.append(s)
        self.info.note(self.live, nbytes_hint, in_memory)
        return s

    @torch.no_grad()
    def sweep(self, src, stats: bool = False, keep_max: float = -1, into=None) -> tuple:
        """One pass over ``src``: per-channel (mean, var) in fp64 if ``stats``; the rows kept in a new
        Stored if the whole activation has at most ``keep_max`` elements or fits in the memory left, or
        written to ``into`` (as float32). Returns (stats or None, the Stored written or None)."""
        self.info.passes += 1
        h, step = src.height, self.band_rows(src.height)
        acc, store = _Moments(), into
        for r0 in range(0, h, step):
            y = src.read(r0, min(h, r0 + step))
            numel = y[0, :, :1].numel() * h
            if (
                r0 == 0
                and into is None
                and (numel <= keep_max or numel * y.element_size() <= self.memory_left)
            ):
                store = self.new_store(h, numel * y.element_size())
            if store is not None:
                store.write(r0, y.float() if into is not None else y)
            if stats:
                acc.add(y)
        return (acc.result() if stats else None), store

    def release_unused(self, keep: list) -> None:
        needed = {id(s) for src in keep for s in src.leaves()}
        for s in [s for s in self.live if id(s) not in needed]:
            if s.mem is not None:
                self.memory_left += s.nbytes()
            s.release()
            self.live.remove(s)

    def plan(self, nodes: list[Node], cur, pinned: list) -> object:
        """Freeze every norm of ``nodes`` (a pass each) starting from source ``cur``; returns the source of
        the nodes' output. ``pinned`` sources must outlive this call (an enclosing block's input)."""
        pending: list[Node] = []
        for k, node in enumerate(nodes):
            if isinstance(node, Norm) and node.stats is None:
                # Keep it when no larger than what this pass reads, when a block's input follows, or when
                # it fits in the memory left (sweep).
                limit = (
                    math.inf
                    if _next_block_has_norms(nodes[k + 1 :])
                    else sum(s.numel() for s in cur.leaves())
                )
                node.stats, store = self.sweep(_then(cur, pending), True, limit)
                if store is not None:
                    cur, pending = store, [node]
                    self.release_unused([cur, *pinned])
                else:
                    pending.append(node)
            elif isinstance(node, Residual) and any(n.stats is None for n in node.norms()):
                x = _then(cur, pending)
                if not _cheap(x):  # keep the block's input, written by the first pass that reads it
                    x = Tee(x, self)
                body = self.plan(node.body.nodes, x, [x, *pinned])
                if isinstance(x, Tee) and x.done != x.height:
                    raise AssertionError("a residual block's first pass did not read its whole input")
                cur, pending = Added(x, body), []
            else:
                pending.append(node)
        return _then(cur, pending)


def _next_block_has_norms(nodes: list[Node]) -> bool:
    """The first non-point-wise node of ``nodes`` is a residual block with norms (its input gets kept)."""
    for n in nodes:
        if isinstance(n, Local) and n.kind == "point":
            continue
        return isinstance(n, Residual) and any(True for _ in n.norms())
    return False


def run_banded(
    tree: Chain,
    x: torch.Tensor,
    band_pixels: int = 1 << 20,
    scratch_dir: str | Path | None = None,
    memory_bytes: int = 1536 << 20,
    ctx: Context = contextlib.nullcontext,
) -> tuple[torch.Tensor, RunInfo]:
    """``tree`` applied to (1, C, H, W) ``x`` band by band (bands of about ``band_pixels`` input pixels).
    Every norm whose ``stats`` are unset gets the whole image's statistics, as the untiled network would
    compute them (one pass each); norms with ``stats`` set use those. Scratch activations stay in memory
    up to ``memory_bytes`` in all, the rest go to files in ``scratch_dir`` (default: the system temp
    folder), removed at the end. ``ctx`` wraps the computation (e.g. autocast). Returns the
    output (1, C_out, H', W') in float32 and what the run did (passes, peak scratch)."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"band-by-band inference takes one image (1, C, H, W), got {tuple(x.shape)}")
    src = Stored.of(x)
    with tempfile.TemporaryDirectory(prefix="ganlab-tiles-", dir=scratch_dir) as folder:
        ex = Executor(band_pixels, x.shape[2], x.shape[3], Path(folder), memory_bytes)
        with ctx():  # once for the whole run: autocast then casts each weight once, not once per band
            out_src = ex.plan(tree.nodes, src, [src])
            out = ex.sweep(out_src, into=Stored(out_src.height, None))[1]
        ex.release_unused([])
    return out.full(), ex.info


def run_exact(tree: Chain, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """:func:`run_banded` with whole-image statistics for every norm (what the untiled network does)."""
    for norm in tree.norms():
        norm.stats = None
    return run_banded(tree, x, **kwargs)[0]


@torch.no_grad()
def approx_stats(tree: Chain, x: torch.Tensor, max_pixels: int = 1 << 19, multiple: int = 1) -> float:
    """Freeze every norm of ``tree`` with the statistics of ``x`` downscaled (antialiased bilinear) to at
    most ``max_pixels`` pixels, each side a multiple of ``multiple``; returns the scale factor used."""
    h, w = x.shape[-2:]
    f = min(1.0, (max_pixels / (h * w)) ** 0.5)
    sh = max(multiple, round(h * f / multiple) * multiple)
    sw = max(multiple, round(w * f / multiple) * multiple)
    small = F.interpolate(x.float(), size=(sh, sw), mode="bilinear", antialias=True, align_corners=False)
    evaluate(tree, small, record=True)
    return f
