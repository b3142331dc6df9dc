"""Grid sweeps: train one CycleGAN per combination of config values, restartably, then compare them.

A sweep file has ``base:`` (what every run shares: shorthand train options such as ``preset``, ``data``,
``size``, ``batch_size``, ``epochs``, ``minutes``, plus any config key in dotted or nested form) and
``grid:`` (dotted config key -> list of values). Every run's full config is built and validated before
anything trains, so a typo in the last combination cannot waste the first hour.

The sweep folder is the state: DIR/<run name>/ is an ordinary run directory. Restarting the same command
skips runs whose budget is spent, resumes runs that have a checkpoint but are not done, and starts the
rest; DIR/sweep.json records the grid and each run's status for people and tools.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganlab.core.config import ConfigError, load_yaml, merge
from ganlab.core.rundir import RunDir, run_meta
from ganlab.cyclegan.config import OPTIONS, CycleGANConfig, build_cyclegan_config
from ganlab.cyclegan.trainer import train
from ganlab.experiments.compare import compare_runs, default_images, parse_sort

# Shorthands accepted in base: and grid:, mapped to their config keys: the `ganlab train` flag names.
SHORTHANDS = {o.name: o.key for o in OPTIONS}
SECTIONS = ("model", "disc", "data", "train")
DEFAULT_SORT = "cycle_psnr"
COMPARE_IMAGES = 4


class SweepError(ConfigError):
    """A sweep file problem (layout, unknown key, invalid value); the message names the key and run."""


@dataclass
class SweepRun:
    name: str
    values: dict[str, Any]  # dotted key -> this run's grid value
    overrides: dict[str, Any]  # nested config overrides: base + values
    cfg: CycleGANConfig | None = None


@dataclass
class Sweep:
    path: Path | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    config_files: list[str] = field(default_factory=list)
    runs: list[SweepRun] = field(default_factory=list)


@dataclass
class SweepResult:
    out: Path
    runs: list[dict[str, Any]]  # manifest entries
    interrupted: bool = False
    compare_rows: list[dict[str, Any]] | None = None


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


def parse_sweep(data: dict[str, Any], path: Path | None = None) -> Sweep:
    """Check the layout of a sweep mapping and expand the grid (configs are validated separately)."""
    where = str(path) if path else "sweep"
    unknown = [k for k in data if k not in ("base", "grid")]
    if unknown:
        raise SweepError(f"{where}: unknown top-level key {unknown[0]!r}; a sweep has base: and grid:")
    base = data.get("base") or {}
    grid_in = data.get("grid") or {}
    if not isinstance(base, dict):
        raise SweepError(f"{where}: base: must be a mapping of train options and config keys")
    if not isinstance(grid_in, dict):
        raise SweepError(f"{where}: grid: must map config keys to lists of values")
    grid: dict[str, list[Any]] = {}
    for key, values in grid_in.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: grid.{key}: expected a non-empty list of values, got {values!r}")
        canon = _canonical_key(str(key))
        if canon in grid:
            raise SweepError(f"{where}: grid: {key} given twice")
        grid[canon] = values
    nested, files = _base_overrides(base)
    sweep = Sweep(path, base, grid, files)
    keys = list(grid)
    seen: dict[str, int] = {}
    for combo in itertools.product(*grid.values()) if grid else [()]:
        values = dict(zip(keys, combo))
        overrides = nested
        for k, v in values.items():
            layer: dict[str, Any] = {}
            _set_dotted(layer, k, v, f"grid.{k}")
            overrides = merge(overrides, layer)
        overrides = _absolute_data_paths(overrides)
        name = run_name(values, keys) if keys else "base"
        if name in seen:  # distinct values that print alike (1 and "1"): keep folders distinct
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        sweep.runs.append(SweepRun(name, values, overrides))
    return sweep


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    return parse_sweep(load_yaml(path), path)


def validate(sweep: Sweep) -> None:
    """Build every run's config; the first problem is an error naming the run and the key."""
    for run in sweep.runs:
        try:
            run.cfg = build_cyclegan_config(files=sweep.config_files, overrides=run.overrides)
        except ConfigError as e:
            raise SweepError(f"sweep run {run.name}: {e}") from None
        root = run.cfg.data.root
        if root and not Path(root).is_dir():
            raise SweepError(f"sweep run {run.name}: data root not found: {root}")
        if not root and not (run.cfg.data.a and run.cfg.data.b):
            raise SweepError(f"sweep run {run.name}: no data; set base: data: DIR (or data.a and data.b)")


