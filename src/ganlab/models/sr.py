"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017, "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", arXiv 1609.04802), with named presets.

Pixel convention for everything super-resolution in ganlab: images are float tensors in [0, 1]
(N, 3, H, W). The generator maps an LR image in [0, 1] to an HR image whose values are *nominally* in
[0, 1]: the last layer is linear (no tanh), so training sees unclamped values and inference clamps.
Internally the input is shifted by -0.5 and the output by +0.5 so the network works on centred data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.core.errors import ConfigError
from ganlab.models.blocks import PixelShuffleUp, conv_bias, make_norm
from ganlab.models.narrow import NarrowConv2d

SRNorm = Literal["batch", "none"]
SCALES = (2, 3, 4, 8)


@dataclass
class SRResNetConfig:
    """SRResNet knobs. Defaults are the paper's x4 network (16 blocks, 64 wide, BatchNorm)."""

    scale: int = 4
    hidden: int = 64
    n_residual: int = 16
    norm: SRNorm = "batch"
    icnr: bool = True  # ICNR init of the sub-pixel convs (Aitken et al. 2017): no checkerboard at init
    # "bicubic": add the bicubic upscale of the input to the output, so the network learns only the
    # missing detail (residual learning, Kim et al. 2016 "VDSR", arXiv 1511.04587). Not in the paper
    # ("none"), but it starts training at the bicubic baseline instead of from a random image.
    skip: Literal["none", "bicubic"] = "none"
    in_channels: int = 3

    def validate(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"scale: must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        if self.hidden < 1 or self.n_residual < 0:
            raise ConfigError("hidden must be >= 1 and n_residual >= 0")


@dataclass
class SRDiscriminatorConfig:
    """SRGAN discriminator knobs. ``pool`` is the side of the grid the conv features are averaged to."""

    hidden: int = 64  # width of the first conv; doubles every two convs up to 8 * hidden
    dense: int = 1024
    pool: int = 6
    in_channels: int = 3

    def validate(self) -> None:
        if self.hidden < 1 or self.dense < 1 or self.pool < 1:
            raise ConfigError("hidden, dense and pool must be >= 1")


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> nn.Conv2d:
    # Reflect padding keeps borders free of the dark rim zero padding teaches the net to undo.
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="reflect", bias=bias)


class SRResidualBlock(nn.Module):
    """x + [conv3x3, norm, PReLU, conv3x3, norm](x): (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, ch: int, norm: SRNorm) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.body = nn.Sequential(
            _conv(ch, ch, 3, bias),
            make_norm(norm, ch),
            nn.PReLU(ch),
            _conv(ch, ch, 3, bias),
            make_norm(norm, ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """(N, 3, h, w) LR in [0, 1] -> (N, 3, scale*h, scale*w) HR, linear output (clamp at inference).

    head: conv9x9 -> hidden, PReLU; n_residual residual blocks; conv3x3, norm, plus the head output
    (global skip); upsampling: log2(scale) x [conv3x3 -> 4*hidden, PixelShuffle(2), PReLU] (or one
    [conv -> 9*hidden, PixelShuffle(3), PReLU] for x3; Shi et al. 2016, arXiv 1609.05158); tail conv9x9 -> 3.
    """

    def __init__(self, cfg: SRResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, bias = cfg.hidden, conv_bias(cfg.norm)
        self.head = nn.Sequential(_conv(cfg.in_channels, c, 9), nn.PReLU(c))
        self.body = nn.Sequential(*[SRResidualBlock(c, cfg.norm) for _ in range(cfg.n_residual)])
        self.body_out = nn.Sequential(_conv(c, c, 3, bias), make_norm(cfg.norm, c))
        self.factors = [3] if cfg.scale == 3 else [2] * {2: 1, 4: 2, 8: 3}[cfg.scale]
        self.upsample = nn.Sequential(
            *[nn.Sequential(PixelShuffleUp(c, c, icnr=cfg.icnr, scale=f), nn.PReLU(c)) for f in self.factors]
        )
        # C -> 3 channels: NarrowConv2d (same parameters) runs it faster on the CPU.
        self.tail = NarrowConv2d(c, cfg.in_channels, 9, padding=4, padding_mode="reflect")
        if cfg.skip == "bicubic":
            # Start exactly at the bicubic baseline: the residual branch begins silent (zero last layer),
            # instead of adding noise the first hundred steps would spend removing.
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    @property
    def receptive_radius(self) -> int:
        """How many LR pixels away an input pixel can still change an output pixel (rounded up): the
        tile padding that makes tiled inference exact. 9x9 head (4) + 2 per residual block + 1 + the
        3x3 sub-pixel convs (1 pixel at 1/2, 1/4, .. LR px once upsampled) + the 9x9 tail at HR (4/s)."""
        ups = sum(1.0 / math.prod(self.factors[:i]) for i in range(len(self.factors)))
        return math.ceil(4 + 2 * self.cfg.n_residual + 1 + ups + 4 / self.cfg.scale)

    # Reflect padding needs a side > pad; the 9x9 convs pad 4, so smaller inputs are replicate-padded.
    MIN_SIDE = 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = max(0, self.MIN_SIDE - h), max(0, self.MIN_SIDE - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        head = self.head(x - 0.5)
        feat = head + self.body_out(self.body(head))
        s = self.cfg.scale
        y = self.tail(self.upsample(feat))
        if self.cfg.skip == "bicubic":
            # Same antialiased bicubic as the data pipeline and the baseline (a = -0.5, PIL/MATLAB).
            y = y + F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False, antialias=True)
        else:
            y = y + 0.5
        return y[..., : h * s, : w * s] if (ph or pw) else y


class SRDiscriminator(nn.Module):
    """(N, 3, H, W) HR image in [0, 1] -> (N, 1) raw real/fake score, for any H, W >= 16.

    Eight conv3x3 (widths hidden, hidden, 2h, 2h, 4h, 4h, 8h, 8h; stride 2 on the even-numbered ones),
    LeakyReLU 0.2, BatchNorm from the second conv; then AdaptiveAvgPool2d to pool x pool, dense -> 1024,
    LeakyReLU 0.2, dense -> 1. The paper feeds 96x96 crops, which four stride-2 convs reduce to 6x6; a
    6x6 adaptive pool is therefore the identity there (the paper's network exactly) and lets any other
    crop size reach the same dense layer.
    """

    def __init__(self, cfg: SRDiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = cfg.in_channels
        for i in range(8):
            cout = cfg.hidden * 2 ** (i // 2)
            stride = 2 if i % 2 else 1
            layers.append(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(cfg.pool)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * cfg.pool * cfg.pool, cfg.dense),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(cfg.dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x - 0.5)))
