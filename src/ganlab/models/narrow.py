"""Convolutions with few channels on one side, rewritten in a form the CPU's conv kernels run faster:
the generator's last conv (C -> 3 channels) and the input gradient of its first (3 -> C). Same module
types (nn.Conv2d subclasses), parameters and checkpoints; the same function up to summation order.
Measurements: docs/performance.md."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.models.layers import channels_last_cpu, reflect_pad


def _phase_weights(
    w: torch.Tensor, b: torch.Tensor | None, s: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights of a stride-1 conv rewritten for :class:`NarrowConv2d`'s stride-``s`` form: for each
    output phase (p, q) the kernel shifted by (p, q) inside a (k+s-1)^2 window. w: (C_out, C_in, k, k)
    -> (C_out*s*s, C_in, k+s-1, k+s-1), channel c*s*s + p*s + q as pixel_shuffle reads it."""
    co, ci, kh, kw = w.shape
    shifted = [F.pad(w, (q, s - 1 - q, p, s - 1 - p)) for p in range(s) for q in range(s)]
    big = torch.stack(shifted, 1).reshape(co * s * s, ci, kh + s - 1, kw + s - 1)
    return big, (b.repeat_interleave(s * s) if b is not None else None)


class NarrowConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and checkpoints) that computes a stride-1 conv with few output channels
    (the generator's last conv: C_in -> 3, 7x7) in a form oneDNN runs faster on the CPU: one stride-2 conv
    with 4x the output channels, each the kernel shifted to one of the four output phases, then
    pixel_shuffle(2). The CPU kernels fill their vector lanes with output channels, so 3 of them leave most
    lanes idle; 12 fill most. 1.3x the multiply-adds, 1.5-2x faster forward and backward at 64-256 px
    (docs/performance.md); the same function up to summation order. Padding inside the conv (the SR
    tail's reflect padding) is applied first. Other convs, other devices, odd output sizes and ONNX export
    take nn.Conv2d's path."""

    PHASES = 2

    def _phases_apply(self, x: torch.Tensor) -> bool:
        s, (kh, kw) = self.PHASES, self.kernel_size
        if not isinstance(self.padding, tuple) or self.padding_mode == "circular":  # "same"/"valid" strings
            return False
        ph, pw = self.padding
        return (
            x.device.type == "cpu"
            and x.dim() == 4
            and self.out_channels * s * s <= 16
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and (x.shape[-2] + 2 * ph - kh + 1) % s == 0
            and (x.shape[-1] + 2 * pw - kw + 1) % s == 0
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and not torch.onnx.is_in_onnx_export()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._phases_apply(x):
            return super().forward(x)
        s = self.PHASES
        if self.padding != (0, 0):  # the SR tail pads inside the conv (reflect); same pad, then no padding
            p = tuple(self._reversed_padding_repeated_twice)
            if self.padding_mode == "reflect":
                x = reflect_pad(x, p)
            else:
                x = F.pad(x, p, mode="constant" if self.padding_mode == "zeros" else self.padding_mode)
        # The weight taken contiguous first: built from a channels_last weight directly, the gradients of
        # two DDP processes averaged differed from one process's (tests/test_distributed.py); with the copy
        # they agree to rounding.
        w, b = _phase_weights(self.weight.contiguous(), self.bias, s)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            w = w.contiguous(memory_format=torch.channels_last)
        # (N, C_in, H+k-1, W+k-1) -> (N, 4*C_out, H/2, W/2) -> (N, C_out, H, W)
        return F.pixel_shuffle(F.conv2d(x, w, b, stride=s), s)


class _NarrowInputConvFn(torch.autograd.Function):
    """A stride-1, unpadded conv whose input gradient is computed in :class:`NarrowConv2d`'s phase form.

    The input gradient of a conv with few input channels (the stem: 3 -> C, 7x7) is a conv with 3 output
    channels: the full correlation of the output gradient with the flipped kernel, dx = conv2d(pad(g,
    k-1), flip(w)^T). Written as one stride-2 conv with 12 output channels and a pixel shuffle, it ran
    1.4-3.4x faster than aten's backward in channels_last (docs/performance.md). The weight and bias gradients are aten's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return F.conv2d(x, w, b)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors  # x: (N, C_in, H+k-1, W+k-1); w: (C_out, C_in, k, k); g: (N, C_out, H, W)
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        g = g.contiguous(memory_format=layout or torch.contiguous_format)
        gx = None
        if ctx.needs_input_grad[0]:
            k = w.shape[-1]
            # (C_in, C_out, k, k) -> (4*C_in, C_out, k+1, k+1); (N, C_out, H, W) -> (N, 4*C_in, (H+k-1)/2, ..)
            big, _ = _phase_weights(w.flip(2, 3).transpose(0, 1).contiguous(), None, 2)
            big = big.contiguous(memory_format=layout or torch.contiguous_format)
            gx = F.pixel_shuffle(F.conv2d(g, big, stride=2, padding=k - 1), 2)
        gw = gb = None
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            _, gw, gb = torch.ops.aten.convolution_backward(
                g, x, w, [w.shape[0]] if ctx.has_bias else None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]],
            )  # fmt: skip
        return gx, gw, gb


class NarrowInputConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and checkpoints) for a stride-1 conv with few input channels (the
    generator's stem, 3 -> C, 7x7, after its reflect pad) whose input gradient is needed (a generator's
    second pass, on the first one's output) and computed by :class:`_NarrowInputConvFn`, for channels_last
    inputs on the CPU. NCHW inputs (where the AVX2 kernels' own backward was faster: 2.7 against 4.9 ms
    at (4, 3, 70, 70) -> 32 channels, fp32), inputs without a gradient, padding inside the conv, odd
    input sizes, other devices and ONNX export take nn.Conv2d's path."""

    def _phases_apply(self, x: torch.Tensor) -> bool:
        return (
            channels_last_cpu(x)
            and x.requires_grad
            and torch.is_grad_enabled()
            and self.in_channels * 4 <= 16
            and self.stride == (1, 1)
            and self.padding == (0, 0)
            and self.dilation == (1, 1)
            and self.groups == 1
            and x.shape[-2] % 2 == 0
            and x.shape[-1] % 2 == 0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._phases_apply(x):
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        w = self.weight.to(dtype)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            w = w.contiguous(memory_format=torch.channels_last)
        b = self.bias.to(dtype) if self.bias is not None else None
        with torch.autocast("cpu", enabled=False):
            return _NarrowInputConvFn.apply(x.to(dtype), w, b)
