"""How a training run is told to stop: a wall-clock budget that spans resumes, and a graceful Ctrl-C."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from typing import Any


class Budget:
    """Wall-clock training budget in minutes (None: unlimited) for the whole run: ``already`` is the
    training time spent by earlier invocations, so a resumed run continues the same budget."""

    def __init__(self, minutes: float | None, already: float = 0.0) -> None:
        self.minutes = minutes
        self.already = already
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return self.already + time.monotonic() - self.start

    def left(self) -> float:
        return math.inf if self.minutes is None else self.minutes * 60 - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


class StopFlag:
    """First Ctrl-C asks the loop to stop after the current step (it then saves a checkpoint);
    a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> StopFlag:
        if os.name == "posix" and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
