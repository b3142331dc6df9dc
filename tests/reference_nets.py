"""The reference CycleGAN networks (pytorch-CycleGAN-and-pix2pix), rebuilt here from the documented
layout facts only (plain nn.Sequential; nothing from ganlab.models), so tests can check that ganlab maps
their state dicts onto a numerically identical network.

Generator facts: ``model.1`` the 7x7 stem conv after a 3-pixel reflection pad; ``model.4``, ``model.7``
the stride-2 3x3 convs; ``model.10``... residual blocks whose ``conv_block`` holds convs at 1 and 5 (6
with dropout); two ConvTranspose2d(k3, s2, p1, output_padding=1); reflection pad 3, 7x7 conv, Tanh.
Convs have a bias with InstanceNorm (affine=False), none with BatchNorm.
"""

from __future__ import annotations

import io

import torch
from torch import nn


def _norm(kind: str, ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch) if kind == "instance" else nn.BatchNorm2d(ch)


class RefBlock(nn.Module):
    def __init__(self, ch: int, norm: str, dropout: bool) -> None:
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), _norm(norm, ch), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), _norm(norm, ch)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class RefGenerator(nn.Module):
    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, dropout: bool = False, norm: str = "instance"
    ) -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(3, ngf, 7, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                _norm(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [RefBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=bias),
                _norm(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RefDiscriminator(nn.Module):
    """NLayerDiscriminator: 4x4 convs, stride 2 but for the last two, LeakyReLU 0.2, norm from the 2nd."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for n in range(1, n_layers + 1):
            nxt = ndf * min(2**n, 8)
            layers += [
                nn.Conv2d(ch, nxt, 4, 2 if n < n_layers else 1, 1, bias=bias),
                _norm(norm, nxt),
                nn.LeakyReLU(0.2, True),
            ]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def randomized(net: nn.Module, seed: int) -> nn.Module:
    """Every parameter (and BatchNorm statistic) drawn at random: nothing left at a neutral init, so a
    wrongly mapped tensor shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                r = torch.rand(t.shape, generator=g)
                t.copy_(0.5 + r if name.endswith("running_var") else (r - 0.5) * 0.4)
    return net.eval()


def with_stale_norm_stats(sd: dict[str, torch.Tensor], indices: list[str]) -> dict[str, torch.Tensor]:
    """Add the InstanceNorm running statistics old PyTorch versions saved (ignored on load)."""
    out = dict(sd)
    for prefix in indices:
        ch = 4
        out[f"{prefix}.running_mean"] = torch.full((ch,), 3.0)
        out[f"{prefix}.running_var"] = torch.full((ch,), 7.0)
        out[f"{prefix}.num_batches_tracked"] = torch.tensor(5)
    return out


def save_state_dict(sd: dict[str, torch.Tensor], path) -> None:
    buf = io.BytesIO()
    torch.save(sd, buf)
    path.write_bytes(buf.getvalue())
