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

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

NormKind = Literal["instance", "batch", "none"]
UpsampleKind = Literal["pixelshuffle", "pixelshuffle_icnr", "convtranspose", "resize_conv"]
UPSAMPLE_KINDS: tuple[str, ...] = ("pixelshuffle", "pixelshuffle_icnr", "convtranspose", "resize_conv")


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """InstanceNorm without affine parameters (reference CycleGAN), BatchNorm, or nothing."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def separable_filter(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Filter every channel of (N, C, H, W) with the 2-D kernel outer(k, k) (k: 1-D, odd length, on x's
    device), size-preserving. Reflect padding keeps a constant image constant at the borders; sides too
    short to reflect fall back to replication."""
    r = k.numel() // 2
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect" if min(x.shape[-2:]) > r else "replicate")
    k = k.to(x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


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
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
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
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch * scale * scale, 3, bias=bias)
        self.shuffle = nn.PixelShuffle(scale)
        if icnr:
            icnr_(self.conv.weight, scale)
            if self.conv.bias is not None:
                # Equal biases inside each sub-pixel group keep the nearest-neighbour property.
                with torch.no_grad():
                    b = self.conv.bias.view(out_ch, scale * scale)
                    b.copy_(b[:, :1].expand_as(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(self.pad(x)))

    def seamless_parts(self) -> tuple[str, list[nn.Module]]:
        return "chain", [self.pad, self.conv, self.shuffle]


class ResizeConvUp(nn.Module):
    """Nearest x2 then reflect-padded 3x3 conv: (N, C_in, H, W) -> (N, C_out, 2H, 2W)."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool = True) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pad = nn.ReflectionPad2d(1)
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
