"""`ganlab demo`: the documented experiment on built-in data, sized for a CPU and a time budget.

Builds the offline photo -> cartoon dataset if missing, measures the training step on this machine,
sets the epoch count so the documented loss-weight phases (middle, last 4 epochs) fall inside the
budget, trains the model2 layout, evaluates against the ground truth and baselines, and writes a
self-contained report.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganlab.core.augment import make_augment
from ganlab.core.config import merge, to_dict
from ganlab.core.rundir import autocast, select_device
from ganlab.cyclegan.config import CycleGANConfig, build_cyclegan_config
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.trainer import build_models, build_optimizers, train_step

# The CPU recipe (see the README's "demo" section for how it was chosen). Everything else is the
# documented recipe: Adam (0.5, 0.999), D lr x1.25, LSGAN, phased [identity, gan, cycle] weights.
DEMO_RECIPE: dict[str, Any] = {
    "preset": "model2",
    # Width 32 instead of 96 (about 9x fewer FLOPs); the global skip starts the generators at the identity,
    # so the first minutes go to learning the style instead of learning to reproduce the input.
    # Resize-convolution upsampling instead of PixelShuffle: in 5-minute runs the PixelShuffle generators
    # covered flat areas in a 2-px dot grid (checkerboard index 0.12 on the test translations) that cost
    # 0.7 dB of ground-truth PSNR; resize-conv stayed at 0.002 (README, "Finding the CPU recipe").
    # Reflect padding in the stride-2 down conv: zero padding there marks the top and left edges only
    # (a faint line along them in every translation).
    "model": {"hidden": 32, "global_skip": True, "upsample": "resize_conv", "down_padding": "reflect"},
    # A 34x34-patch discriminator: the style's cues (outlines, flat areas) are local, and it is cheaper.
    # Anti-aliased (blur before each stride-2 conv): with a low-pass cycle and a plain D the generators
    # fooled it with 2-px stripes (README, "Finding the CPU recipe").
    # Batch norm, not the reference instance norm: instance norm rescales every feature map per 64 px crop,
    # which removes what sets a cartoon crop apart as a whole (flat areas, stronger colour). An
    # anti-aliased D trained alone on photos vs cartoons then pushed test photos in a direction unrelated
    # to the true rendering (cosine -0.04 to 0.02); without a norm 0.06 to 0.16, with batch norm 0.09 to
    # 0.15. In 10-minute runs batch norm moved the generators furthest toward the truth (README, "Finding
    # the CPU recipe").
    "disc": {"hidden": 32, "n_layers": 2, "antialias": True, "norm": "batch"},
    # 64 px crops of the 128 px tiles at their native scale (no resize), so train and test see the style at
    # the same scale.
    "data": {"size": 64, "load_size": 128},
    "train": {
        "batch_size": 4,
        "lr": 2e-4,
        "ema_decay": 0.999,
        # Random RGB order per discriminator input (real and fake alike): with 15 photos per domain a
        # discriminator otherwise keys on those photos' palettes and the generators learn a colour cast
        # (delta b* -2.95 -> -0.20, 18.43 -> 18.82 dB in 10-minute runs; README, "Finding the CPU recipe").
        "augment": ["channels"],
        # Low-pass cycle: the style discards fine texture; an exact cycle made the generators keep it as
        # a faint code and shift colour instead (blue cast, delta b* -6 to -11 in 10-minute runs).
        "cycle_blur": 1.5,
        # The documented phases [identity, gan, cycle] as they are: with the discriminator above, identity
        # weights x5 (the previous demo default) held the generators at the input (alignment 0.015).
        "max_steps_per_epoch": 40,
        "log_every": 10,
        "eval_images": 16,
    },
}
# Share of the budget planned for training steps; the rest covers per-epoch evaluation, samples,
# checkpoints, and steps slower than the 3-step measurement. At 0.85 the budget cut default runs 11 and
# 80 steps short of their plans, in the middle of the last loss-weight phase with the lr not yet decayed
# (a cut run scored 18.70 dB; 4 epochs earlier it had been 0.13 dB above the identity on the 16 per-epoch
# test tiles). At 0.78 the default run planned 42 epochs and stopped after 41, with the lr at 1/11 of its
# start.
TRAIN_SHARE = 0.78


def demo_config(data: Path, minutes: float, overrides: dict[str, Any] | None = None) -> CycleGANConfig:
    layers = merge(DEMO_RECIPE, {"data": {"root": str(data)}, "train": {"minutes": minutes}})
    return build_cyclegan_config(overrides=merge(layers, overrides or {}))


def measure_step_seconds(cfg: CycleGANConfig, device: torch.device, steps: int = 3) -> float:
    """Seconds per training step of this config on this machine (random data, throwaway models)."""
    models = build_models(cfg).to(device)
    opts = build_optimizers(models, cfg.train)
    pools = {k: ImagePool(cfg.train.pool_size) for k in ("D_A", "D_B")}
    shape = (cfg.train.batch_size, 3, cfg.data.size, cfg.data.size)
    a, b = torch.rand(shape, device=device) * 2 - 1, torch.rand(shape, device=device) * 2 - 1

    def amp():
        return autocast(device, cfg.train.precision)

    w = cfg.train.schedule[0]
    aug = make_augment(cfg.train.augment)
    t0 = 0.0
    for i in range(steps + 1):  # step 0 is a warm-up (allocations, kernels) and is not timed
        if i == 1:
            t0 = time.perf_counter()
        train_step(models, opts, a, b, w, cfg.train.gan_loss, pools, amp, aug, cfg.train.cycle_blur)
    return (time.perf_counter() - t0) / steps


def _faster_precision(
    cfg: CycleGANConfig, device: torch.device, fp32_seconds: float, log: Callable[[str], None]
) -> tuple[CycleGANConfig, float]:
    """(cfg with train.precision "bf16" if a bf16 step is at least 10% faster, that step's seconds)."""
    bf16 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16"))
    try:
        bf16_seconds = measure_step_seconds(bf16, device)
    except RuntimeError as e:  # a device or build without bf16 kernels
        log(f"demo: bf16 unavailable here ({e}); training in fp32")
        return cfg, fp32_seconds
    if bf16_seconds < 0.9 * fp32_seconds:
        log(f"demo: bf16 {bf16_seconds:.2f} s/step against fp32 {fp32_seconds:.2f}: training in bf16")
        return bf16, bf16_seconds
    return cfg, fp32_seconds


def plan_epochs(step_seconds: float, minutes: float, steps_per_epoch: int) -> tuple[int, int]:
    """(constant epochs, decay epochs) that fit ``minutes``: half constant, half linear decay (reference)."""
    total_steps = TRAIN_SHARE * minutes * 60 / step_seconds
    epochs = max(2, math.floor(total_steps / steps_per_epoch))
    return math.ceil(epochs / 2), epochs // 2


def run_demo(
    data: str | Path = "data/demo",
    out: str | Path = "runs/demo",
    minutes: float = 10.0,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    data_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole demo (``data_kwargs`` go to the demo-data builder, e.g. smaller tile counts); returns the evaluation dict (also in RUN_DIR/eval.json) with ``report`` added."""
    from ganlab.cyclegan.api import train
    from ganlab.cyclegan.demo.data import ensure_demo_dataset
    from ganlab.cyclegan.demo.report import write_demo_report
    from ganlab.cyclegan.evaluate import evaluate_run

    t_start = time.monotonic()
    data, out = Path(data), Path(out)
    ensure_demo_dataset(data, log=log, **(data_kwargs or {}))
    cfg = demo_config(data, minutes, overrides)
    device = select_device(cfg.train.device)
    step_s = measure_step_seconds(cfg, device)
    if "precision" not in (overrides or {}).get("train", {}):
        # bf16 autocast buys more steps where the hardware has bf16 units (0.27 against 0.44 s/step in the
        # default demo here, AVX-512 BF16) and costs time where it is emulated; measure both, keep the faster.
        cfg, step_s = _faster_precision(cfg, device, step_s, log)
    steps_per_epoch = cfg.train.max_steps_per_epoch or 100
    # The time spent so far (data build, measuring) counts against the budget too.
    left = minutes - (time.monotonic() - t_start) / 60
    epochs, decay = plan_epochs(step_s, left, steps_per_epoch)
    log(
        f"demo: {step_s:.2f} s/step on {device}; {epochs} + {decay} epochs of {steps_per_epoch} steps "
        f"fit the {minutes:g}-minute budget"
    )
    if (out / "checkpoints" / "latest.json").exists():
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
