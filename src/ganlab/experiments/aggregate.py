"""Runs grouped into configurations (the same config but the seed), and what their scores can tell apart.

For one metric with per-tile scores (ground-truth PSNR or SSIM of each test tile, from ``ganlab eval``):

- **mean**: the mean over the configuration's seeds of each run's score (a run's score is its mean over
  the test tiles).
- **95% over seeds**: a t interval over the seeds' scores: how far another training seed could move the
  mean. None with one seed.
- **95% over tiles**: a bootstrap interval over the test tiles of the seed-averaged tile scores: how far
  another draw of test tiles could move it.
- **difference to the best configuration and to the identity baseline** (the input returned unchanged),
  tested both ways: a *paired* bootstrap over the tiles (each tile's score averaged over the seeds first,
  so the tile pairs are the same images), and a t interval over the seeds (Welch's, for two
  configurations; one-sample against the identity, which has no seeds). A difference is called
  ``better`` or ``worse`` only when both 95% intervals leave out zero on the same side: neither the
  choice of test tiles nor the training seed can explain it. Otherwise it is ``indistinguishable``. With a
  single seed on a side the seed test cannot be made, and a tile-only verdict says so (``better (1 seed)``):
  it then speaks for the trained networks, not for the configurations.

Why not one bootstrap over tiles and seeds jointly: with three seeds a bootstrap over seeds sees only ten
distinct resamples and underestimates the spread between seeds, so it calls too many differences real;
the t interval accounts for the few seeds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ganlab.core import metric_table as MT
from ganlab.core.stats import Interval, bootstrap_mean, paired_bootstrap, t_interval, welch_interval

# Metrics with per-tile scores in eval.json ("tiles"), and the identity baseline's scores beside them.
IDENTITY = {"gt_psnr": "identity_psnr", "gt_ssim": "identity_ssim"}
DEFAULT_METRIC = "gt_psnr"
INDISTINGUISHABLE = "indistinguishable"
# Config keys that do not change what a run learns: runs differing only in these (and the seed) are
# seeds of one configuration.
RUNTIME_KEYS = (
    "train.seed",
    "train.device",
    "train.threads",
    "train.tensorboard",
    "train.log_every",
    "train.samples",
    "train.keep_checkpoints",
    "train.keep_every",
    "train.eval_images",
    "data.workers",
    "data.cache",
)
_SEED = re.compile(r"(^|,)seed=-?\d+(?=,|$)")


@dataclass
class RunScores:
    """What one run contributes: its configuration, seed, score and per-tile scores."""

    run: str
    config: str
    seed: int | None
    value: float | None  # the run's score (mean over its tiles)
    tiles: dict[str, float] | None = None  # tile name -> score
    identity: dict[str, float] | None = None  # tile name -> the identity baseline's score
    compute: dict[str, Any] = field(default_factory=dict)  # steps, images_seen, train_gflops


@dataclass
class Comparison:
    """A configuration against a reference (the best configuration, or the identity)."""

    diff: float  # mean score difference, this minus the reference
    tiles: Interval | None  # paired bootstrap over tiles
    seeds: Interval | None  # t interval over seeds
    verdict: str


@dataclass
class ConfigSummary:
    config: str
    runs: list[str]
    seeds: list[int | None]
    mean: float | None
    seed_ci: Interval | None
    tile_ci: Interval | None
    n_tiles: int
    compute: dict[str, Any]  # mean over the seeds
    is_best: bool = False
    vs_best: Comparison | None = None
    vs_identity: Comparison | None = None


def config_key(cfg: dict[str, Any]) -> str:
    """A configuration's identity: its flattened config without the seed and the runtime keys."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = node

    walk(cfg, "")
    return repr(sorted((k, repr(v)) for k, v in flat.items() if k not in RUNTIME_KEYS))


def config_label(run_labels: list[str]) -> str:
    """A configuration's name from its runs' names: the shared name without ``seed=N``."""
    stripped = [_SEED.sub("", label).strip(",") or "base" for label in run_labels]
    if len(set(stripped)) == 1:
        return stripped[0]
    return f"{run_labels[0]} (+{len(run_labels) - 1})"


