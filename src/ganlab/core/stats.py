"""Honest comparisons on small test sets: a paired bootstrap interval for the mean difference between two
methods scored on the same items, and the verdict it supports; t intervals over a few independent values
(training seeds), for one mean and for the difference of two."""

from __future__ import annotations

import math
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


def bootstrap_mean(
    x: Sequence[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of mean(x) over items (the test tiles of one configuration)."""
    x_ = np.asarray(x, dtype=np.float64)
    return paired_bootstrap(x_, np.zeros_like(x_), resamples, level, seed)


def t_cdf(x: float, df: float) -> float:
    """Student's t distribution function, by Simpson integration of the density from 0 to |x| (numpy
    only; scipy is not a dependency)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if x < 0:
        return 1.0 - t_cdf(-x, df)
    if x == 0:
        return 0.5
    t = np.linspace(0.0, x, 4001)  # an even number of intervals, as Simpson's rule needs
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df))
    h = x / (t.size - 1)
    area = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return float(min(1.0, 0.5 + area))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    hi = 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    lo = 0.0
    for _ in range(60):  # bisection to far below any printed digit
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_interval(x: Sequence[float], level: float = 0.95, offset: float = 0.0) -> Interval | None:
    """t interval of mean(x) - ``offset`` over independent values (the seeds of one configuration);
    None with fewer than 2 finite values (one seed says nothing about the spread between seeds)."""
    x_ = np.asarray(x, dtype=np.float64)
    x_ = x_[np.isfinite(x_)] - offset
    if x_.size < 2:
        return None
    mean, se = float(x_.mean()), float(x_.std(ddof=1) / math.sqrt(x_.size))
    half = t_quantile(1 - (1 - level) / 2, x_.size - 1) * se
    return Interval(mean, mean - half, mean + half, int(x_.size), level)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval | None:
    """Welch t interval of mean(a) - mean(b) for two independent samples of unequal spread (the seeds
    of two configurations); None unless both have at least 2 finite values."""
    a_, b_ = (np.asarray(v, dtype=np.float64) for v in (a, b))
    a_, b_ = a_[np.isfinite(a_)], b_[np.isfinite(b_)]
    if a_.size < 2 or b_.size < 2:
        return None
    va, vb = a_.var(ddof=1) / a_.size, b_.var(ddof=1) / b_.size
    d = float(a_.mean() - b_.mean())
    n = int(a_.size + b_.size)
    if va + vb == 0:  # every seed scored alike on both sides: no spread to widen the interval
        return Interval(d, d, d, n, level)
    df = (va + vb) ** 2 / (va**2 / (a_.size - 1) + vb**2 / (b_.size - 1))
    half = t_quantile(1 - (1 - level) / 2, df) * math.sqrt(va + vb)
    return Interval(d, d - half, d + half, n, level)
