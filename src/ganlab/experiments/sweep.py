"""Running a sweep: train, resume or skip each run in turn, restartably, then compare them.

The sweep file (base:, grid:, seeds:, budget:) is parsed and checked by :mod:`.sweep_spec`. The sweep
folder is the state: DIR/<run name>/ is an ordinary run directory. Restarting the same command skips runs
whose budget is spent, resumes runs that have a checkpoint but are not done, and starts the rest;
DIR/sweep.json records the grid, the seeds, the budget and each run's status for people and tools. Runs
go one at a time, so runs under a minute budget all get the same machine to themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganlab.core.rundir import RunDir, run_meta
from ganlab.cyclegan.config import CycleGANConfig
from ganlab.cyclegan.trainer import train
from ganlab.experiments.compare import compare_runs, default_images, parse_sort
from ganlab.experiments.sweep_spec import (
    BUDGET_EPOCHS,
    Sweep,
    SweepError,
    SweepRun,
    load_sweep,
    parse_sweep,
    run_name,
    sanitize,
    validate,
)

__all__ = [
    "Sweep",
    "SweepError",
    "SweepRun",
    "SweepResult",
    "load_sweep",
    "parse_sweep",
    "run_name",
    "sanitize",
    "validate",
    "run_state",
    "run_sweep",
    "compare_sweep",
]

DEFAULT_SORT = "cycle_psnr"
COMPARE_IMAGES = 4


@dataclass
class SweepResult:
    out: Path
    runs: list[dict[str, Any]]  # manifest entries
    interrupted: bool = False
    compare_rows: list[dict[str, Any]] | None = None


def run_state(run_dir: Path, cfg: CycleGANConfig) -> tuple[str, dict[str, Any] | None]:
    """("new" | "unfinished" | "finished", latest checkpoint meta). Finished: every epoch done, or the
    run's minute budget spent (the trainer persists training time across resumes), or its step budget."""
    if not RunDir(run_dir).has_checkpoint():
        return "new", None
    meta = run_meta(run_dir, "latest", "cyclegan")
    t = cfg.train
    if meta["epoch"] >= t.total_epochs:
        return "finished", meta
    if t.minutes is not None and float(meta.get("train_seconds", 0.0)) >= t.minutes * 60:
        return "finished", meta
    if t.max_steps is not None and int(meta.get("global_step", 0)) >= t.max_steps:
        return "finished", meta
    return "unfinished", meta


class Manifest:
    """DIR/sweep.json: the sweep's grid, seeds and budget and each run's status, rewritten atomically on
    every change."""

    def __init__(self, out: Path, sweep: Sweep) -> None:
        self.path = out / "sweep.json"
        self.data: dict[str, Any] = {
            "sweep_file": str(sweep.path) if sweep.path else None,
            "base": sweep.base,
            "grid": sweep.grid,
            "seeds": sweep.seeds,
            "budget": sweep.budget,
            "runs": [
                {
                    "name": r.name,
                    "dir": str(out / r.name),
                    "config": r.config,
                    "seed": r.seed,
                    "values": r.values,
                    "status": "pending",
                }
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
            keep = ("values", "dir", "name", "config", "seed")
            entry.update({k: v for k, v in prev.items() if k not in keep})

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
    """What a run of the sweep would do, run by run, and the total budget (``--dry-run``)."""
    n = len(sweep.runs)
    shape = f"{sweep.n_configs} configuration(s) x {len(sweep.seeds)} seed(s)" if sweep.seeds else ""
    log(f"sweep of {n} run(s){f' ({shape})' if shape else ''} into {out} (dry run: nothing is trained)")
    for i, run in enumerate(sweep.runs, 1):
        assert run.cfg is not None
        state, _ = run_state(out / run.name, run.cfg)
        action = {"new": "train", "unfinished": "resume", "finished": "skip (finished)"}[state]
        log(f"run {i}/{n} {run.name}: {action}; {_budget_text(run)}")
    log(total_budget(sweep))


def _budget_text(run: SweepRun) -> str:
    assert run.cfg is not None
    t = run.cfg.train
    if t.max_steps is not None:
        gf = f" = {t.max_steps * run.step_gflops:,.0f} GFLOPs" if run.step_gflops else ""
        return f"{t.max_steps:,} steps{gf} ({run.step_gflops or 0:.4g} GFLOPs/step), {t.total_epochs} epochs"
    if t.minutes is not None:
        return f"{t.minutes:g} min" + (
            f" or {t.total_epochs} epochs" if t.total_epochs < BUDGET_EPOCHS else ""
        )
    return f"{t.total_epochs} epochs"


def total_budget(sweep: Sweep) -> str:
    """One line: the runs and what they spend in all (one at a time)."""
    n = len(sweep.runs)
    b = sweep.budget or {}
    if "minutes" in b:
        total = n * b["minutes"]
        return (
            f"total budget: {n} runs x {b['minutes']:g} min = {total:g} min ({total / 60:.1f} h) of training, "
            "one run at a time, plus start-up and evaluation"
        )
    if "gflops" in b:
        return f"total budget: {n} runs x {b['gflops']:g} GFLOPs = {n * b['gflops']:g} GFLOPs of training"
    cfgs = [r.cfg for r in sweep.runs if r.cfg is not None]
    minutes = [c.train.minutes for c in cfgs]
    epochs = sum(c.train.total_epochs for c in cfgs)
    if minutes and all(m is not None for m in minutes):
        total = sum(m for m in minutes if m is not None)
        return f"total budget: {n} runs, {total:g} min ({total / 60:.1f} h) of training at most"
    return f"total budget: {n} runs, {epochs} epochs in all (no time budget: the total time is open)"


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
    t = run.cfg.train
    budget: dict[str, Any] = {"epochs": t.total_epochs, "minutes": t.minutes}
    if t.max_steps is not None:  # absent otherwise, so manifests written before step budgets still match
        budget["max_steps"] = t.max_steps
    return budget


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
