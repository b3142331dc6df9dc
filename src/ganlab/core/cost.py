"""Compute cost of a model: parameters and FLOPs per image (torch.utils.flop_counter)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ganlab.core.config import to_dict


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def gflops(module: nn.Module, size: int = 256, in_channels: int = 3) -> float:
    """GFLOPs (2 x multiply-adds) of one forward pass on a (1, C, size, size) input, on CPU meta-free."""
    device = next(module.parameters()).device
    x = torch.zeros(1, in_channels, size, size, device=device)
    was_training = module.training
    module.eval()
    with FlopCounterMode(display=False) as counter:
        module(x)
    module.train(was_training)
    return counter.get_total_flops() / 1e9


def describe(
    preset: str,
    cfg: Any,
    generator: nn.Module,
    discriminator: nn.Module,
    n_pairs: int = 1,
    generator_input: int = 256,
) -> dict[str, Any]:
    """Parameters and GFLOPs of a task's generator and discriminator at a 256 px output (``ganlab info``).
    ``n_pairs`` generator/discriminator pairs make up the whole model set (CycleGAN: 2); the generator
    sees ``generator_input`` px (SR: 256 / scale)."""
    g_params, d_params = count_params(generator), count_params(discriminator)
    return {
        "preset": preset,
        "generator": to_dict(cfg.model),
        "discriminator": to_dict(cfg.disc),
        "generator_params": g_params,
        "discriminator_params": d_params,
        "total_params": n_pairs * (g_params + d_params),
        "generator_gflops_256": gflops(generator, generator_input),
        "discriminator_gflops_256": gflops(discriminator, 256),
        "config": to_dict(cfg),
    }