def _shared_tiles(runs: list[RunScores], extra: tuple[dict[str, float], ...] = ()) -> list[str]:
    """Tile names every run (and every ``extra`` score map) has; [] when a run has no tile scores."""
    if not runs or not all(r.tiles for r in runs):
        return []
    maps = [r.tiles for r in runs if r.tiles] + list(extra)
    return [n for n in maps[0] if all(n in m for m in maps[1:])]


def _tile_means(runs: list[RunScores], names: list[str]) -> np.ndarray:
    """(tiles,) each tile's score averaged over the seeds."""
    return np.array([[r.tiles[n] for n in names] for r in runs if r.tiles]).mean(axis=0)


def _seed_means(runs: list[RunScores], names: list[str]) -> list[float]:
    """Each seed's score: its mean over ``names`` (the tiles both sides share), else the run's score."""
    if names:
        return [float(np.mean([r.tiles[n] for n in names])) for r in runs if r.tiles]
    return [float(r.value) for r in runs if r.value is not None and math.isfinite(r.value)]


def _sign(iv: Interval) -> int:
    return 1 if iv.low > 0 else -1 if iv.high < 0 else 0


def verdict(tiles: Interval | None, seeds: Interval | None, higher_is_better: bool = True) -> str:
    """``better``/``worse`` only when every interval there is leaves out zero on the same side."""
    ivs = [iv for iv in (tiles, seeds) if iv is not None]
    if not ivs:
        return "-"
    signs = {_sign(iv) for iv in ivs}
    if len(signs) != 1 or 0 in signs:
        return INDISTINGUISHABLE
    word = "better" if (signs == {1}) == higher_is_better else "worse"
    if seeds is None:
        return f"{word} (1 seed)"
    if tiles is None:
        return f"{word} (seeds only)"
    return word


def _compare_configs(a: list[RunScores], b: list[RunScores], hib: bool) -> Comparison | None:
    """Configuration ``a`` against configuration ``b``: paired over tiles, Welch over seeds."""
    names = _shared_tiles(a + b)
    xa, xb = _seed_means(a, names), _seed_means(b, names)
    if not xa or not xb:
        return None
    tiles_iv = paired_bootstrap(_tile_means(a, names), _tile_means(b, names)) if names else None
    seeds_iv = welch_interval(xa, xb)
    return Comparison(float(np.mean(xa) - np.mean(xb)), tiles_iv, seeds_iv, verdict(tiles_iv, seeds_iv, hib))


def _compare_identity(a: list[RunScores], identity: dict[str, float] | None, hib: bool) -> Comparison | None:
    """Configuration ``a`` against the identity baseline on the same tiles (no seeds on that side)."""
    names = _shared_tiles(a, (identity,)) if identity else []
    if not names or identity is None:
        return None
    ref = np.array([identity[n] for n in names])
    tiles_iv = paired_bootstrap(_tile_means(a, names), ref)
    xa = _seed_means(a, names)
    seeds_iv = t_interval(xa, offset=float(ref.mean()))
    diff = float(np.mean(xa) - ref.mean())
    return Comparison(diff, tiles_iv, seeds_iv, verdict(tiles_iv, seeds_iv, hib))


def summarize(runs: list[RunScores], metric: str = DEFAULT_METRIC) -> list[ConfigSummary]:
    """One summary per configuration (best first), each tested against the best configuration and
    against the identity baseline."""
    hib = MT.descending_by_default(metric)
    groups: dict[str, list[RunScores]] = {}
    for r in runs:
        groups.setdefault(r.config, []).append(r)
    out = []
    for name, rs in groups.items():
        values = [r.value for r in rs if r.value is not None and math.isfinite(r.value)]
        names = _shared_tiles(rs)
        compute = {
            k: float(np.mean(v))
            if (v := [r.compute[k] for r in rs if r.compute.get(k) is not None])
            else None
            for k in ("steps", "images_seen", "train_gflops")
        }
        out.append(
            ConfigSummary(
                name,
                [r.run for r in rs],
                [r.seed for r in rs],
                float(np.mean(values)) if values else None,
                t_interval(values),
                bootstrap_mean(_tile_means(rs, names)) if names else None,
                len(names),
                compute,
            )
        )
    scored = [s for s in out if s.mean is not None]
    if not scored:
        return out
    best = max(scored, key=lambda s: s.mean if hib else -s.mean)  # type: ignore[operator]
    best.is_best = True
    identity = next((r.identity for r in runs if r.identity), None)
    for s in out:
        if s.mean is None:
            continue
        if not s.is_best:
            s.vs_best = _compare_configs(groups[s.config], groups[best.config], hib)
        s.vs_identity = _compare_identity(groups[s.config], identity, hib)
    # Best first; configurations without a score last, in their order.
    return sorted(out, key=lambda s: (s.mean is None, 0.0 if s.mean is None else -s.mean if hib else s.mean))