def run_state(run_dir: Path, cfg: CycleGANConfig) -> tuple[str, dict[str, Any] | None]:
    """("new" | "unfinished" | "finished", latest checkpoint meta). Finished: every epoch done, or the
    run's minute budget spent (the trainer persists training time across resumes)."""
    if not RunDir(run_dir).has_checkpoint():
        return "new", None
    meta = run_meta(run_dir, "latest", "cyclegan")
    t = cfg.train
    if meta["epoch"] >= t.total_epochs:
        return "finished", meta
    if t.minutes is not None and float(meta.get("train_seconds", 0.0)) >= t.minutes * 60:
        return "finished", meta
    return "unfinished", meta


class Manifest:
    """DIR/sweep.json: the sweep's grid and each run's status, rewritten atomically on every change."""

    def __init__(self, out: Path, sweep: Sweep) -> None:
        self.path = out / "sweep.json"
        self.data: dict[str, Any] = {
            "sweep_file": str(sweep.path) if sweep.path else None,
            "base": sweep.base,
            "grid": sweep.grid,
            "runs": [
                {"name": r.name, "dir": str(out / r.name), "values": r.values, "status": "pending"}
                for r in sweep.runs
            ],
        }
        # Keep what earlier invocations recorded (start times, step counts) for runs still in the grid.
        try:
            old = {e["name"]: e for e in json.loads(self.path.read_text()).get("runs", [])}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            old = {}
        for entry in self.data["runs"]:
            prev = old.get(entry["name"], {})
            entry.update({k: v for k, v in prev.items() if k not in ("values", "dir", "name")})

    def entry(self, name: str) -> dict[str, Any]:
        return next(e for e in self.data["runs"] if e["name"] == name)

    def update(self, name: str, **fields: Any) -> None:
        self.entry(name).update(fields)
        self.write()

    def write(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(".sweep.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.path)


def run_sweep(
    sweep: Sweep | str | Path,
    out: str | Path,
    sort: str | None = None,
    dry_run: bool = False,
    compare: bool = True,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> SweepResult:
    """Validate every run, then train (or resume, or skip) each in turn into ``out/<name>``, and end
    with a comparison of all runs in ``out/compare`` sorted by ``sort`` (default cycle_psnr, best first).
    A Ctrl-C stops the current run with a checkpoint and ends the sweep; rerun to continue."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if sort is not None:
        parse_sort(sort)  # a typo should fail now, not after hours of training
    validate(sweep)
    out = Path(out)
    if dry_run:
        _plan(sweep, out, log)
        return SweepResult(out, [])
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out, sweep)
    manifest.write()
    interrupted = False
    for i, run in enumerate(sweep.runs, 1):
        if not _run_one(sweep, run, f"{i}/{len(sweep.runs)}", out, manifest, log, progress):
            log(f"sweep interrupted during {run.name}; rerun the same command to continue")
            interrupted = True
            break
    rows = None
    if compare and not interrupted:
        rows = compare_sweep(sweep, out, sort or DEFAULT_SORT, log=log, progress=progress)
        manifest.data["compare"] = str(out / "compare")
        manifest.data["sort"] = sort or DEFAULT_SORT
        manifest.write()
    return SweepResult(out, manifest.data["runs"], interrupted, rows)


def _plan(sweep: Sweep, out: Path, log: Callable[[str], None]) -> None:
    """What a run of the sweep would do, run by run (``--dry-run``)."""
    n = len(sweep.runs)
    log(f"sweep of {n} run(s) into {out} (dry run: nothing is trained)")
    for i, run in enumerate(sweep.runs, 1):
        assert run.cfg is not None
        state, _ = run_state(out / run.name, run.cfg)
        action = {"new": "train", "unfinished": "resume", "finished": "skip (finished)"}[state]
        t = run.cfg.train
        budget = f"{t.total_epochs} epochs" + (f" or {t.minutes:g} min" if t.minutes else "")
        log(f"run {i}/{n} {run.name}: {action}; {budget}")


def _run_one(
    sweep: Sweep,
    run: SweepRun,
    position: str,
    out: Path,
    manifest: Manifest,
    log: Callable[[str], None],
    progress: bool,
) -> bool:
    """Train, resume or skip one run, recording its status; False when it was interrupted."""
    assert run.cfg is not None
    run_dir = out / run.name
    state, meta = run_state(run_dir, run.cfg)
    entry = manifest.entry(run.name)
    if state == "unfinished" and entry.get("status") == "finished" and entry.get("budget") == _budget(run):
        # The trainer itself ended this run on its budget (which can expire during the end-of-epoch
        # evaluation, after the checkpoint recorded its time): trust it while the budget is unchanged.
        state = "finished"
    if state == "finished":
        log(f"skip {run.name}: finished")
        manifest.update(run.name, status="finished", epoch=meta["epoch"] if meta else None)
        return True
    log(f"run {position} {run.name}")
    manifest.update(run.name, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    try:
        result = _train_one(sweep, run, run_dir, state, meta, log, progress)
    except KeyboardInterrupt:  # a second Ctrl-C: the trainer stopped without a new checkpoint
        manifest.update(run.name, status="interrupted")
        raise
    except Exception as e:
        manifest.update(run.name, status="failed", error=str(e))
        raise
    manifest.update(
        run.name,
        status="interrupted" if result.stopped == "interrupted" else "finished",
        budget=_budget(run),
        stopped=result.stopped,
        epoch=result.epoch,
        global_step=result.global_step,
        checkpoint=str(result.checkpoint) if result.checkpoint else None,
    )
    return result.stopped != "interrupted"


def _budget(run: SweepRun) -> dict[str, Any]:
    assert run.cfg is not None
    return {"epochs": run.cfg.train.total_epochs, "minutes": run.cfg.train.minutes}


def _train_one(
    sweep: Sweep,
    run: SweepRun,
    run_dir: Path,
    state: str,
    meta: dict[str, Any] | None,
    log: Callable[[str], None],
    progress: bool,
) -> Any:
    # The sweep file stays the source of truth at resume too: an edited budget applies to the run.
    kwargs = {
        "config_files": sweep.config_files,
        "overrides": run.overrides,
        "log": log,
        "progress": progress,
    }
    if state == "unfinished":
        assert meta is not None
        log(f"resuming {run.name} from epoch {meta['epoch']} step {meta['step_in_epoch']}")
        return train(resume=run_dir, **kwargs)
    stale = run_dir / "metrics.jsonl"
    if stale.is_file():
        # An attempt that died before its first checkpoint: its records describe lost weights.
        log(f"{run.name}: discarding metrics of an attempt that left no checkpoint")
        stale.unlink()
    return train(out=run_dir, **kwargs)


def compare_sweep(
    sweep: Sweep, out: Path, sort: str, log: Callable[[str], None] = print, progress: bool = True
) -> list[dict[str, Any]]:
    """Compare every run that has a checkpoint, on up to 4 test images of the (first) data root."""
    dirs = [out / r.name for r in sweep.runs if RunDir(out / r.name).has_checkpoint()]
    if not dirs:
        log("no run has a checkpoint; nothing to compare")
        return []
    root = next((r.cfg.data.root for r in sweep.runs if r.cfg is not None and r.cfg.data.root), None)
    images = default_images(root, COMPARE_IMAGES) or None
    title = f"ganlab sweep: {sweep.path.name if sweep.path else out.name}"
    return compare_runs(dirs, images, out / "compare", sort=sort, title=title, log=log, progress=progress)
