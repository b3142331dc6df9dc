"""`ganlab demo`: the documented experiment on built-in data, sized for a CPU and a time budget.

Builds the offline photo -> cartoon dataset if missing, loads the CPU recipe (configs/demo/cyclegan.yaml),
measures the training step on this machine and sets the epoch count so the documented loss-weight phases
(middle, last 4 epochs) fall inside the budget (unless train.epochs is given), trains the model2 layout,
evaluates against the ground truth and baselines, and writes a self-contained report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import torch

from ganlab.core.bench import median, time_calls
from ganlab.core.config import load_yaml, merge, to_dict
from ganlab.core.device import resolve_precision, select_device
from ganlab.core.rundir import RunDir
from ganlab.cyclegan.bench import make_step
from ganlab.cyclegan.config import CycleGANConfig, build_cyclegan_config
from ganlab.cyclegan.demo.data import ensure_demo_dataset
from ganlab.cyclegan.demo.report import write_demo_report
from ganlab.cyclegan.evaluate import evaluate_run
from ganlab.cyclegan.step import fast_settings
from ganlab.cyclegan.trainer import train

# The CPU recipe, a config file like any other (with comments on each choice); it layers between the preset
# and the user's --config files and --set overrides.
DEMO_RECIPE_FILE = "cyclegan.yaml"


def demo_recipe(name: str = DEMO_RECIPE_FILE) -> dict[str, Any]:
    """A shipped demo recipe (``ganlab/configs/demo/NAME``) as plain data; found in a wheel install too."""
    with as_file(files("ganlab") / "configs" / "demo" / name) as path:
        return load_yaml(path)


def demo_config(data: Path, minutes: float, overrides: dict[str, Any] | None = None) -> CycleGANConfig:
    """defaults < preset < the demo recipe < data root and budget < ``overrides`` (--config files, --set)."""
    layers = merge(demo_recipe(), {"data": {"root": str(data)}, "train": {"minutes": minutes}})
    return build_cyclegan_config(overrides=merge(layers, overrides or {}))


def measure_step_seconds(cfg: CycleGANConfig, device: torch.device, steps: int = 3) -> float:
    """Median seconds per training step of this config on this machine, as the trainer runs it (random
    data, throwaway models; one warm-up step untimed)."""
    fast = fast_settings(cfg, device)
    precision = resolve_precision(cfg.train.precision, device)
    step = make_step(cfg, device, "train", precision, fast["channels_last"], fast["batch_g"])
    step()
    return median(time_calls({"step": step}, steps, device)["step"])


def plan_epochs(step_seconds: float, minutes: float, steps_per_epoch: int) -> tuple[int, int]:
    """(constant epochs, decay epochs) for ``minutes`` of steps: half constant, half linear decay
    (reference). The demo's schedule follows the budget (``train.schedule_by: budget``), so these set
    where the phases fall in the run, not when it ends: a slower machine runs fewer steps of the same
    schedule."""
    epochs = max(2, math.floor(minutes * 60 / step_seconds / steps_per_epoch))
    return math.ceil(epochs / 2), epochs // 2


def _plan_training(
    cfg: CycleGANConfig, overrides: dict[str, Any], minutes: float, t_start: float, log: Callable[[str], None]
) -> tuple[CycleGANConfig, int, int, float]:
    """(cfg, constant epochs, decay epochs, minutes left) for a ``minutes`` budget started at ``t_start``.

    ``train.epochs`` in ``overrides`` fixes the length (with ``train.epochs_decay``, default 0) and skips
    the measuring. Otherwise the step is timed on this machine (at the precision ``auto`` picks for it) and
    the epochs are planned to fit what is left of the budget. Either way the budget caps training.
    """
    device = select_device(cfg.train.device)
    steps_per_epoch = cfg.train.max_steps_per_epoch or 100
    if "epochs" in overrides.get("train", {}):
        epochs, decay = cfg.train.epochs, cfg.train.epochs_decay
        log(
            f"demo: {epochs} + {decay} epochs of {steps_per_epoch} steps as set, on {device} in "
            f"{resolve_precision(cfg.train.precision, device)}; the {minutes:g}-minute budget is a cap"
        )
        return cfg, epochs, decay, minutes - (time.monotonic() - t_start) / 60
    step_s = measure_step_seconds(cfg, device)
    # The time spent so far (data build, measuring) counts against the budget too.
    left = minutes - (time.monotonic() - t_start) / 60
    epochs, decay = plan_epochs(step_s, left, steps_per_epoch)
    log(
        f"demo: {step_s:.2f} s/step on {device}; {epochs} + {decay} epochs of {steps_per_epoch} steps "
        f"fit the {minutes:g}-minute budget"
    )
    return cfg, epochs, decay, left


def run_demo(
    data: str | Path = "data/demo",
    out: str | Path = "runs/demo",
    minutes: float = 10.0,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    data_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole demo; returns the evaluation dict (also in RUN_DIR/eval.json) with ``report`` added.

    ``overrides`` layer over the demo recipe (as --config files and --set do); with ``train.epochs`` among
    them the run trains exactly that many epochs (plus ``train.epochs_decay``) instead of planning them for
    the budget, which still caps it. ``data_kwargs`` go to the demo-data builder (e.g. smaller tile counts).
    """
    t_start = time.monotonic()
    data, out = Path(data), Path(out)
    ensure_demo_dataset(data, log=log, **(data_kwargs or {}))
    cfg = demo_config(data, minutes, overrides)
    cfg, epochs, decay, left = _plan_training(cfg, overrides or {}, minutes, t_start, log)
    if RunDir(out).has_checkpoint():
        # An earlier demo in this folder: finish it if it was interrupted (same budget), else re-evaluate.
        log(
            f"demo: {out} already holds a demo run; continuing it within its budget "
            "(use --out or delete the folder to train a new one)"
        )
        result = train(resume=out, log=log, progress=progress)
    else:
        overrides = merge(
            to_dict(cfg), {"train": {"epochs": epochs, "epochs_decay": decay, "minutes": minutes}}
        )
        overrides.pop("preset")
        # The budget covers the whole demo: the time spent so far (data, measuring) is subtracted.
        overrides["train"]["minutes"] = max(left, 0.1)
        result = train(preset=cfg.preset, overrides=overrides, out=out, log=log, progress=progress)
    res = evaluate_run(result.run_dir, progress=progress)
    report = write_demo_report(result.run_dir, res)
    res["report"] = str(report)
    log(f"demo: report written to {report}")
    return res
