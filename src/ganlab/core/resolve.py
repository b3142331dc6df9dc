"""Where a training run starts: a new run directory, or the checkpoint of the run being resumed (with the
config changes the resume makes, and the keys that cannot change)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganlab.core import distributed as dist
from ganlab.core.checkpoint import Checkpoint
from ganlab.core.config import diff, to_dict
from ganlab.core.errors import ConfigError
from ganlab.core.rundir import RunDir, load_run_checkpoint


def resolve_run(
    task: str,
    build: Callable[..., Any],
    frozen: Callable[[str], str | None],
    preset: str | None,
    files: list[str | Path] | None,
    overrides: dict[str, Any] | None,
    out: str | Path | None,
    resume: str | Path | None,
    default_out: Callable[[Any], Path],
) -> tuple[Any, Path, Checkpoint | None, dict[str, list[Any]]]:
    """(config, run directory, checkpoint to resume or None, config changes at resume) for a new run or a
    resumed one. ``build(preset=, files=, overrides=, base=)`` is the task's config builder; a key for
    which ``frozen`` names what it is (e.g. "the architecture") cannot change at resume."""
    if resume is None:
        cfg = build(preset=preset, files=files, overrides=overrides)
        out = Path(out) if out else default_out(cfg)
        if not RunDir(out).has_checkpoint():
            return cfg, out, None, {}
        if not dist.restarted(out):
            raise ConfigError(
                f"{out} already holds a run; use --resume {out} to continue it or pick another --out"
            )
        resume = out  # torchrun restarted this job's processes: go on from the latest checkpoint
    ckpt = load_run_checkpoint(resume, "latest", task)
    old = ckpt.meta["config"]
    if preset is not None and preset != old.get("preset"):
        raise ConfigError(
            f"--preset {preset} differs from the run's preset {old.get('preset')}; "
            "the architecture cannot change at resume"
        )
    cfg = build(files=files, overrides=overrides, base=old)
    changes = diff(old, to_dict(cfg))
    for k, (a, b) in changes.items():
        what = frozen(k)
        if what:
            raise ConfigError(f"cannot change {what} at resume ({k}: {a} -> {b}); start a new run instead")
    return cfg, Path(out or resume), ckpt, changes
