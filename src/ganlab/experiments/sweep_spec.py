"""Sweep files: what a sweep runs, parsed and checked before anything trains.

A sweep file has ``base:`` (what every run shares: shorthand train options such as ``preset``, ``data``,
``size``, ``batch_size``, ``epochs``, ``minutes``, plus any config key in dotted or nested form, and
``config:`` files), ``grid:`` (dotted config key -> list of values: every combination is a configuration;
or a list of mappings, dotted config key -> value: exactly those configurations), and optionally ``seeds:``
(a list of ints: every configuration of the grid runs once per seed) and ``budget:`` (``{minutes: M}`` or
``{gflops: G}``: the same training budget for every run). Every run's full config is built and validated
before anything trains, so a typo in the last combination cannot waste the first hour.

Run names: ``n_residual=2,n_down=1`` for a configuration; with seeds, ``n_residual=2,n_down=1,seed=0``, so a
configuration's seeds sort together. With seeds, runs go seed by seed (every configuration's seed 0 first),
so an interrupted study already holds one run of each configuration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganlab.core.config import ConfigError, load_yaml, merge
from ganlab.cyclegan.config import OPTIONS, CycleGANConfig, build_cyclegan_config
from ganlab.experiments import compute

# Shorthands accepted in base: and grid:, mapped to their config keys: the `ganlab train` flag names.
SHORTHANDS = {o.name: o.key for o in OPTIONS}
SECTIONS = ("model", "disc", "data", "train")
TOP_LEVEL = ("base", "grid", "seeds", "budget")
# Epochs of a run under a minute budget when the sweep does not set them: never reached, so the budget
# (not a fast configuration finishing its epochs early) ends every run.
BUDGET_EPOCHS = 10_000


class SweepError(ConfigError):
    """A sweep file problem (layout, unknown key, invalid value); the message names the key and run."""


@dataclass
class SweepRun:
    name: str
    values: dict[str, Any]  # dotted key -> this run's grid value
    overrides: dict[str, Any]  # nested config overrides: base + values (+ seed, budget)
    config: str = ""  # the configuration's name: ``name`` without the seed
    seed: int | None = None  # the sweep's seed for this run (None: no seeds: list)
    cfg: CycleGANConfig | None = None
    step_gflops: float | None = None  # one training step's GFLOPs (budget: gflops only)


@dataclass
class Sweep:
    path: Path | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    config_files: list[str] = field(default_factory=list)
    runs: list[SweepRun] = field(default_factory=list)
    seeds: list[int] | None = None
    budget: dict[str, float] | None = None  # {"minutes": M} or {"gflops": G}

    @property
    def n_configs(self) -> int:
        return len({r.config for r in self.runs})


def _set_dotted(tree: dict[str, Any], key: str, value: Any, where: str) -> None:
    node = tree
    parts = key.split(".")
    if not all(parts):
        raise SweepError(f"{where}: malformed key {key!r}")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SweepError(f"{where}: {key} is set both as a value and as a section")
    node[parts[-1]] = value


def _get_dotted(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _canonical_key(key: str) -> str:
    return SHORTHANDS.get(key, key)


def _base_overrides(base: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """base: -> (nested overrides, extra config files). Shorthands and dotted keys become nested;
    nested sections are merged as given (a string ``data`` is the data root, a mapping the section)."""
    nested: dict[str, Any] = {}
    files: list[str] = []
    for key, value in base.items():
        if key == "config":
            files = [value] if isinstance(value, str) else list(value or [])
        elif key in SECTIONS and isinstance(value, dict):
            nested = merge(nested, {key: value})
        else:
            _set_dotted(nested, _canonical_key(key), value, "base")
    return nested, files


def _config_files(files: list[str], path: Path | None) -> list[str]:
    """Config files as given, or (when not found from the current directory) relative to the sweep
    file's folder, so a shipped sweep can name a shipped recipe wherever ganlab is run from."""
    out = []
    for f in files:
        p = Path(f).expanduser()
        if not p.is_file() and path is not None and not p.is_absolute() and (path.parent / p).is_file():
            p = path.parent / p
        out.append(str(p.resolve()) if p.is_file() else f)
    return out


