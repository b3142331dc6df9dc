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


# aten's channels_last group-norm kernel takes a slow path for maps under 32 x 32 pixels: 20-60x slower
# than batch norm over each sample alone (PyTorch 2.13 CPU, docs/performance.md), as in a PatchGAN's last
# layers (16 x 16 and 15 x 15 at 128 px).
_GROUP_NORM_MIN_PIXELS = 1024


def _instance_norm_cl(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance norm of a channels_last (N, C, H, W) tensor: y (channels_last), and the (N, C) mean and
    1 / std of each sample's channels."""
    n, c, h, w = x.shape
    if h * w >= _GROUP_NORM_MIN_PIXELS:
        # Group norm with one channel per group is instance norm; its CPU kernel keeps channels_last.
        y, mean, rstd = torch.ops.aten.native_group_norm(x, None, None, n, c, h * w, c, eps)
        return y, mean.view(n, c), rstd.view(n, c)
    y = torch.empty_like(x)  # channels_last, as x; y[i : i + 1] is a channels_last sample
    mean, rstd = x.new_empty((n, c)), x.new_empty((n, c))
    for i in range(n):
        torch.ops.aten.native_batch_norm.out(
            x[i : i + 1], None, None, None, None, True, 0.0, eps,
            out=y[i : i + 1], save_mean=mean[i], save_invstd=rstd[i],
        )  # fmt: skip
    return y, mean, rstd


def _flat_maps(x: torch.Tensor, rstd: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor | None:
    """(N, C) 0.0 for the flat maps of a floating-point (N, C, H, W) x (all values within 1e-5 of each
    other, relative: in bf16 and fp16, equal), 1.0 for the others; None when none is flat.

    A flat-colour crop makes every map of a generator flat. Their instance norm is exactly zero, but the
    kernels' rounding left it at +-1 ulp x 1/sqrt(eps) (fp32: the mean's; bf16: the group-norm kernel's
    x * rstd - mean * rstd); a ReLU after it then passed half the gradient and every norm multiplied
    that by up to 1/sqrt(eps) = 316: the demo's fp32 runs took a 1e19 gradient in a stem conv and their
    colours swung or collapsed, a bf16 run with 4 residual blocks an infinite one (docs/cpu-recipe.md).
    Set to zero, as the constants they are, such maps send no gradient back.

    ``rstd`` (N, C), the norm's 1 / sqrt(var + eps) when at hand, skips the scan of x in the usual case:
    a flat map has a variance near zero (below 3 eps for values up to about 500), so where no map does,
    none is flat (the scan cost the demo's bf16 step 7%)."""
    if not x.is_floating_point():
        return None
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    if rstd is not None and eager_cpu and not bool((rstd.float() * eps**0.5 >= 0.5).any()):
        return None
    # Half types reduced as fp32 (exact): aten's bf16 max over a channels_last map took 2.8-4.1 ms at
    # (8-12, 32, 64, 64), the cast and the fp32 reductions 0.10-0.14 ms.
    xf = x.float() if x.element_size() < 4 else x
    hi, lo = xf.amax(dim=(2, 3)), xf.amin(dim=(2, 3))
    flat = hi - lo <= 1e-5 * torch.maximum(hi.abs(), lo.abs())
    # On a GPU (no host sync) and under torch.compile (no data-dependent branch): always the mask.
    if eager_cpu and not bool(flat.any()):
        return None
    return (~flat).to(x.dtype)


class _InstanceNormCLFn(torch.autograd.Function):
    """Instance norm (no affine) of a channels_last (N, C, H, W) tensor that stays channels_last, forward
    and backward. F.instance_norm views its input as (1, N*C, H, W), which copies a channels_last tensor
    to NCHW and back in every layer; that copying ate the gain of channels_last convolutions.

    Instance norm of sample i is batch norm (training statistics, no affine) of the batch of one x[i];
    aten's fused channels_last batch-norm kernels do it in one pass for the statistics and one for the
    result, forward and backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        y, mean, rstd = _instance_norm_cl(x, eps)
        ctx.eps, ctx.keep = eps, _flat_maps(x, rstd, eps)
        if ctx.keep is not None:
            y.mul_(ctx.keep[..., None, None])
        ctx.save_for_backward(x, mean, rstd)  # not y: a ReLU(inplace=True) may overwrite it
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        # Per sample and channel: dx = rstd * (g - mean_hw(g) - xhat * mean_hw(g * xhat)).
        x, mean, rstd = ctx.saved_tensors  # (N, C, H, W) channels_last; (N, C) statistics
        g = g.contiguous(memory_format=torch.channels_last)
        dx = torch.empty_like(x)
        for i in range(x.shape[0]):
            dx[i : i + 1] = torch.ops.aten.native_batch_norm_backward(
                g[i : i + 1], x[i : i + 1], None, None, None, mean[i], rstd[i], True, ctx.eps,
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.keep is not None:
            dx.mul_(ctx.keep[..., None, None])
        return dx, None


class InstanceNorm(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same type and state for anything that inspects the layers) that keeps a
    channels_last input channels_last (see _InstanceNormCLFn) and, in training, sets flat maps to zero
    (see _flat_maps); other inputs take the usual path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if self.affine or self.track_running_stats or x.dim() != 4:
            return super().forward(x)
        train = torch.is_grad_enabled() and x.requires_grad
        if train and cl:
            return _InstanceNormCLFn.apply(x, self.eps)
        if train and not torch.jit.is_tracing():
            # NCHW training: flat maps set to zero (see _flat_maps).
            keep = _flat_maps(x)
            y = super().forward(x)
            return y if keep is None else y * keep[..., None, None]
        if not cl:
            return super().forward(x)
        return _instance_norm_cl(x, self.eps)[0]
