"""The residual image-to-image generator (CycleGAN, Zhu et al. 2017, arXiv 1703.10593; layout after
Johnson et al. 2016), with the depth, width and upsampling method as knobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.core.errors import ConfigError
from ganlab.models.blocks import (
    NormKind,
    ResidualBlock,
    UpsampleKind,
    conv_bias,
    make_norm,
    make_upsample,
)
from ganlab.models.layers import PadConv2d, ReflectionPad
from ganlab.models.narrow import NarrowConv2d, NarrowInputConv2d


@dataclass
class GeneratorConfig:
    """Architecture knobs. Defaults are the documented final model ("model 2")."""

    hidden: int = 96  # width after the stem; doubles at each downsampling
    n_down: int = 1  # stride-2 downsampling blocks (and as many x2 upsampling blocks)
    n_residual: int = 2
    upsample: UpsampleKind = "pixelshuffle"
    norm: NormKind = "instance"
    dropout: float = 0.0
    # Global skip: out = tanh(atanh(x) + f(x)) with the last conv zero-initialised, so the generator starts
    # as the identity and learns only the change (off in the documented architecture).
    global_skip: bool = False
    # Padding of the stride-2 down convs. "zeros" is the reference layout; with an even input side a
    # 3x3 stride-2 conv then pads the top and left edges only, and translations carry a faint line there.
    # "reflect" pads with image content (same parameters, so checkpoints load either way).
    down_padding: Literal["zeros", "reflect"] = "zeros"
    in_channels: int = 3
    out_channels: int = 3

    def validate(self) -> None:
        if self.hidden < 1 or self.n_down < 0 or self.n_residual < 0:
            raise ConfigError("hidden must be >= 1, n_down and n_residual >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must lie in [0, 1), got {self.dropout}")


class ResnetGenerator(nn.Module):
    """(N, C_in, H, W) in [-1, 1] -> (N, C_out, H, W) in [-1, 1], for any H and W.

    stem: reflect pad 3, conv7x7 -> hidden; n_down x [conv3x3 stride 2, norm, ReLU] (width doubles);
    n_residual residual blocks; n_down x [x2 upsample, norm, ReLU] (width halves); reflect pad 3,
    conv7x7 -> C_out, tanh (with ``global_skip``: tanh(atanh(x) + that conv)). Inputs whose sides are not multiples of 2^n_down are reflect-padded and the
    output is cropped back, so output size == input size.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bias = conv_bias(cfg.norm)
        ch = cfg.hidden
        layers: list[nn.Module] = [
            ReflectionPad(3),
            NarrowInputConv2d(cfg.in_channels, ch, 7, bias=bias),
            make_norm(cfg.norm, ch),
            nn.ReLU(inplace=True),
        ]
        for _ in range(cfg.n_down):
            down = PadConv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias, padding_mode=cfg.down_padding)
            layers += [down, make_norm(cfg.norm, ch * 2)]
            layers.append(nn.ReLU(inplace=True))
            ch *= 2
        layers += [ResidualBlock(ch, cfg.norm, cfg.dropout) for _ in range(cfg.n_residual)]
        for _ in range(cfg.n_down):
            layers += [make_upsample(cfg.upsample, ch, ch // 2, bias), make_norm(cfg.norm, ch // 2)]
            layers.append(nn.ReLU(inplace=True))
            ch //= 2
        layers += [ReflectionPad(3), NarrowConv2d(ch, cfg.out_channels, 7)]
        if cfg.global_skip:
            if cfg.in_channels != cfg.out_channels:
                raise ValueError("global_skip needs in_channels == out_channels")
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        else:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    @property
    def multiple(self) -> int:
        return 2**self.cfg.n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # Reflect needs pad < side; tiny inputs fall back to replicate.
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.net(x)
        if self.cfg.global_skip:
            # x in [-1, 1] -> pre-activation space; the clamp keeps atanh finite at +-1.
            y = torch.tanh(torch.atanh(x.clamp(-0.999, 0.999)) + y)
        return y[..., :h, :w] if (ph or pw) else y
