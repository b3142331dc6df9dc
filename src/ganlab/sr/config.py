"""The super-resolution config tree (defaults < preset < YAML < ``--set``), built with
:func:`ganlab.config.from_dict` so unknown keys and wrong types are errors naming the dotted key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ganlab.core.config import ConfigError, Option, from_dict, load_yaml, merge, to_dict, validate_reliability
from ganlab.core.loop import COMMON_OPTIONS
from ganlab.models.registry import preset_config
from ganlab.models.sr import SRDiscriminatorConfig, SRResNetConfig


@dataclass
class SRDataConfig:
    """HR images, crops and the held-out images scored after each epoch."""

    root: str | None = None  # folder of HR images; None: the built-in offline photos (train split)
    lr_root: str | None = None  # optional folder of paired LR images, matched by file name
    size: int = 96  # HR crop side; a multiple of the scale (the LR crop is size / scale)
    flip: bool = True
    rot90: bool = True
    detail_candidates: int = 1  # > 1: keep the crop with the largest bicubic error of this many
    split_seed: int = 0  # seed of the built-in photos' train/test split
    photo_max_side: int | None = 1024  # long-side bound of the built-in photos (antialiased downscale)
    eval_root: str | None = None  # per-epoch eval images; None: the built-in held-out test photos
    eval_images: int = 8  # images scored after each epoch (0: off)
    eval_size: int = 256  # their HR centre crop (bounded so the per-epoch eval costs seconds)

    def validate(self) -> None:
        if self.size < 8:
            raise ConfigError(f"size: HR crop must be >= 8, got {self.size}")
        if self.eval_images < 0 or self.eval_size < 16:
            raise ConfigError("eval_images must be >= 0 and eval_size >= 16")
        if self.detail_candidates < 1:
            raise ConfigError("detail_candidates: must be >= 1")
        if self.photo_max_side is not None and self.photo_max_side < 16:
            raise ConfigError("photo_max_side: must be >= 16 (null: full size)")


@dataclass
class SRTrainConfig:
    """The recipe. ``stage: pixel`` trains SRResNet on a pixel loss; ``stage: gan`` is SRGAN."""

    stage: Literal["pixel", "gan"] = "pixel"
    epochs: int | None = 20  # None: until the --minutes budget runs out
    minutes: float | None = None  # wall-clock budget: stop cleanly with a checkpoint
    steps_per_epoch: int = 100  # an "epoch" is a fixed number of steps (small photo sets)
    batch_size: int = 16  # per process: with several (torchrun), the global batch is this x processes
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_min_ratio: float = 0.01  # cosine floor as a fraction of lr
    pixel_loss: Literal["l1", "mse"] = "mse"
    pixel_weight: float = 1.0  # the paper's SRGAN-VGG54 uses 0 here (VGG content loss only)
    adv_weight: float = 1e-3
    adv_kind: Literal["vanilla", "relativistic"] = "vanilla"
    perceptual_weight: float = 1.0  # used only with vgg_weights
    vgg_weights: str | None = None  # local torchvision-layout vgg19 state_dict (.pth or .safetensors)
    vgg_rescale: float = 1.0 / 12.75  # features are multiplied by this before the MSE (paper, sec. 3.2)
    vgg_after_relu: bool = True  # phi_5,4 after activation, as in the paper
    grad_clip: float | None = None  # clip generator gradient norm (None: off)
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = (
        "auto"  # auto: bf16 where the hardware has it, fp16 on other GPUs
    )
    threads: int | None = None  # CPU threads for PyTorch (None: its default, one per core)
    log_every: int = 10  # steps between metrics.jsonl step records
    # newest checkpoints kept (0 keeps all; at least 2, the previous one is the fallback when the latest
    # is damaged)
    keep_checkpoints: int = 3
    keep_every: int = 0  # also keep every N-th epoch's checkpoint
    # Mid-epoch checkpoints (epoch ends always save one), so a crash loses at most this much work:
    checkpoint_every_steps: int | None = None  # every N global steps (null: off)
    checkpoint_every_minutes: float | None = 10.0  # and after this many minutes without one (null: off)
    max_bad_steps: int = 3  # NaN/Inf-loss steps in a row (each skipped, not applied) before the run stops
    tensorboard: bool = False  # also log epoch scalars to RUN_DIR/tb (needs the tensorboard extra)
    # Several processes (torchrun): batch norm over the global batch (SyncBatchNorm) instead of each
    # process's share; the norm then matches one process with the whole batch.
    sync_bn: bool = False
    # torch.compile (inductor) the networks the step runs, around any DDP wrapper. The first steps pay the
    # compilation (35-55 s for the CycleGAN demo's networks on a 2-core CPU); then 5% faster on a Zen 5 EPYC,
    # no faster on a Zen 4 one, so it is off by default; checkpoints hold the plain modules either way
    # (docs/performance.md).
    compile: bool = False

    def validate(self) -> None:
        if self.epochs is None and self.minutes is None:
            raise ConfigError("epochs: set epochs, minutes, or both (training stops at the first)")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError("epochs: must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError("minutes: must be > 0")
        if self.steps_per_epoch < 1 or self.batch_size < 1 or self.log_every < 1:
            raise ConfigError("steps_per_epoch, batch_size and log_every must be >= 1")
        if self.lr <= 0:
            raise ConfigError("lr: must be > 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads: must be >= 1")
        for name in ("pixel_weight", "adv_weight", "perceptual_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas: must lie in [0, 1), got {list(self.betas)}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ConfigError(f"lr_min_ratio: must lie in [0, 1], got {self.lr_min_ratio}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError("grad_clip: must be > 0 (null: off)")
        if self.vgg_rescale <= 0:
            raise ConfigError("vgg_rescale: must be > 0")
        validate_reliability(self)


@dataclass
class SRConfig:
    """The whole super-resolution experiment."""

    preset: str = "srresnet-small"
    model: SRResNetConfig = field(default_factory=SRResNetConfig)
    disc: SRDiscriminatorConfig = field(default_factory=SRDiscriminatorConfig)
    data: SRDataConfig = field(default_factory=SRDataConfig)
    train: SRTrainConfig = field(default_factory=SRTrainConfig)

    def validate(self) -> None:
        if self.data.size % self.model.scale:
            raise ConfigError(
                f"data.size: the HR crop ({self.data.size}) must be a multiple of model.scale ({self.model.scale})"
            )


# Pixel-stage recipes tuned per preset (docs/results.md has the runs they were chosen by). They sit
# between the dataclass defaults and the user's files/flags.
PRESET_RECIPES: dict[str, dict[str, Any]] = {
    "srresnet": {},
    "srresnet-small": {
        "data": {"detail_candidates": 4},
        "train": {"batch_size": 8, "lr": 1e-3, "lr_schedule": "cosine", "pixel_loss": "l1"},
    },
}


def build_sr_config(
    preset: str | None = None,
    files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> SRConfig:
    """Resolve defaults < preset (architecture + recipe) < base (a checkpoint's config) < files < overrides."""
    layers: list[dict[str, Any]] = [load_yaml(f) for f in files or []]
    if overrides:
        layers.append(overrides)
    user: dict[str, Any] = {}
    for layer in layers:
        user = merge(user, layer)
    if base is not None:
        return from_dict(SRConfig, merge(base, user))
    name = preset or user.get("preset") or SRConfig.preset
    merged: dict[str, Any] = {"preset": name, "model": to_dict(preset_config(name, "sr"))}
    if user.get("train", {}).get("stage", "pixel") == "pixel":
        # The recipes are for the pixel stage; GAN fine-tuning keeps the paper's defaults (Adam 1e-4).
        merged = merge(merged, PRESET_RECIPES.get(name, {}))
    merged = merge(merged, {k: v for k, v in user.items() if k != "preset"})
    return from_dict(SRConfig, merged)


# The flags of `ganlab sr train`, each setting one config key.
OPTIONS: tuple[Option, ...] = (
    Option("data", "data.root", "folder of HR images (default: built-in offline photos, train split)"),
    Option("data_lr", "data.lr_root", "folder of paired LR images, matched by file name"),
    Option("size", "data.size", "HR crop side, a multiple of the scale", int),
    Option("scale", "model.scale", "upscaling factor", int, (2, 3, 4, 8)),
    Option("stage", "train.stage", "pixel: SRResNet; gan: SRGAN fine-tuning", str, ("pixel", "gan")),
    Option("epochs", "train.epochs", "epochs of train.steps_per_epoch steps", int),
    Option("vgg_weights", "train.vgg_weights", "local torchvision-layout vgg19 weights: perceptual loss"),
) + COMMON_OPTIONS
