"""Drop-in subclasses of torch layers with faster paths for channels_last tensors on the CPU (and
ONNX-, trace- and DDP-safe fallbacks): same module types for anything that inspects the layers, same
parameters and checkpoints, same function up to summation order. Why each exists and what it gains:
docs/performance.md. ``ganlab.models.blocks.with_torch_layers`` swaps the plain torch layers back in.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _ReflectPadFn(torch.autograd.Function):
    """Reflect padding by p on all four sides of (N, C, H, W), with a backward written as slices and adds:
    ATen's reflection_pad2d backward scatters element by element and took 3-5x as long (bf16, 2-core
    AVX-512 CPU; docs/performance.md)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: int) -> torch.Tensor:
        ctx.p, ctx.hw = p, tuple(x.shape[-2:])
        return F.pad(x, (p, p, p, p), mode="reflect")

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, w = ctx.hw
        return _reflect_fold(_reflect_fold(g, ctx.p, -1, w), ctx.p, -2, h), None


def _reflect_fold(g: torch.Tensor, p: int, dim: int, n: int) -> torch.Tensor:
    """The gradient of reflect padding along one axis: g has n + 2p entries on ``dim``; the pad copied
    x[1 + k] to padded[p - 1 - k] and x[n - 2 - k] to padded[p + n + k], so those flow back."""
    x = g.narrow(dim, p, n).clone()
    for k in range(p):
        x.select(dim, 1 + k).add_(g.select(dim, p - 1 - k))
        x.select(dim, n - 2 - k).add_(g.select(dim, p + n + k))
    return x


class ReflectionPad(nn.ReflectionPad2d):
    """nn.ReflectionPad2d (same module type for anything that inspects the layers) that pads in the input's
    dtype, also under autocast, whose CPU policy runs reflection_pad2d in fp32: in a bf16 step that is a
    cast to fp32 and back around every pad, for an op that only copies values. Equal sides use the faster
    backward of _ReflectPadFn."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_pad(x, self.padding)


def reflect_pad(x: torch.Tensor, p: tuple[int, int, int, int]) -> torch.Tensor:
    """F.pad(x, p, mode="reflect") in x's dtype, also under autocast (see ReflectionPad)."""
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return _reflect_pad(x, p)
    return _reflect_pad(x, p)


def _reflect_pad(x: torch.Tensor, p: tuple[int, int, int, int]) -> torch.Tensor:
    if p.count(p[0]) == 4 and torch.is_grad_enabled() and x.requires_grad:
        return _ReflectPadFn.apply(x, p[0])
    return F.pad(x, p, mode="reflect")


class PadConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and checkpoints) whose reflect padding (``padding_mode="reflect"``, the
    demo's down convs) is :func:`reflect_pad`: in the input's dtype and with the slice-and-add backward.
    nn.Conv2d pads through F.pad, which CPU autocast runs in fp32: in a bf16 step a cast of the (N, C, H, W)
    input to fp32, an fp32 pad and its element-wise backward, and a cast back (docs/performance.md).
    Other padding modes, tracing, scripting and ONNX export take nn.Conv2d's path."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            self.padding_mode != "reflect"
            or torch.jit.is_tracing()
            or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export()
        ):
            return super()._conv_forward(x, weight, bias)
        x = reflect_pad(x, tuple(self._reversed_padding_repeated_twice))
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def cpu_eager(x: torch.Tensor) -> bool:
    """Whether x is an (N, C, H, W) CPU tensor on an eager path (not traced, scripted or being exported
    to ONNX), where the CPU forms of this module apply."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
    )


def channels_last_cpu(x: torch.Tensor) -> bool:
    """:func:`cpu_eager` and channels_last."""
    return cpu_eager(x) and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class _ReplicatePad1Fn(torch.autograd.Function):
    """Replicate padding by 1 on all four sides of (N, C, H, W); backward as slices and adds (aten's
    replication_pad2d backward is an index_add, 1.3 ms at (4, 64, 34, 34) bf16 here)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1), mode="replicate")

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        for dim in (-1, -2):  # the edge rows and columns were copied from x's first and last
            x = g.narrow(dim, 1, g.shape[dim] - 2).clone()
            x.select(dim, 0).add_(g.select(dim, 0))
            x.select(dim, -1).add_(g.select(dim, -1))
            g = x
        return g


