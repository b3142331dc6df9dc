"""Honest comparisons on small test sets: a paired bootstrap interval for the mean difference between two
methods scored on the same items, and the verdict it supports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Mean of the paired differences (a - b) and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """'better' when the whole interval is above zero, 'worse' when below, else 'undecided'."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "undecided"

    def __str__(self) -> str:
        return f"{self.mean:+.4g} [{self.low:+.4g}, {self.high:+.4g}]"


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap of mean(a - b) over items scored by both methods (resampling items, so the
    pairing is kept). Deterministic for a seed. Non-finite pairs are dropped."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_.shape != b_.shape:
        raise ValueError(f"paired scores need the same items, got {a_.shape} and {b_.shape}")
    d = a_ - b_
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no finite paired scores")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(d.mean()), float(low), float(high), int(d.size), level)
