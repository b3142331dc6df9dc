"""Loss-weight phases and the learning-rate schedule: pure functions of the (1-based) epoch."""

from __future__ import annotations

import math

from ganlab.cyclegan.config import Phase


def phase_start(phase: Phase, total_epochs: int) -> int:
    """Resolve a phase's start to a 1-based epoch within [1, total_epochs]."""
    s = phase.start
    if isinstance(s, float):
        epoch = math.floor(s * total_epochs) + 1  # 0.5 of 100 epochs -> epoch 51
    elif s <= 0:
        epoch = total_epochs + s + 1  # -4 of 100 epochs -> epoch 97 (the last 4)
    else:
        epoch = s
    return max(1, min(epoch, total_epochs))


def phase_at(schedule: list[Phase], epoch: int, total_epochs: int) -> tuple[int, Phase]:
    """The phase in force at ``epoch``: the last listed phase whose start is <= epoch."""
    current = 0
    for i, ph in enumerate(schedule):
        if phase_start(ph, total_epochs) <= epoch:
            current = i
    return current, schedule[current]


def phase_boundaries(schedule: list[Phase], total_epochs: int) -> list[tuple[int, int]]:
    """(epoch, phase index) at each switch, for plots."""
    out: list[tuple[int, int]] = []
    last = None
    for e in range(1, total_epochs + 1):
        i, _ = phase_at(schedule, e, total_epochs)
        if i != last:
            out.append((e, i))
            last = i
    return out


def lr_factor(epoch: int, epochs: int, epochs_decay: int) -> float:
    """Constant for ``epochs``, then linear decay over ``epochs_decay`` (reference CycleGAN's 'linear')."""
    return 1.0 - max(0, epoch - epochs) / float(epochs_decay + 1)
