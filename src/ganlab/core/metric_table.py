"""The one table of metric names: key, human label, which direction is better and how to print a value.

`ganlab eval`, `ganlab compare` (and sweeps), the demo reports and the SR evaluation all name, rank and
format the same numbers; they read labels, sort direction and formats from :data:`METRICS` so a metric
cannot read "better" in one table and "worse" in another, or carry two different names.

Task-free on purpose: only strings and numbers live here, nothing imported from the task packages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Metric",
    "METRICS",
    "label",
    "format",
    "headers",
    "formatters",
    "descending_by_default",
    "rank_value",
]


@dataclass(frozen=True)
class Metric:
    """One metric column.

    ``higher_is_better``: True or False for a quality or cost; None for a descriptive column (a count, a
    setting) where neither direction is better. ``fmt``: a format spec for ``f"{value:{fmt}}"``.
    ``absolute``: the value is signed and its size is what matters (a colour shift of -3 is worse than
    one of +1), so it ranks by magnitude. ``note``: a short reading hint (a sign convention) shown beside
    the label where a table has room for it.
    """

    key: str
    label: str
    higher_is_better: bool | None
    fmt: str
    absolute: bool = False
    note: str = ""


def _table(*metrics: Metric) -> dict[str, Metric]:
    return {m.key: m for m in metrics}


_PSNR, _SSIM = ".2f", ".4f"

METRICS: dict[str, Metric] = _table(
    # Image quality: CycleGAN cycle (input vs reconstruction) and ground truth (translation vs truth).
    Metric("cycle_psnr", "cycle PSNR dB", True, _PSNR),
    Metric("cycle_ssim", "cycle SSIM", True, _SSIM),
    Metric("cycle_psnr_b", "B cycle PSNR dB", True, _PSNR),
    Metric("cycle_ssim_b", "B cycle SSIM", True, _SSIM),
    Metric("gt_psnr", "GT PSNR dB", True, _PSNR),
    Metric("gt_ssim", "GT SSIM", True, _SSIM),
    # Cosine between the change the translation made and the true change (-1..1).
    Metric("gt_alignment", "alignment with truth", True, ".4f", note=">0 toward it"),
    # Baselines on the same ground-truth pairs: the input unchanged, and an oracle global colour map.
    Metric("identity_psnr", "identity PSNR dB", True, _PSNR),
    Metric("identity_ssim", "identity SSIM", True, _SSIM),
    Metric("affine_psnr", "affine PSNR dB", True, _PSNR),
    Metric("affine_ssim", "affine SSIM", True, _SSIM),
    # Artifacts: share of spectral energy at the upsampling period (0 = no grid pattern).
    Metric("checkerboard_flat", "checker (flat)", False, ".4f"),
    Metric("checkerboard_images", "checker (images)", False, ".4f"),
    # Tint: mean CIELAB shift from input to translation (signed a*, b*) and mean delta E 2000; the gt_
    # variants measure the translation against the ground truth instead of the input.
    Metric("tint_delta_a", "delta a*", False, "+.2f", absolute=True),
    Metric("tint_delta_b", "delta b*", False, "+.2f", absolute=True, note="<0 bluer"),
    Metric("tint_delta_e2000", "delta E2000", False, ".2f"),
    Metric("gt_tint_delta_a", "delta a* vs truth", False, "+.2f", absolute=True),
    Metric("gt_tint_delta_b", "delta b* vs truth", False, "+.2f", absolute=True, note="<0 bluer"),
    Metric("gt_tint_delta_e2000", "delta E2000 vs truth", False, ".2f"),
    # Super-resolution: luma PSNR/SSIM of the model and of bicubic upscaling, and the model's gain.
    Metric("psnr_y", "PSNR-Y dB", True, _PSNR),
    Metric("ssim_y", "SSIM-Y", True, _SSIM),
    Metric("bicubic_psnr_y", "bicubic PSNR-Y dB", True, _PSNR),
    Metric("bicubic_ssim_y", "bicubic SSIM-Y", True, _SSIM),
    Metric("gain_db", "gain over bicubic dB", True, "+.2f"),
    # Cost of a run: one generator's size and compute on a 256x256 input, time and memory of training.
    Metric("generator_params", "G params", False, ",d"),
    Metric("discriminator_params", "D params", False, ",d"),
    Metric("gflops_256", "GFLOPs/256px", False, ".4g"),
    Metric("seconds_per_epoch", "s/epoch (median)", False, ".1f"),
    Metric("peak_mem_mb", "peak MB", False, ",.0f"),
    Metric("epochs", "epochs", None, "d"),
    # Compute a run spent: its training steps, the images it saw per domain (steps x batch) and the
    # FLOPs of those steps (one counted training step x steps; per-epoch evaluation not included).
    Metric("seed", "seed", None, "d"),
    Metric("steps", "steps", None, ",d"),
    Metric("images_seen", "images seen", None, ",d"),
    Metric("train_gflops", "train GFLOPs", False, ",.1f"),
)


def label(key: str) -> str:
    """The human label of ``key``; the key itself for columns that are not metrics (run, preset)."""
    m = METRICS.get(key)
    return m.label if m else key


def _generic(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format(key: str, value: Any) -> str:
    """``value`` printed with ``key``'s format; '-' for a missing or NaN value (not evaluated, no data).

    Values the format does not fit (text, a float where an int is expected) and keys outside the table
    get a generic short form, so a table never fails on an odd cell.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    m = METRICS.get(key)
    if m is None or isinstance(value, (bool, str)):
        return _generic(value)
    try:
        return f"{value:{m.fmt}}"
    except (TypeError, ValueError):
        return _generic(value)


def headers(keys: Iterable[str]) -> dict[str, str]:
    """``{key: label}`` for a table's columns (the ``headers`` argument of core.report's tables)."""
    return {k: label(k) for k in keys}


def formatters(keys: Iterable[str]) -> dict[str, Callable[[Any], str]]:
    """``{key: value -> text}`` for the metric columns among ``keys`` (core.report.html_table's ``fmt``)."""
    return {k: (lambda v, k=k: format(k, v)) for k in keys if k in METRICS}


def descending_by_default(key: str) -> bool:
    """Sort order that puts the better value first: descending where higher is better, ascending where
    lower is; descriptive columns (and columns outside the table) ascend, in their natural order."""
    m = METRICS.get(key)
    return bool(m and m.higher_is_better)


def rank_value(key: str, value: Any) -> Any:
    """What a sort compares: the magnitude for signed ``absolute`` metrics, the value otherwise."""
    m = METRICS.get(key)
    if m is not None and m.absolute and value is not None:
        return abs(value)
    return value
