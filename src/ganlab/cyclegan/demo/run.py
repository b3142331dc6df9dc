"""`ganlab demo`: the documented experiment on built-in data, sized for a CPU and a time budget.

Builds the offline photo -> cartoon dataset if missing, loads the CPU recipe (configs/demo/cyclegan.yaml),
measures the training step on this machine and sets the epoch count so the documented loss-weight phases
(middle, last 4 epochs) fall inside the budget (unless train.epochs is given), trains the model2 layout,
evaluates against the ground truth and baselines, and writes a self-contained report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import torch

from ganlab.core.bench import time_calls
from ganlab.core.config import load_yaml, merge, to_dict
from ganlab.core.device import resolve_precision, select_device, set_threads, use_channels_last
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
# Fewest steps of the recipe's batch worth keeping it for. In fixed-step probes (docs/cpu-recipe.md) 400
# steps of batch 4 gained 0.30 dB over the identity and 200 steps 0.15 dB, while 400 steps of batch 2 (a
# third more time than 200 of batch 4) gained 0.23 dB: below 400 steps, more and smaller updates learn
# more. A machine too slow for 400 steps in its budget gets a smaller batch.
MIN_STEPS = 400
# Most steps the recipe is planned for. Two 10-minute runs on a fast machine (2,120 steps of batch 4) were
# best on the per-epoch tiles after 800-840 steps and then drifted in colour (a* +5, b* -5) to 0.8 dB below
# the identity, while runs planned for 400 and 800 steps gained 0.26-0.30 dB. With the colour-cast term
# the colours held, but a 1,600-step run still peaked near step 850 and ended 0.15 dB below the identity
# (docs/cpu-recipe.md). A faster machine finishes the schedule early instead.
MAX_STEPS = 800
PLAN_FILE = "demo_plan.json"


def demo_recipe(name: str = DEMO_RECIPE_FILE) -> dict[str, Any]:
    """A shipped demo recipe (``ganlab/configs/demo/NAME``) as plain data; found in a wheel install too."""
    with as_file(files("ganlab") / "configs" / "demo" / name) as path:
        return load_yaml(path)


def demo_config(data: Path, minutes: float, overrides: dict[str, Any] | None = None) -> CycleGANConfig:
    """defaults < preset < the demo recipe < data root and budget < ``overrides`` (--config files, --set)."""
    layers = merge(demo_recipe(), {"data": {"root": str(data)}, "train": {"minutes": minutes}})
    return build_cyclegan_config(overrides=merge(layers, overrides or {}))


def measure_step_seconds(cfg: CycleGANConfig, device: torch.device, steps: int = 5) -> float:
    """Seconds per training step of this config on this machine, as the trainer runs it (random data,
    throwaway models; one warm-up step untimed): the fastest of ``steps``. Other work on the machine only
    slows a step, and the two errors cost differently: a plan for too many steps still ends on time (the
    demo's schedule follows the budget), one for too few ends early and leaves minutes unused
    (docs/results.md, sixth session)."""
    fast = fast_settings(cfg, device)
    precision = resolve_precision(cfg.train.precision, device)
    step = make_step(cfg, device, "train", precision, fast["channels_last"], fast["batch_g"])
    step()
    return min(time_calls({"step": step}, steps, device)["step"])


def plan_epochs(
    step_seconds: float, minutes: float, steps_per_epoch: int, max_steps: int | None = None
) -> tuple[int, int]:
    """(constant epochs, decay epochs) for ``minutes`` of steps, at most ``max_steps`` of them: half
    constant, half linear decay (reference). The demo's schedule follows the budget (``train.schedule_by:
    budget``), so these set where the phases fall in the run, not when it ends: a slower machine runs fewer
    steps of the same schedule."""
    epochs = math.floor(minutes * 60 / step_seconds / steps_per_epoch)
    if max_steps is not None:
        epochs = min(epochs, max_steps // steps_per_epoch)
    epochs = max(2, epochs)
    return math.ceil(epochs / 2), epochs // 2


def _plan_training(
    cfg: CycleGANConfig, overrides: dict[str, Any], minutes: float, t_start: float, log: Callable[[str], None]
) -> tuple[CycleGANConfig, int, int, float, dict[str, Any]]:
    """(cfg, constant epochs, decay epochs, minutes left, plan) for a ``minutes`` budget started at
    ``t_start``; ``plan`` says what was measured and chosen, for the report.

    ``train.epochs`` in ``overrides`` fixes the length (with ``train.epochs_decay``, default 0) and skips
    the measuring. Otherwise the step is timed on this machine (at the precision ``auto`` picks for it) and
    the epochs are planned to fit what is left of the budget, at most ``MAX_STEPS`` steps. When that gives
    fewer than ``MIN_STEPS`` updates, the batch is halved (and the step timed again) until it does or the
    batch is 1, unless ``train.batch_size`` is in ``overrides``: on a slow machine more, smaller updates
    learn more than a few large ones. Either way the budget caps training.
    """
    device = select_device(cfg.train.device)
    # The trainer's threads, so that the step is timed as it will run (timed with PyTorch's default, a
    # one-thread run beside another job planned a step three times too slow).
    set_threads(cfg.train.threads)
    steps_per_epoch = cfg.train.max_steps_per_epoch or 100
    precision = resolve_precision(cfg.train.precision, device)
    if "epochs" in overrides.get("train", {}):
        epochs, decay = cfg.train.epochs, cfg.train.epochs_decay
        log(
            f"demo: {epochs} + {decay} epochs of {steps_per_epoch} steps as set, on {device} in "
            f"{precision}; the {minutes:g}-minute budget is a cap"
        )
        plan = {"note": f"{epochs} + {decay} epochs as set (no planning)."}
        return cfg, epochs, decay, minutes - (time.monotonic() - t_start) / 60, plan
    batch_fixed = "batch_size" in overrides.get("train", {})
    layout = _choose_layout(cfg, device)
    tried: list[dict[str, Any]] = []
    while True:
        step_s = measure_step_seconds(cfg, device)
        # The time spent so far (data build, measuring) counts against the budget too.
        left = minutes - (time.monotonic() - t_start) / 60
        epochs, decay = plan_epochs(step_s, left, steps_per_epoch, MAX_STEPS)
        steps = (epochs + decay) * steps_per_epoch
        tried.append({"batch_size": cfg.train.batch_size, "step_seconds": round(step_s, 4), "steps": steps})
        if steps >= MIN_STEPS or batch_fixed or cfg.train.batch_size == 1:
            break
        cfg.train.batch_size = max(1, cfg.train.batch_size // 2)
    note = (
        f"{step_s:.2f} s per step of batch {cfg.train.batch_size} on {device} in {precision}: "
        f"{epochs} + {decay} epochs of {steps_per_epoch} steps ({steps} steps) fit the {minutes:g}-minute budget."
    )
    if steps >= MAX_STEPS:
        note += (
            f" The recipe is planned for at most {MAX_STEPS} steps (longer runs lost their gain), so the "
            f"run takes about {steps * step_s / 60:.1f} of its minutes."
        )
    if len(tried) > 1:
        first = tried[0]
        note += (
            f" At the recipe's batch {first['batch_size']} ({first['step_seconds']:.2f} s per step) only "
            f"{first['steps']} steps would fit, fewer than the {MIN_STEPS} the recipe needs to learn, so the "
            f"batch was lowered to {cfg.train.batch_size}."
        )
    if steps < MIN_STEPS:
        note += (
            f" That is fewer than the {MIN_STEPS} steps the recipe needs to learn: give it more --minutes."
        )
    if layout:
        note += (
            f" Memory layout {cfg.train.memory_format}, the faster here (timed per step: NCHW "
            f"{layout['nchw']:.2f} s, channels_last {layout['channels_last']:.2f} s)."
        )
    log(f"demo: {note}")
    plan = {
        "note": note,
        "tried": tried,
        "min_steps": MIN_STEPS,
        "device": str(device),
        "precision": precision,
        "memory_format": cfg.train.memory_format,
        "layout_seconds": layout,
    }
    return cfg, epochs, decay, left, plan


def _choose_layout(cfg: CycleGANConfig, device: torch.device) -> dict[str, float]:
    """Where ``train.memory_format: auto`` has no rule that held for every network (a CPU without AVX-512:
    with PyTorch and oneDNN limited to AVX2, fp32, channels_last made the demo's step faster and resnet9's
    slower), time the step in both layouts and set the faster; returns the timings ({} when none ran)."""
    if cfg.train.memory_format != "auto" or device.type != "cpu" or use_channels_last("auto", device):
        return {}
    times = {}
    for fmt in ("nchw", "channels_last"):
        cfg.train.memory_format = fmt
        times[fmt] = round(measure_step_seconds(cfg, device), 4)
    cfg.train.memory_format = min(times, key=lambda k: times[k])
    return times


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
    cfg, epochs, decay, left, plan = _plan_training(cfg, overrides or {}, minutes, t_start, log)
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
        (result.run_dir / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")
    res = evaluate_run(result.run_dir, progress=progress)
    report = write_demo_report(result.run_dir, res)
    res["report"] = str(report)
    log(f"demo: report written to {report}")
    return res
