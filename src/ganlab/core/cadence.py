"""When the training loop writes a mid-epoch checkpoint: every N global steps and/or after M minutes
without one, so a crash (or ``kill -9``) loses at most that much work. Epoch ends always save."""

from __future__ import annotations

import time
from collections.abc import Callable


class Cadence:
    """``due(global_step)`` after each step; ``saved()`` whenever a checkpoint was written. Step counts
    are global (a resumed run saves at the same steps as an uninterrupted one)."""

    def __init__(
        self,
        every_steps: int | None,
        every_minutes: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_steps = every_steps or None
        self.every_seconds = every_minutes * 60 if every_minutes else None
        self.clock = clock
        self.last = clock()

    def due(self, global_step: int) -> bool:
        if self.every_steps is not None and global_step % self.every_steps == 0:
            return True
        return self.every_seconds is not None and self.clock() - self.last >= self.every_seconds

    def saved(self) -> None:
        self.last = self.clock()

    def describe(self) -> str:
        """The cadence in words (for docs and logs)."""
        parts = []
        if self.every_steps:
            parts.append(f"every {self.every_steps} steps")
        if self.every_seconds:
            parts.append(f"every {self.every_seconds / 60:g} min")
        return " and ".join(parts + ["at each epoch end"])
