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

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.models.layers import (
    ConvTranspose,
    PadConv2d,
    ReflectionPad,
    channels_last_cpu,
    cpu_eager,
    resize_conv_phases,
)
from ganlab.models.narrow import NarrowConv2d, NarrowInputConv2d
from ganlab.models.norm import InstanceNorm

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
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    if r >= 3 and cpu_eager(x) and max(x.shape[-2:]) <= 160:
        # Long kernels on small CPU images as two matrix products with the padding folded in: oneDNN's
        # depthwise convolutions ran 3.5x slower (11 taps, (4, 3, 64, 64); docs/performance.md).
        taps = tuple(k.tolist())
        mh, mw = (_filter_matrix(n, taps, mode).to(x.dtype) for n in x.shape[-2:])
        return torch.matmul(mh, torch.matmul(x, mw.t()))
    if r > 2:
        # NCHW for long kernels: oneDNN's bf16 depthwise convolution in channels_last stalled for
        # minutes at 15 taps (a cycle blur of sigma 2.5+; PyTorch 2.13, AVX512_BF16).
        x = x.contiguous()
    x = F.pad(x, (r, r, r, r), mode=mode)
    k = k.to(x.dtype)
    if r == 1:
        # 3 taps (the discriminators' anti-aliasing blur): one depthwise 3x3 conv with outer(k, k), half the
        # calls of the separable pair; at these sizes a call's cost is mostly overhead (docs/performance.md).
        return F.conv2d(x, torch.outer(k, k).expand(c, 1, 3, 3), groups=c)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@functools.lru_cache(maxsize=32)
def _filter_matrix(n: int, taps: tuple[float, ...], mode: str) -> torch.Tensor:
    """(n, n) M with M @ v = v (length n) padded (reflect or replicate) and filtered by ``taps``."""
    r = len(taps) // 2
    j = torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :]  # (n, taps): the padded reads
    if mode == "reflect":
        j = torch.where(j < 0, -j, j)
        j = torch.where(j > n - 1, 2 * (n - 1) - j, j)
    j = j.clamp(0, n - 1)
    m = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)[:, None].expand_as(j)
    taps_t = torch.tensor(taps, dtype=torch.float64).expand_as(j).contiguous()
    return m.index_put_((rows, j), taps_t, accumulate=True)


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
        if not (self.subpixel_last and channels_last_cpu(x)):
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

    # False in the plain path of `ganlab bench --baseline` (with_torch_layers): upsample, pad, conv.
    phases = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.phases
            and cpu_eager(x)
            and self.conv.kernel_size == (3, 3)
            and not torch.compiler.is_compiling()
        ):
            # The same function at the input's resolution (2.25x fewer multiply-adds; docs/performance.md).
            # Not under torch.compile: inductor failed on the phase read's strided view ("vr must not be
            # None", PyTorch 2.13).
            return resize_conv_phases(x, self.conv)
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
        return ConvTranspose(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if kind == "resize_conv":
        return ResizeConvUp(in_ch, out_ch, bias=bias)
    raise ValueError(f"unknown upsample {kind!r}; known: {', '.join(UPSAMPLE_KINDS)}")


def with_torch_layers(module: nn.Module) -> nn.Module:
    """``module`` (changed in place and returned) with ganlab's faster layers swapped for the plain torch
    ones they stand for: ReflectionPad -> nn.ReflectionPad2d, InstanceNorm -> nn.InstanceNorm2d,
    NarrowConv2d and NarrowInputConv2d -> nn.Conv2d, ConvTranspose -> nn.ConvTranspose2d, PixelShuffleUp back to conv then
    nn.PixelShuffle, and ResizeConvUp back to upsample, pad, conv. Same function and parameters; the plain path of ``ganlab bench --baseline`` runs it."""
    if isinstance(module, PixelShuffleUp):
        module.subpixel_last = False
    if isinstance(module, ResizeConvUp):
        module.phases = False
    for name, child in list(module.named_children()):
        if isinstance(child, ReflectionPad):
            new: nn.Module = nn.ReflectionPad2d(child.padding)
        elif isinstance(child, InstanceNorm):
            new = nn.InstanceNorm2d(child.num_features, child.eps, child.momentum, child.affine)
        elif isinstance(child, ConvTranspose):
            new = nn.ConvTranspose2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                child.padding,
                child.output_padding,
                child.groups,
                child.bias is not None,
                child.dilation,
            )
            w = child.weight
            new.to(device=w.device, dtype=w.dtype).load_state_dict(child.state_dict())
        elif isinstance(child, (NarrowConv2d, NarrowInputConv2d, PadConv2d)):
            w = child.weight
            new = nn.Conv2d(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                child.padding,
                child.dilation,
                child.groups,
                bias=child.bias is not None,
                padding_mode=child.padding_mode,
            )
            new.to(device=w.device, dtype=w.dtype).load_state_dict(child.state_dict())
        else:
            new = with_torch_layers(child)
        setattr(module, name, new)
    return module
