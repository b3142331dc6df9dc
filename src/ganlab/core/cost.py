"""Compute cost of a model: parameters and FLOPs per image (torch.utils.flop_counter)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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
