"""Loss-weight phases and the learning-rate schedule: pure functions of the (1-based) epoch, or of the
share of the run done (``train.schedule_by: budget``), so a run on a slow machine still goes through the
whole schedule within its time budget."""

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


def phase_at_progress(schedule: list[Phase], progress: float, total_epochs: int) -> tuple[int, Phase]:
    """The phase in force when ``progress`` (0..1) of the run is done: a phase starting at epoch e of
    ``total_epochs`` starts at progress (e - 1) / total_epochs."""
    current = 0
    for i, ph in enumerate(schedule):
        if (phase_start(ph, total_epochs) - 1) / total_epochs <= progress:
            current = i
    return current, schedule[current]


def lr_factor_at_progress(progress: float, epochs: int, epochs_decay: int) -> float:
    """:func:`lr_factor` continued to fractional epochs: constant for the first epochs / (epochs +
    epochs_decay) of the run, then linear decay to 1 / (epochs_decay + 1) at its end."""
    total = epochs + epochs_decay
    return 1.0 - max(0.0, min(progress, 1.0) * total - epochs) / float(epochs_decay + 1)
