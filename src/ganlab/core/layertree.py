"""An image network as a tree of row-local layers, so it can be run band by band (core/seamless.py).

A band is a slab of full-width rows, (1, C, rows, W). Every node knows, along the rows:
- ``out_size(h)``: output rows for ``h`` input rows;
- ``need(o0, o1, h)``: the input rows [i0, i1) (clipped to the image) that output rows [o0, o1) depend on;
- ``run(x, i0, h, o0, o1)``: given exactly the input rows ``need`` asked for (starting at global row
  ``i0`` of an image ``h`` rows tall), the output rows [o0, o1).
Pads and convs pad a band's rows only where the band meets the image's top or bottom edge; any other layer
runs on the band as if it were the whole image, and the rows its band edges spoil are left out (``need``
asks for enough context). Columns are never cut, so along the width every layer sees the whole image.

Nodes: ``Local`` (a torch layer: conv, transposed conv, pad, nearest upsampling, pixel shuffle, or a
point-wise layer), ``Norm`` (InstanceNorm: per-image statistics, given from outside in ``stats``),
``Chain`` and ``Residual`` (x + body(x)). :func:`layer_tree` builds the tree from ``nn.Sequential``s, torch
layers, and modules that describe themselves with ``seamless_parts() -> (kind, modules)``: kind
``"chain"`` when their forward applies the modules in order, ``"residual"`` when it is x + chain(x).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_POINTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Identity,
    nn.Dropout,
    nn.BatchNorm2d,  # eval mode: a per-channel affine map
)
_PADS = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d)


class Node:
    """A row-local piece of the network (see the module docstring for the three methods)."""

    def out_size(self, h: int) -> int:
        return h

    def need(self, o0: int, o1: int, h: int) -> tuple[int, int]:
        return max(0, o0), min(h, o1)

    def run(self, x: torch.Tensor, i0: int, h: int, o0: int, o1: int) -> torch.Tensor:
        raise NotImplementedError

    def norms(self) -> Iterator[Norm]:
        return iter(())


def _clip(i0: int, i1: int, h: int) -> tuple[int, int]:
    return max(0, i0), min(h, i1)


class Local(Node):
    """One torch layer whose output row depends on a bounded window of input rows."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        m = module
        if isinstance(m, nn.Conv2d):
            self.kind = "conv"
            if isinstance(m.padding, str) or m.padding_mode == "circular":
                raise TypeError(f"{m}: string or circular padding is not supported band by band")
            self.k, self.s, self.p, self.d = m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0]
        elif isinstance(m, nn.ConvTranspose2d):
            self.kind = "convT"
            self.k, self.s, self.p, self.d = m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0]
            self.op = m.output_padding[0]
        elif isinstance(m, _PADS):
            self.kind = "pad"
            self.top, self.bottom = m.padding[2], m.padding[3]
            self.mode = (
                "reflect"
                if isinstance(m, nn.ReflectionPad2d)
                else "replicate"
                if isinstance(m, nn.ReplicationPad2d)
                else "constant"
            )
        elif isinstance(m, nn.Upsample) and m.mode == "nearest" and m.size is None:
            sf = m.scale_factor if isinstance(m.scale_factor, (int, float)) else m.scale_factor[0]
            if sf != int(sf):
                raise TypeError(f"{m}: only integer nearest upsampling runs band by band")
            self.kind, self.s = "up", int(sf)
        elif isinstance(m, nn.PixelShuffle):
            self.kind, self.s = "up", m.upscale_factor
        elif isinstance(m, _POINTWISE) or (isinstance(m, nn.InstanceNorm2d) and m.track_running_stats):
            self.kind = "point"
        else:
            raise TypeError(f"cannot run {type(m).__name__} band by band")

    def out_size(self, h: int) -> int:
        if self.kind == "conv":
            return (h + 2 * self.p - self.d * (self.k - 1) - 1) // self.s + 1
        if self.kind == "convT":
            return (h - 1) * self.s - 2 * self.p + self.d * (self.k - 1) + self.op + 1
        if self.kind == "pad":
            return h + self.top + self.bottom
        if self.kind == "up":
            return h * self.s
        return h

    def _pad_source(self, j: int, h: int) -> int:
        """The input row that padded output row ``j`` copies (zero padding: the nearest real row)."""
        r = j - self.top
        if isinstance(self.module, nn.ReflectionPad2d):
            return -r if r < 0 else (2 * (h - 1) - r if r >= h else r)
        return min(max(r, 0), h - 1)

    def need(self, o0: int, o1: int, h: int) -> tuple[int, int]:
        if self.kind == "conv":
            # Exact rows: an unclipped start is o0*s - p, so the band's first output row is o0 (see run).
            return _clip(o0 * self.s - self.p, (o1 - 1) * self.s - self.p + self.d * (self.k - 1) + 1, h)
        if self.kind == "convT":
            # Output row j sums the inputs i with j = i*s - p + t*d, t < k.
            lo = -(-(o0 + self.p - self.d * (self.k - 1)) // self.s)
            hi = (o1 - 1 + self.p) // self.s + 1
            while (hi - 1) * self.s - 2 * self.p + self.d * (self.k - 1) + self.op < o1 - 1:
                hi += 1  # the band's last output row must reach o1 - 1
            return _clip(lo, hi, h)
        if self.kind == "pad":
            # The rows the padded rows [o0, o1) copy; at least max(top, bottom) + 1 of them, since a band
            # at the image's edge is padded there (reflection needs more rows than it pads).
            rows = [self._pad_source(j, h) for j in range(o0, min(o1, self.top))]
            rows += [self._pad_source(j, h) for j in range(max(o0, h + self.top), o1)]
            lo, hi = max(o0, self.top) - self.top, min(o1, h + self.top) - self.top
            rows += [lo, hi - 1] if hi > lo else []
            i0, i1 = min(rows), max(rows) + 1
            short = max(self.top, self.bottom) + 1 - (i1 - i0)
            if short > 0:
                i1 = min(h, i1 + short)
                i0 = max(0, i1 - max(self.top, self.bottom) - 1)
            return i0, i1
        if self.kind == "up":
            return _clip(o0 // self.s, (o1 - 1) // self.s + 1, h)
        return _clip(o0, o1, h)

    def run(self, x: torch.Tensor, i0: int, h: int, o0: int, o1: int) -> torch.Tensor:
        # Pads and convs pad a band's rows only at the image's true top and bottom: interior bands come
        # with exactly the context rows they need, so they produce exactly rows [o0, o1) and no slice
        # (a row slice is not contiguous, and the next conv would copy it).
        top, bottom = i0 == 0, i0 + x.shape[2] == h
        m = self.module
        if self.kind == "pad":
            t, b = self.top * top, self.bottom * bottom
            with torch.autocast(x.device.type, enabled=False):  # autocast would pad in fp32: a copy
                y = F.pad(x, (*m.padding[:2], t, b), mode=self.mode, value=getattr(m, "value", None))
            start = i0 + self.top - t
        elif self.kind == "conv":
            t, b, pw = self.p * top, self.p * bottom, m.padding[1]
            if m.padding_mode == "zeros":
                x = F.pad(x, (0, 0, t, b)) if t or b else x
                y = F.conv2d(x, m.weight, m.bias, m.stride, (0, pw), m.dilation, m.groups)
            else:
                with torch.autocast(x.device.type, enabled=False):
                    x = F.pad(x, (pw, pw, t, b), mode=m.padding_mode)
                y = F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
            start = (i0 - t + self.p) // self.s
        else:
            y = m(x)
            start = i0 * self.s if self.kind in ("convT", "up") else i0
        a = o0 - start
        if a < 0 or a + (o1 - o0) > y.shape[2]:
            raise AssertionError(f"{m}: band rows {i0}.. gave {y.shape[2]} rows, need {o0}..{o1}")
        return y if (a, y.shape[2]) == (0, o1 - o0) else y[:, :, a : a + o1 - o0]


class Norm(Node):
    """InstanceNorm with statistics given from outside: ``stats`` = (mean, var), each (1, C, 1, 1) fp64."""

    def __init__(self, module: nn.InstanceNorm2d) -> None:
        self.module = module
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def norms(self) -> Iterator[Norm]:
        yield self

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            raise RuntimeError("instance-norm statistics are not known yet")
        mean, var = (t.flatten().float() for t in self.stats)
        m = self.module
        # Eval-mode batch norm with these statistics is exactly InstanceNorm's formula; its CPU kernel
        # is one fast pass, computes in fp32 and keeps x's dtype (bf16 under autocast, as InstanceNorm).
        with torch.autocast(x.device.type, enabled=False):
            return F.batch_norm(x, mean, var, m.weight, m.bias, False, 0.0, m.eps)

    def run(self, x: torch.Tensor, i0: int, h: int, o0: int, o1: int) -> torch.Tensor:
        return self.apply(x[:, :, o0 - i0 : o1 - i0])


class Chain(Node):
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def sizes(self, h: int) -> list[int]:
        out = [h]
        for n in self.nodes:
            out.append(n.out_size(out[-1]))
        return out

    def out_size(self, h: int) -> int:
        return self.sizes(h)[-1]

    def ranges(self, o0: int, o1: int, h: int) -> list[tuple[int, int]]:
        """Row ranges before each node and after the last, for output rows [o0, o1)."""
        sizes = self.sizes(h)
        out = [(o0, o1)]
        for n, hn in zip(reversed(self.nodes), reversed(sizes[:-1])):
            out.append(n.need(*out[-1], hn))
        return out[::-1]

    def need(self, o0: int, o1: int, h: int) -> tuple[int, int]:
        return self.ranges(o0, o1, h)[0]

    def run(self, x: torch.Tensor, i0: int, h: int, o0: int, o1: int) -> torch.Tensor:
        sizes, ranges = self.sizes(h), self.ranges(o0, o1, h)
        a, b = ranges[0]
        x = x[:, :, a - i0 : b - i0]
        if self.nodes and getattr(getattr(self.nodes[0], "module", None), "inplace", False):
            x = x.clone()  # an in-place first layer (ReLU(inplace=True)) must not write into the caller's x
        for n, hn, (a, _), (c, d) in zip(self.nodes, sizes, ranges, ranges[1:]):
            x = n.run(x, a, hn, c, d)
        return x

    def norms(self) -> Iterator[Norm]:
        for n in self.nodes:
            yield from n.norms()

    def pointwise(self) -> bool:
        return all(isinstance(n, Norm) or getattr(n, "kind", "") == "point" for n in self.nodes)


class Residual(Node):
    """x + body(x), shape kept."""

    def __init__(self, body: Chain) -> None:
        self.body = body

    def need(self, o0: int, o1: int, h: int) -> tuple[int, int]:
        a, b = self.body.need(o0, o1, h)
        return min(a, max(0, o0)), max(b, min(h, o1))

    def run(self, x: torch.Tensor, i0: int, h: int, o0: int, o1: int) -> torch.Tensor:
        a, b = self.body.need(o0, o1, h)
        y = self.body.run(x[:, :, a - i0 : b - i0], a, h, o0, o1)
        return x[:, :, o0 - i0 : o1 - i0] + y

    def norms(self) -> Iterator[Norm]:
        return self.body.norms()


def layer_tree(module: nn.Module) -> Chain:
    """The module as a Chain of nodes (raises TypeError for a layer it cannot run band by band)."""
    return Chain(_nodes(module))


def _nodes(m: nn.Module) -> list[Node]:
    if isinstance(m, nn.Sequential):
        return [n for child in m for n in _nodes(child)]
    parts = getattr(m, "seamless_parts", None)
    if parts is not None:
        kind, modules = parts()
        nodes = [n for child in modules for n in _nodes(child)]
        if kind == "residual":
            return [Residual(Chain(nodes))]
        if kind == "chain":
            return nodes
        raise TypeError(f"{type(m).__name__}.seamless_parts: unknown kind {kind!r}")
    if isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats:
        return [Norm(m)]
    return [Local(m)]


def receptive_radius(tree: Chain, h: int = 4096) -> int:
    """How many rows away an input row can still change an output row of ``tree`` (exact, from ``need``
    on a tall image: the padding a tile needs for tiled inference with fixed statistics)."""
    out = tree.out_size(h)
    o = out // 2
    i0, i1 = tree.need(o, o + 1, h)
    c = o * h / out
    return math.ceil(max(c - i0, i1 - 1 - c))


@torch.no_grad()
def evaluate(node: Node, x: torch.Tensor, record: bool = False) -> torch.Tensor:
    """Run the tree on a whole image. ``record``: every Norm takes its statistics from this image (and
    keeps them in ``stats``); otherwise a Norm with no ``stats`` uses this image's, as InstanceNorm does."""
    if isinstance(node, Chain):
        for n in node.nodes:
            x = evaluate(n, x, record)
        return x
    if isinstance(node, Residual):
        return x + evaluate(node.body, x, record)
    if isinstance(node, Norm):
        if not record and node.stats is None:
            return node.module(x)
        if record:
            var, mean = torch.var_mean(x.double(), dim=(2, 3), keepdim=True, correction=0)
            node.stats = (mean, var)
        return node.apply(x)
    assert isinstance(node, Local)
    return node.module(x)
