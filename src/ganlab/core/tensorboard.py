"""Optional TensorBoard logging of a run (RUN_DIR/tb): epoch scalars and sample images.

metrics.jsonl stays the record of truth; this only mirrors it for people who like TensorBoard's live
view. The ``tensorboard`` package is an optional extra, so its absence must be a clear message at the
moment logging is asked for, never an import error when ganlab starts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image

from ganlab.core.errors import MissingExtraError

# Bookkeeping fields of an epoch record that are not measurements.
SKIP_KEYS = frozenset({"type", "epoch", "step", "steps"})


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can be used (it needs the ``tensorboard`` package)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def flatten_scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a record as ``{"G_total": 1.2, "weights/identity": 0.5}``; booleans, strings
    and non-finite values are left out (TensorBoard would plot them as noise or reject them)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if not prefix and key in SKIP_KEYS:
            continue
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_scalars(value, tag + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[tag] = float(value)
    return out


class TensorBoardLogger:
    """Writes event files to ``run_dir/tb``. Epoch scalars use the epoch number as TensorBoard's step,
    so curves line up with metrics.jsonl and the sample grids (samples/epoch_NNNN.png)."""

    def __init__(self, run_dir: str | Path) -> None:
        if not tensorboard_available():
            raise MissingExtraError("--tensorboard", "tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tb"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer: Any = SummaryWriter(log_dir=str(self.log_dir))

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Every numeric scalar of an epoch record (nested ``weights`` as ``weights/identity`` ...)."""
        step = int(record.get("epoch", 0))
        for tag, value in flatten_scalars(record).items():
            self._writer.add_scalar(tag, value, step)
        self._writer.flush()  # visible in a running TensorBoard right away

    def log_image(self, tag: str, image: Image.Image, step: int) -> None:
        import numpy as np

        self._writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