def _absolute_data_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """Data folders made absolute (relative to the current directory), so the runs' stored configs,
    and a later eval or compare of them, work from any directory."""
    data = overrides.get("data")
    if not isinstance(data, dict):
        return overrides
    fixed = {
        k: str(Path(v).expanduser().resolve())
        for k in ("root", "a", "b")
        if isinstance(v := data.get(k), str)
    }
    return merge(overrides, {"data": fixed}) if fixed else overrides


def _value_label(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list, tuple)):
        return hashlib.sha1(json.dumps(v, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return str(v)


def sanitize(name: str) -> str:
    """Keep names portable as folder names: letters, digits and . _ = , + - only."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", name).strip("._")
    return name[:120] or "run"


def run_name(values: dict[str, Any], keys: list[str]) -> str:
    """``n_residual=2,n_down=1``: the last part of each key, or the whole key where two grid keys share
    a last part (model.hidden and disc.hidden)."""
    last = [k.split(".")[-1] for k in keys]
    parts = []
    for k, short in zip(keys, last):
        label = short if last.count(short) == 1 else k
        parts.append(f"{label}={_value_label(values[k])}")
    return sanitize(",".join(parts))


def with_seed(config: str, seed: int) -> str:
    """The run name of one seed of a configuration (``base`` is the configuration of an empty grid)."""
    return f"seed={seed}" if config == "base" else f"{config},seed={seed}"


def _parse_seeds(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
    )
    if not ok:
        raise SweepError(f"{where}: seeds: expected a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise SweepError(f"{where}: seeds: {value} repeats a seed")
    return list(value)


def _parse_budget(value: Any, where: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("minutes", "gflops"):
        raise SweepError(f"{where}: budget: expected {{minutes: M}} or {{gflops: G}}, got {value!r}")
    ((kind, amount),) = value.items()
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < math.inf:
        raise SweepError(f"{where}: budget.{kind}: expected a positive number, got {amount!r}")
    return {kind: float(amount)}


def _check_budget_keys(sweep: Sweep, nested: dict[str, Any], where: str) -> None:
    """A sweep budget owns the keys that stop a run; setting them in base: or grid: too is ambiguous."""
    if sweep.budget is None:
        return
    owned = ["train.minutes", "train.max_steps"] + (["train.epochs"] if "gflops" in sweep.budget else [])
    for key in owned:
        if _get_dotted(nested, key) is not None or key in sweep.grid:
            kind = next(iter(sweep.budget))
            raise SweepError(f"{where}: {key} is set by budget: {kind}; remove it from base: and grid:")


def parse_sweep(data: dict[str, Any], path: Path | None = None) -> Sweep:
    """Check the layout of a sweep mapping and expand the grid (configs are validated separately)."""
    where = str(path) if path else "sweep"
    unknown = [k for k in data if k not in TOP_LEVEL]
    if unknown:
        raise SweepError(
            f"{where}: unknown top-level key {unknown[0]!r}; a sweep has base:, grid:, seeds: and budget:"
        )
    base = data.get("base") or {}
    grid_in = data.get("grid") or {}
    if not isinstance(base, dict):
        raise SweepError(f"{where}: base: must be a mapping of train options and config keys")
    combos = _parse_grid(grid_in, where)
    # Every value each key takes, in order of appearance (what the sweep lists and records).
    grid: dict[str, list[Any]] = {}
    for combo in combos:
        for k, v in combo.items():
            if v not in grid.setdefault(k, []):
                grid[k].append(v)
    nested, files = _base_overrides(base)
    seeds = _parse_seeds(data.get("seeds"), where)
    if seeds is not None and (_get_dotted(nested, "train.seed") is not None or "train.seed" in grid):
        raise SweepError(f"{where}: train.seed is set by seeds:; remove it from base: and grid:")
    sweep = Sweep(path, base, grid, _config_files(files, path), seeds=seeds)
    sweep.budget = _parse_budget(data.get("budget"), where)
    _check_budget_keys(sweep, nested, where)
    if sweep.budget and "minutes" in sweep.budget:
        nested = merge(nested, {"train": {"minutes": sweep.budget["minutes"]}})
        if _get_dotted(nested, "train.epochs") is None and "train.epochs" not in grid:
            nested = merge(nested, {"train": {"epochs": BUDGET_EPOCHS}})
    sweep.runs = _expand(combos, list(grid), nested, seeds)
    return sweep


def _parse_grid(grid_in: Any, where: str) -> list[dict[str, Any]]:
    """The configurations of ``grid:`` as dotted key -> value mappings: every combination of a mapping of
    lists, or the given list of mappings (one configuration each)."""
    if isinstance(grid_in, dict):
        grid: dict[str, list[Any]] = {}
        for key, values in grid_in.items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{where}: grid.{key}: expected a non-empty list of values, got {values!r}")
            canon = _canonical_key(str(key))
            if canon in grid:
                raise SweepError(f"{where}: grid: {key} given twice")
            grid[canon] = values
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    if not isinstance(grid_in, list) or not grid_in:
        raise SweepError(
            f"{where}: grid: must map config keys to lists of values, or list configurations (mappings)"
        )
    combos = []
    for i, item in enumerate(grid_in):
        if not isinstance(item, dict) or not item:
            raise SweepError(f"{where}: grid[{i}]: expected a mapping of config keys to values, got {item!r}")
        combo: dict[str, Any] = {}
        for key, value in item.items():
            canon = _canonical_key(str(key))
            if canon in combo:
                raise SweepError(f"{where}: grid[{i}]: {key} given twice")
            if isinstance(value, list):
                raise SweepError(f"{where}: grid[{i}].{key}: one value per listed configuration, got a list")
            combo[canon] = value
        if combo in combos:
            raise SweepError(f"{where}: grid[{i}]: the same configuration is listed twice")
        combos.append(combo)
    return combos


def _expand(
    combos: list[dict[str, Any]], keys: list[str], nested: dict[str, Any], seeds: list[int] | None
) -> list[SweepRun]:
    """One run per configuration, times the seeds (seed-major). A listed configuration that leaves out
    one of the keys others set keeps base:'s value for it (its name leaves the key out)."""
    seen: dict[str, int] = {}
    configs: list[SweepRun] = []
    for values in combos:
        overrides = nested
        for k, v in values.items():
            layer: dict[str, Any] = {}
            _set_dotted(layer, k, v, f"grid.{k}")
            overrides = merge(overrides, layer)
        overrides = _absolute_data_paths(overrides)
        name = run_name(values, [k for k in keys if k in values]) if values else "base"
        if name in seen:  # distinct values that print alike (1 and "1"): keep folders distinct
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        configs.append(SweepRun(name, values, overrides, config=name))
    if seeds is None:
        return configs
    return [
        SweepRun(with_seed(c.name, s), c.values, merge(c.overrides, {"train": {"seed": s}}), c.name, s)
        for s in seeds
        for c in configs
    ]


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    return parse_sweep(load_yaml(path), path)


def validate(sweep: Sweep) -> None:
    """Build every run's config; the first problem is an error naming the run and the key. With a
    GFLOP budget, each configuration's training step is counted once and its runs get the step count
    that fits (``train.max_steps``) and enough epochs to reach it."""
    gflops = (sweep.budget or {}).get("gflops")
    for run in sweep.runs:
        # Under a GFLOP budget the step count comes later; a placeholder lets a recipe that schedules by
        # budget share validate meanwhile.
        overrides = merge(run.overrides, {"train": {"max_steps": 1}}) if gflops else run.overrides
        try:
            run.cfg = build_cyclegan_config(files=sweep.config_files, overrides=overrides)
        except ConfigError as e:
            raise SweepError(f"sweep run {run.name}: {e}") from None
        root = run.cfg.data.root
        if root and not Path(root).is_dir():
            raise SweepError(f"sweep run {run.name}: data root not found: {root}")
        if not root and not (run.cfg.data.a and run.cfg.data.b):
            raise SweepError(f"sweep run {run.name}: no data; set base: data: DIR (or data.a and data.b)")
        if gflops:
            _apply_gflops(run, gflops, sweep.config_files)


def _apply_gflops(run: SweepRun, budget: float, files: list[str]) -> None:
    assert run.cfg is not None
    run.step_gflops = compute.train_step_gflops(run.cfg)
    try:
        steps = compute.steps_for_gflops(budget, run.step_gflops)
    except ValueError as e:
        raise SweepError(f"sweep run {run.name}: budget.gflops: {e}") from None
    epochs = -(-steps // compute.steps_per_epoch(run.cfg))
    run.overrides = merge(run.overrides, {"train": {"max_steps": steps, "epochs": epochs}})
    try:
        run.cfg = build_cyclegan_config(files=files, overrides=run.overrides)
    except ConfigError as e:
        raise SweepError(f"sweep run {run.name}: {e}") from None