# Columns of the configuration table (markdown, HTML): key -> header; the metric's own label is added.
def summary_headers(metric: str) -> dict[str, str]:
    return {
        "config": "configuration",
        "n_seeds": "seeds",
        "mean": MT.label(metric),
        "seed_ci": "95% over seeds",
        "tile_ci": "95% over tiles",
        "vs_best": "difference to best: tiles; seeds",
        "best_verdict": "vs best",
        "vs_identity": "difference to identity: tiles; seeds",
        "identity_verdict": "vs identity",
        "steps": MT.label("steps"),
        "images_seen": MT.label("images_seen"),
        "train_gflops": MT.label("train_gflops"),
    }


def _signed(metric: str) -> str:
    fmt = MT.METRICS[metric].fmt if metric in MT.METRICS else ".4g"
    return fmt if fmt.startswith("+") else "+" + fmt


def _span(iv: Interval | None, fmt: str) -> str:
    return "-" if iv is None else f"[{iv.low:{fmt}}, {iv.high:{fmt}}]"


def _difference(c: Comparison | None, metric: str) -> str:
    if c is None:
        return "-"
    f = _signed(metric)
    return f"{c.diff:{f}} ({_span(c.tiles, f)}; {_span(c.seeds, f)})"


def summary_rows(summaries: list[ConfigSummary], metric: str) -> list[dict[str, Any]]:
    """Table cells, formatted: intervals as [low, high], differences as 'd ([tiles]; [seeds])'."""
    f = MT.METRICS[metric].fmt if metric in MT.METRICS else ".4g"
    rows = []
    for s in summaries:
        rows.append(
            {
                "config": s.config,
                "n_seeds": len(s.runs),
                "mean": MT.format(metric, s.mean),
                "seed_ci": _span(s.seed_ci, f) if s.seed_ci else ("1 seed" if len(s.runs) == 1 else "-"),
                "tile_ci": _span(s.tile_ci, f),
                "vs_best": "-" if s.is_best else _difference(s.vs_best, metric),
                "best_verdict": "best" if s.is_best else (s.vs_best.verdict if s.vs_best else "-"),
                "vs_identity": _difference(s.vs_identity, metric),
                "identity_verdict": s.vs_identity.verdict if s.vs_identity else "-",
                **{k: MT.format(k, _whole(k, v)) for k, v in s.compute.items()},
            }
        )
    return rows


def _whole(key: str, v: Any) -> Any:
    return int(round(v)) if v is not None and key in ("steps", "images_seen") else v


def _interval(iv: Interval | None) -> dict[str, Any] | None:
    return (
        None
        if iv is None
        else {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n, "level": iv.level}
    )


def _comparison(c: Comparison | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"diff": c.diff, "tiles": _interval(c.tiles), "seeds": _interval(c.seeds), "verdict": c.verdict}


def summary_records(summaries: list[ConfigSummary], metric: str) -> list[dict[str, Any]]:
    """The summaries as plain numbers (summary.json)."""
    return [
        {
            "config": s.config,
            "metric": metric,
            "runs": s.runs,
            "seeds": s.seeds,
            "mean": s.mean,
            "seed_ci": _interval(s.seed_ci),
            "tile_ci": _interval(s.tile_ci),
            "n_tiles": s.n_tiles,
            "best": s.is_best,
            "vs_best": _comparison(s.vs_best),
            "vs_identity": _comparison(s.vs_identity),
            **s.compute,
        }
        for s in summaries
    ]
