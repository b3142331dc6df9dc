"""Exponential moving average of generator weights (Yazici et al. 2019, arXiv 1806.04498; as used by
Karras et al. 2018): the average of an oscillating GAN trajectory is usually a better generator than its
last point, with fewer high-frequency artifacts. Used for evaluation, samples and inference."""

from __future__ import annotations

import copy

import torch
from torch import nn

GENERATORS = ("G_A2B", "G_B2A")


def ema_name(name: str) -> str:
    return f"{name}_ema"


def make_ema(models: nn.ModuleDict) -> nn.ModuleDict:
    """Frozen copies of the generators, named ``G_A2B_ema`` and ``G_B2A_ema``."""
    ema = nn.ModuleDict({ema_name(k): copy.deepcopy(models[k]) for k in GENERATORS})
    ema.requires_grad_(False)
    return ema


def warmup_decay(decay: float, step: int) -> float:
    """The decay in force after ``step`` updates: ``min(decay, (1 + step) / (10 + step))``.

    Without the ramp a short run's average is dominated by the initial weights (after 226 updates at
    0.995, 32% of the average is still the initialisation); with it the average starts as a copy of the
    model and lengthens its memory as training goes on (the warm-up of TensorFlow's
    ExponentialMovingAverage with ``num_updates``).
    """
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: nn.ModuleDict, models: nn.ModuleDict, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * model, parameters and buffers alike; d = ``warmup_decay(decay, step)``
    with ``step`` the number of updates done before this one."""
    decay = warmup_decay(decay, step)
    for k in GENERATORS:
        e, m = ema[ema_name(k)], models[k]
        for pe, pm in zip(e.parameters(), m.parameters()):
            pe.lerp_(pm, 1.0 - decay)
        for be, bm in zip(e.buffers(), m.buffers()):
            be.copy_(bm)


def inference_view(models: nn.ModuleDict, ema: nn.ModuleDict | None) -> nn.ModuleDict:
    """The four networks with the EMA generators in place of the raw ones (when there are any)."""
    if ema is None:
        return models
    return nn.ModuleDict({k: (ema[ema_name(k)] if k in GENERATORS else v) for k, v in models.items()})
