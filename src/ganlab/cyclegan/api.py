"""Library entry points for training: resolve the config (and resume state), then run the loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganlab.core.checkpoint import load_checkpoint
from ganlab.core.config import ConfigError, diff, to_dict
from ganlab.core.rundir import RunDir
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.trainer import CycleGANTrainer, TrainResult

ARCHITECTURE_SECTIONS = ("model", "disc")


def train(
    preset: str | None = None,
    config_files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a CycleGAN run and return where it stopped."""
    if resume is not None:
        ckpt = load_checkpoint(RunDir(Path(resume)).resolve_checkpoint("latest"))
        if ckpt.meta.get("task") != "cyclegan":
            raise ConfigError(f"{resume} is not a CycleGAN run (task {ckpt.meta.get('task')!r})")
        old = ckpt.meta["config"]
        if preset is not None and preset != old.get("preset"):
            raise ConfigError(
                f"--preset {preset} differs from the run's preset {old.get('preset')}; "
                "the architecture cannot change at resume"
            )
        cfg = build_cyclegan_config(files=config_files, overrides=overrides, base=old)
        changes = diff(old, to_dict(cfg))
        arch = [k for k in changes if k.split(".")[0] in ARCHITECTURE_SECTIONS]
        if arch:
            raise ConfigError(
                f"cannot change the architecture at resume ({arch[0]}: {changes[arch[0]][0]} -> "
                f"{changes[arch[0]][1]}); start a new run instead"
            )
        trainer = CycleGANTrainer(
            cfg, out or resume, resume=ckpt, config_changes=changes, log=log, progress=progress
        )
    else:
        cfg = build_cyclegan_config(preset=preset, files=config_files, overrides=overrides)
        out = Path(out) if out else Path("runs") / cfg.preset
        if (out / "checkpoints" / "latest.json").exists():
            raise ConfigError(
                f"{out} already holds a run; use --resume {out} to continue it or pick another --out"
            )
        trainer = CycleGANTrainer(cfg, out, log=log, progress=progress)
    return trainer.fit()
