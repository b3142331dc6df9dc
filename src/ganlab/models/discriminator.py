"""PatchGAN discriminator (Isola et al. 2017, arXiv 1611.07004): a grid of real/fake scores, one per
overlapping patch (70x70 receptive field with the default 3 layers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganlab.core.errors import ConfigError
from ganlab.models.blocks import NormKind, conv_bias, make_norm, separable_filter


@dataclass
class PatchGANConfig:
    """Width, depth and norm of the PatchGAN. Defaults: 2,764,737 parameters."""

    hidden: int = 64
    n_layers: int = 3
    norm: NormKind = "instance"
    # Spectral normalisation of every conv (Miyato et al. 2018, arXiv 1802.05957): bounds D's Lipschitz
    # constant, so its gradients to the generators stay smooth when it starts winning easily.
    spectral_norm: bool = False
    # Low-pass (binomial [1, 2, 1] x [1, 2, 1]) before every stride-2 conv. A strided conv aliases: a
    # pattern at 2 px period (a dot grid, stripes) folds onto coarse features, so a generator can fool
    # the discriminator with exactly those patterns. Blurring first removes that blind spot (Zhang 2019,
    # "Making Convolutional Networks Shift-Invariant Again", arXiv 1904.11486).
    antialias: bool = False
    # Stride of the first conv. 1 keeps full resolution for the first features, so thin lines and fine
    # texture reach D without being folded by a strided conv on the raw pixels (with ``antialias`` the
    # blur then acts on features, not on the image); it costs about 4x the later layers' compute.
    first_stride: Literal[1, 2] = 2
    in_channels: int = 3

    def validate(self) -> None:
        if self.hidden < 1 or self.n_layers < 1:
            raise ConfigError("hidden and n_layers must be >= 1")


class Blur(nn.Module):
    """Depthwise 3x3 binomial low-pass ([1, 2, 1] / 4 in each direction), size-preserving; no parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.tensor([0.25, 0.5, 0.25]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return separable_filter(x, self.kernel)


class PatchGANDiscriminator(nn.Module):
    """(N, C, H, W) -> (N, 1, H', W') raw scores (no sigmoid; the GAN loss decides).

    4x4 convs: stride 2 for the first n_layers (the very first: ``first_stride``), then stride 1 twice
    (the last to 1 channel); LeakyReLU 0.2 throughout; norm from the second conv on; width doubles up to
    8 * hidden.
    """

    def __init__(self, cfg: PatchGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bias = conv_bias(cfg.norm)
        ch = cfg.hidden
        blur = [Blur()] if cfg.antialias else []
        layers: list[nn.Module] = [
            *(blur if cfg.first_stride == 2 else []),
            nn.Conv2d(cfg.in_channels, ch, 4, cfg.first_stride, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for i in range(1, cfg.n_layers + 1):
            nxt = cfg.hidden * min(2**i, 8)
            stride = 2 if i < cfg.n_layers else 1
            layers += [*(blur if stride == 2 else []), nn.Conv2d(ch, nxt, 4, stride, 1, bias=bias)]
            layers.append(make_norm(cfg.norm, nxt))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        if cfg.spectral_norm:
            layers = [spectral_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