class _PhaseGatherFn(torch.autograd.Function):
    """(N, 4C, H+1, W+1), channel (a*2 + b)*C + c, -> (N, C, 2H, 2W) with y[.., c, 2i+a, 2j+b] =
    o[.., (a*2+b)*C + c, i+a, j+b]: each output phase read at its own offset. The read is one strided view
    (its offsets are linear in (i, a, j, b, c)) and one copy, in o's layout (channels_last or NCHW)."""

    @staticmethod
    def _view(o: torch.Tensor) -> tuple[torch.Tensor, bool]:
        n, c4, h1, w1 = o.shape
        c, h, w = c4 // 4, h1 - 1, w1 - 1
        sn, sc, sh, sw = o.stride()
        if o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous():  # (N, H, a, W, b, C)
            return o.as_strided((n, h, 2, w, 2, c), (sn, sh, sh + 2 * c, sw, sw + c, 1)), True
        # NCHW: (N, C, H, a, W, b)
        return o.as_strided((n, c, h, 2, w, 2), (sn, sc, sh, 2 * c * sc + sh, sw, c * sc + sw)), False

    @staticmethod
    def forward(ctx: Any, o: torch.Tensor) -> torch.Tensor:
        if not (o.is_contiguous(memory_format=torch.channels_last) or o.is_contiguous()):
            o = o.contiguous()
        ctx.o_shape, ctx.o_stride = o.shape, o.stride()
        v, cl = _PhaseGatherFn._view(o)
        n, c, h, w = o.shape[0], o.shape[1] // 4, 2 * (o.shape[2] - 1), 2 * (o.shape[3] - 1)
        y = v.contiguous()
        return y.view(n, h, w, c).permute(0, 3, 1, 2) if cl else y.view(n, c, h, w)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        go = torch.empty_strided(ctx.o_shape, ctx.o_stride, dtype=g.dtype, device=g.device).zero_()
        v, cl = _PhaseGatherFn._view(go)
        if cl:
            v.copy_(g.permute(0, 2, 3, 1).reshape(v.shape))
        else:
            v.copy_(g.reshape(v.shape))
        return go


# Nearest x2 then a 3x3 conv, seen from the low-resolution input: output row 2i reads input rows i-1 and
# i with kernel rows (W0, W1 + W2), output row 2i+1 rows i and i+1 with (W0 + W1, W2); columns alike.
# _RESIZE_TAPS[a, r, d]: how much of kernel row d phase a's tap r takes.
_RESIZE_TAPS = torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1.0, 1, 0], [0, 0, 1]]])


def resize_conv_phases(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(reflect_pad(nearest_x2(x), 1)) for a 3x3 ``conv`` without padding, computed at the input's
    resolution: replicate padding of x by 1 (the same values at the borders), one 2x2 conv with 4*C_out
    output channels (one per output phase; 4/9 of the multiply-adds, as nearest x2 repeats each value
    into the taps it reads twice), then each phase read at its offset. (N, C_in, H, W) -> (N, C_out, 2H,
    2W), in x's layout; the same function up to summation order."""
    co, ci = conv.out_channels, conv.in_channels
    with torch.autocast(x.device.type, enabled=False):  # the phase kernels summed in the weight's dtype
        t = _RESIZE_TAPS.to(conv.weight)
        mix = torch.einsum("ard,bse->deabrs", t, t).reshape(9, 16)
        w = conv.weight.contiguous().view(co * ci, 9) @ mix  # (C_out*C_in, (a, b, r, s))
        w = w.view(co, ci, 2, 2, 2, 2).permute(2, 3, 0, 1, 4, 5).reshape(4 * co, ci, 2, 2)
        b = conv.bias.repeat(4) if conv.bias is not None else None
        dtype = (
            torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        )
        x = _ReplicatePad1Fn.apply(x.to(dtype))
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            w = w.contiguous(memory_format=torch.channels_last)
        o = F.conv2d(x, w.to(dtype), b.to(dtype) if b is not None else None)  # (N, 4*C_out, H+1, W+1)
        return _PhaseGatherFn.apply(o)


class _ConvTransposeFn(torch.autograd.Function):
    """conv_transpose2d whose backward is written as the convolution it is the adjoint of: the input
    gradient is conv2d(grad, w) with the same stride and padding, the weight gradient that conv's weight
    gradient with the roles of input and output swapped. Same values as aten's backward (bit-equal in
    bf16 here), which ran 1.5-2.5x slower in bf16 channels_last on the CPU (docs/performance.md)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, args: tuple
    ) -> torch.Tensor:
        stride, padding, output_padding, groups, dilation = args
        ctx.save_for_backward(x, w)
        ctx.args, ctx.has_bias = args, b is not None
        return F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors  # x: (N, C_in, H, W); w: (C_in, C_out / groups, k, k); g: (N, C_out, H', W')
        stride, padding, _, groups, dilation = ctx.args
        g = g.contiguous(memory_format=torch.channels_last)
        gx = F.conv2d(g, w, None, stride, padding, dilation, groups) if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:
            gw = torch.ops.aten.convolution_backward(
                x, g, w, None, stride, padding, dilation, False, [0, 0], groups, [False, True, False]
            )[1]
        gb = g.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


class ConvTranspose(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same parameters and checkpoints) with a faster backward for channels_last
    inputs on the CPU in bf16 or fp16 (:class:`_ConvTransposeFn`); fp32, other devices and ONNX export
    take nn.ConvTranspose2d's path (in fp32 the two backwards ran at the same speed)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if (
            output_size is not None
            or dtype not in (torch.bfloat16, torch.float16)
            or not channels_last_cpu(x)
        ):
            return super().forward(x, output_size)
        w = self.weight.to(dtype)
        b = self.bias.to(dtype) if self.bias is not None else None
        args = (self.stride, self.padding, self.output_padding, self.groups, self.dilation)
        with torch.autocast("cpu", enabled=False):
            return _ConvTransposeFn.apply(x.to(dtype), w, b, args)
