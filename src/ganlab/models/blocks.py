"""Building blocks shared by the models: norm layers, residual block, the four upsampling methods, and a
separable low-pass filter.

Upsampling methods (each doubles H and W):
- ``pixelshuffle``: reflect-padded 3x3 conv to 4*C_out channels, then PixelShuffle(2) (sub-pixel
  convolution, Shi et al. 2016, arXiv 1609.05158).
- ``pixelshuffle_icnr``: the same, initialised with ICNR (Aitken et al. 2017, arXiv 1707.02937): the four
  sub-pixel filters of each output channel start identical, so at init the block equals nearest-neighbour
  upsampling of a single conv's output and has no checkerboard.
- ``convtranspose``: 3x3 transposed conv, stride 2, padding 1, output_padding 1 (reference CycleGAN).
- ``resize_conv``: nearest x2, then reflect-padded 3x3 conv (Odena et al. 2016, "Deconvolution and
  Checkerboard Artifacts").
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

NormKind = Literal["instance", "batch", "none"]
UpsampleKind = Literal["pixelshuffle", "pixelshuffle_icnr", "convtranspose", "resize_conv"]
UPSAMPLE_KINDS: tuple[str, ...] = ("pixelshuffle", "pixelshuffle_icnr", "convtranspose", "resize_conv")


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """InstanceNorm without affine parameters (reference CycleGAN), BatchNorm, or nothing."""
    if kind == "instance":
        return InstanceNorm(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def separable_filter(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Filter every channel of (N, C, H, W) with the 2-D kernel outer(k, k) (k: 1-D, odd length, on x's
    device), size-preserving. Reflect padding keeps a constant image constant at the borders; sides too
    short to reflect fall back to replication."""
    r = k.numel() // 2
    c = x.shape[1]
    if r > 2:
        # NCHW for long kernels: oneDNN's bf16 depthwise convolution in channels_last stalled for
        # minutes at 15 taps (a cycle blur of sigma 2.5+; PyTorch 2.13, AVX512_BF16).
        x = x.contiguous()
    x = F.pad(x, (r, r, r, r), mode="reflect" if min(x.shape[-2:]) > r else "replicate")
    k = k.to(x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


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


def _channels_last_cpu(x: torch.Tensor) -> bool:
    """Whether x is a channels_last (N, C, H, W) CPU tensor on an eager path (not traced, scripted or being
    exported to ONNX), where the CPU layouts of this module apply."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
    )


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


# aten's channels_last group-norm kernel takes a slow path for maps under 32 x 32 pixels: 20-60x slower
# than batch norm over each sample alone (PyTorch 2.13 CPU, docs/performance.md), as in a PatchGAN's last
# layers (16 x 16 and 15 x 15 at 128 px).
_GROUP_NORM_MIN_PIXELS = 1024


class _InstanceNormCLFn(torch.autograd.Function):
    """Instance norm (no affine) of a channels_last (N, C, H, W) tensor that stays channels_last, forward
    and backward. F.instance_norm views its input as (1, N*C, H, W), which copies a channels_last tensor
    to NCHW and back in every layer; that copying ate the gain of channels_last convolutions.

    Instance norm of sample i is batch norm (training statistics, no affine) of the batch of one x[i];
    aten's fused channels_last batch-norm kernels do it in one pass for the statistics and one for the
    result, forward and backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        n, c, h, w = x.shape
        if h * w >= _GROUP_NORM_MIN_PIXELS:
            # Group norm with one channel per group is instance norm; its CPU kernel keeps channels_last.
            y, mean, rstd = torch.ops.aten.native_group_norm(x, None, None, n, c, h * w, c, eps)
            mean, rstd = mean.view(n, c), rstd.view(n, c)
        else:
            y = torch.empty_like(x)  # channels_last, as x; y[i : i + 1] is a channels_last sample
            mean, rstd = x.new_empty((n, c)), x.new_empty((n, c))
            for i in range(n):
                torch.ops.aten.native_batch_norm.out(
                    x[i : i + 1], None, None, None, None, True, 0.0, eps,
                    out=y[i : i + 1], save_mean=mean[i], save_invstd=rstd[i],
                )  # fmt: skip
        ctx.eps = eps
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
        return dx, None


class InstanceNorm(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same type and state for anything that inspects the layers) that keeps a
    channels_last input channels_last (see _InstanceNormCLFn); other inputs take the usual path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if not cl or self.affine or self.track_running_stats:
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _InstanceNormCLFn.apply(x, self.eps)
        return F.group_norm(x, x.shape[1], eps=self.eps)


def conv_bias(norm: NormKind) -> bool:
    # BatchNorm's affine shift makes a conv bias redundant; InstanceNorm here has no affine parameters,
    # so the reference keeps the bias (this is what gives resnet9 its 11,378,179 parameters).
    return norm != "batch"


class ResidualBlock(nn.Module):
    """x + [reflect pad, conv3x3, norm, ReLU, (dropout), reflect pad, conv3x3, norm](x); shape kept."""

    def __init__(self, channels: int, norm: NormKind, dropout: float = 0.0) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            ReflectionPad(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            ReflectionPad(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)

    def seamless_parts(self) -> tuple[str, list[nn.Module]]:
        """For band-by-band execution (ganlab.core.layertree): forward is x + body(x)."""
        return "residual", [self.body]


@torch.no_grad()
def icnr_(weight: torch.Tensor, scale: int = 2, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR init in place for a conv feeding PixelShuffle(scale).

    weight: (C_out * scale^2, C_in, k, k). PixelShuffle takes channel c*scale^2 + i to sub-pixel i of
    output channel c, so copying one kernel to the scale^2 channels of each group makes every sub-pixel
    equal: the output is nearest-neighbour upsampling of conv(x; base kernel).
    """
    out_ch, in_ch, kh, kw = weight.shape
    r2 = scale * scale
    if out_ch % r2:
        raise ValueError(f"ICNR needs out channels divisible by {r2}, got {out_ch}")
    base = torch.empty(out_ch // r2, in_ch, kh, kw, dtype=weight.dtype, device=weight.device)
    init(base)
    weight.copy_(base.repeat_interleave(r2, dim=0))
    return weight


class PixelShuffleUp(nn.Module):
    """x2 sub-pixel upsampling: (N, C_in, H, W) -> conv -> (N, 4*C_out, H, W) -> (N, C_out, 2H, 2W)."""

    def __init__(
        self, in_ch: int, out_ch: int, icnr: bool = False, bias: bool = True, scale: int = 2
    ) -> None:
        super().__init__()
        self.pad = ReflectionPad(1)
        self.conv = nn.Conv2d(in_ch, out_ch * scale * scale, 3, bias=bias)
        self.shuffle = nn.PixelShuffle(scale)
        if icnr:
            icnr_(self.conv.weight, scale)
            if self.conv.bias is not None:
                # Equal biases inside each sub-pixel group keep the nearest-neighbour property.
                with torch.no_grad():
                    b = self.conv.bias.view(out_ch, scale * scale)
                    b.copy_(b[:, :1].expand_as(b))

    # False in the plain path of `ganlab bench --baseline` (with_torch_layers): conv, then nn.PixelShuffle.
    subpixel_last = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)
        if not (self.subpixel_last and _channels_last_cpu(x)):
            return self.shuffle(self.conv(x))
        # Channels_last on the CPU: aten's pixel shuffle there gathers single values at a stride of s*s
        # channels (its backward, pixel_unshuffle, took 4.6 ms at (4, 96, 128, 128) bf16). With the conv's
        # output channels reordered from (c, i, j) to (i, j, c), each output pixel's C channels are one
        # contiguous run in memory, and the shuffle copies runs: 3-6x faster forward and backward.
        s = self.shuffle.upscale_factor
        c = self.conv.out_channels // (s * s)
        w, b = self.conv.weight.contiguous(), self.conv.bias  # (C*s*s, C_in, k, k), channel c*s*s + i*s + j
        w = w.view(c, s * s, *w.shape[1:]).transpose(0, 1).reshape(w.shape)  # channel (i*s + j)*C + c
        w = w.contiguous(memory_format=torch.channels_last)
        b = b.view(c, s * s).t().reshape(-1) if b is not None else None
        y = F.conv2d(x, w, b)  # (N, s*s*C, H, W), memory (N, H, W, i, j, C)
        n, _, h, wd = y.shape
        y = y.permute(0, 2, 3, 1).reshape(n, h, wd, s, s, c).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(n, h * s, wd * s, c).permute(0, 3, 1, 2)  # (N, C, sH, sW) channels_last

    def seamless_parts(self) -> tuple[str, list[nn.Module]]:
        return "chain", [self.pad, self.conv, self.shuffle]


class ResizeConvUp(nn.Module):
    """Nearest x2 then reflect-padded 3x3 conv: (N, C_in, H, W) -> (N, C_out, 2H, 2W)."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pad = ReflectionPad(1)
        self.conv = nn.Conv2d(in_ch, out_ch, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(self.up(x)))

    def seamless_parts(self) -> tuple[str, list[nn.Module]]:
        return "chain", [self.up, self.pad, self.conv]


def make_upsample(kind: UpsampleKind, in_ch: int, out_ch: int, bias: bool = True) -> nn.Module:
    """The x2 upsampling layer alone (norm and activation are added by the caller)."""
    if kind == "pixelshuffle":
        return PixelShuffleUp(in_ch, out_ch, icnr=False, bias=bias)
    if kind == "pixelshuffle_icnr":
        return PixelShuffleUp(in_ch, out_ch, icnr=True, bias=bias)
    if kind == "convtranspose":
        return nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if kind == "resize_conv":
        return ResizeConvUp(in_ch, out_ch, bias=bias)
    raise ValueError(f"unknown upsample {kind!r}; known: {', '.join(UPSAMPLE_KINDS)}")


def with_torch_layers(module: nn.Module) -> nn.Module:
    """``module`` (changed in place and returned) with ganlab's faster layers swapped for the plain torch
    ones they stand for: ReflectionPad -> nn.ReflectionPad2d, InstanceNorm -> nn.InstanceNorm2d,
    NarrowConv2d -> nn.Conv2d, and PixelShuffleUp back to conv then nn.PixelShuffle. Same
    function and parameters; the plain path of ``ganlab bench --baseline`` runs it."""
    if isinstance(module, PixelShuffleUp):
        module.subpixel_last = False
    for name, child in list(module.named_children()):
        if isinstance(child, ReflectionPad):
            new: nn.Module = nn.ReflectionPad2d(child.padding)
        elif isinstance(child, InstanceNorm):
            new = nn.InstanceNorm2d(child.num_features, child.eps, child.momentum, child.affine)
        elif isinstance(child, NarrowConv2d):
            w = child.weight
            new = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                padding=child.padding,
                bias=child.bias is not None,
                padding_mode=child.padding_mode,
            )
            new.to(device=w.device, dtype=w.dtype).load_state_dict(child.state_dict())
        else:
            new = with_torch_layers(child)
        setattr(module, name, new)
    return module
