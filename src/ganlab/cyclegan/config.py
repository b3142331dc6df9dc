"""The CycleGAN config tree: model, discriminator, data and training recipe, with the documented
loss-weight schedule as the default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ganlab.core.augment import make_augment
from ganlab.core.config import Option, from_dict, load_yaml, merge, to_dict, validate_reliability
from ganlab.core.errors import ConfigError
from ganlab.core.loop import COMMON_OPTIONS
from ganlab.models.discriminator import PatchGANConfig
from ganlab.models.generator import GeneratorConfig
from ganlab.models.registry import preset_config

PhaseStart = int | float


@dataclass
class Phase:
    """Loss weights in force from ``start`` on.

    ``start``: an int >= 1 is a 1-based epoch; an int <= 0 counts from the end (-4: the last 4 epochs);
    a float in (0, 1) is a fraction of training (0.5: the middle).
    """

    start: PhaseStart = 1
    identity: float = 0.5
    gan: float = 1.0
    cycle: float = 10.0

    def validate(self) -> None:
        if isinstance(self.start, float) and not 0.0 < self.start < 1.0:
            raise ConfigError(f"start: a fractional start must lie in (0, 1), got {self.start}")
        for name in ("identity", "gan", "cycle"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: loss weights must be >= 0")


def documented_schedule() -> list[Phase]:
    """The documented recipe: conservative first, then more pressure on the generators."""
    return [
        Phase(start=1, identity=0.5, gan=1.0, cycle=10.0),
        Phase(start=0.5, identity=0.3, gan=1.5, cycle=10.0),
        Phase(start=-4, identity=0.5, gan=1.5, cycle=12.0),
    ]


@dataclass
class DataConfig:
    """Where the two domains are and how crops are made."""

    root: str | None = None  # reference layout: trainA/, trainB/, optional testA/, testB/
    a: str | None = None  # or two folders
    b: str | None = None
    size: int = 256  # random crop size
    load_size: int | None = None  # resize (square) before cropping; default size * 286 / 256
    flip: bool = True
    cache: bool = True  # keep decoded, resized images in memory (small data sets, CPU)
    workers: int = 0
    max_images: int | None = None  # cap per domain (quick experiments)

    def validate(self) -> None:
        if self.size < 8:
            raise ConfigError(f"size: crop size must be >= 8, got {self.size}")
        if self.load_size is not None and self.load_size < self.size:
            raise ConfigError(f"load_size: must be >= size ({self.size}), got {self.load_size}")
        if self.workers < 0:
            raise ConfigError("workers: must be >= 0")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError("max_images: must be >= 1")

    @property
    def resolved_load_size(self) -> int:
        return self.load_size if self.load_size is not None else round(self.size * 286 / 256)


@dataclass
class TrainConfig:
    """The recipe: optimisation, losses, schedules, logging."""

    epochs: int = 100  # epochs at constant lr
    epochs_decay: int = 0  # then linear decay to 0 over this many epochs
    minutes: float | None = None  # wall-clock budget: stop cleanly with a checkpoint
    # epochs: loss-weight phases and lr decay follow the epoch. budget: they follow the share of the run
    # done (the larger of the epoch share and the share of `minutes` spent), so a slow machine still runs
    # the whole schedule inside its budget.
    schedule_by: Literal["epochs", "budget"] = "epochs"
    batch_size: int = 1  # per process: with several (torchrun), the global batch is this x processes
    lr: float = 2e-4
    gen_lr_coef: float = 1.0
    disc_lr_coef: float = 1.25  # discriminators 25% faster: they got stuck on artifacts otherwise
    beta1: float = 0.5
    beta2: float = 0.999
    gan_loss: Literal["lsgan", "vanilla", "hinge"] = "lsgan"
    schedule: list[Phase] = field(default_factory=documented_schedule)
    pool_size: int = 50
    # Differentiable augmentation of every discriminator input, real and fake (ganlab.core.augment):
    # "color", "translation", "channels", "rot90", "dequantize", each as NAME or NAME:P (applied to each
    # image with probability P), in order. Off in the documented recipe.
    augment: list[str] = field(default_factory=list)
    # Gaussian sigma (px) applied to both images of the cycle term: the cycle then keeps structure but
    # lets a generator drop fine texture instead of hiding it (ganlab.cyclegan.losses.recon_loss). 0: exact.
    cycle_blur: float = 0.0
    # Cycle and identity terms as Huber (smooth L1) with this beta, in [-1, 1] pixel units: quadratic below
    # it, L1 above. 0: plain L1 (reference). L1 holds a generator that starts as the identity in place;
    # with Huber small changes are nearly free (ganlab.cyclegan.losses.recon_loss).
    huber_beta: float = 0.0
    # Weight of the colour-cast term: each translation should keep its input's average hue
    # (ganlab.cyclegan.losses.tint_loss). 0: off (reference). For styles that keep colours, not for
    # tasks that change them (summer -> winter).
    tint_weight: float = 0.0
    ema_decay: float = 0.0  # > 0 keeps a moving average of the generators for eval/inference (e.g. 0.999)
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = (
        "auto"  # auto: bf16 where the hardware has it, fp16 on other GPUs
    )
    # Activation and weight layout. auto: channels_last on CUDA and on CPUs with AVX-512 (faster for every
    # CycleGAN step measured there), NCHW on other CPUs, where `ganlab demo` times both and takes the
    # faster (docs/performance.md).
    memory_format: Literal["auto", "channels_last", "nchw"] = "auto"
    # CPU threads for PyTorch (None: its default, one per core). On a machine shared with other jobs, 1
    # avoids oversubscription, which slowed steps about 10x here.
    threads: int | None = None
    log_every: int = 50  # steps between metrics.jsonl step records
    samples: int = 4  # images per domain in the per-epoch sample grid
    max_steps_per_epoch: int | None = None
    # A compute budget: stop after this many steps in all (ganlab sweep's budget: gflops sets it).
    max_steps: int | None = None
    # newest checkpoints kept (0 keeps all; at least 2, the previous one is the fallback when the latest
    # is damaged)
    keep_checkpoints: int = 3
    keep_every: int = 0  # also keep every N-th epoch's checkpoint (0: none)
    # Mid-epoch checkpoints (epoch ends always save one), so a crash loses at most this much work:
    checkpoint_every_steps: int | None = None  # every N global steps (null: off)
    checkpoint_every_minutes: float | None = 10.0  # and after this many minutes without one (null: off)
    max_bad_steps: int = 3  # NaN/Inf-loss steps in a row (each skipped, not applied) before the run stops
    eval_images: int = 16  # test images scored after each epoch when the data root has testA/testB (0: off)
    tensorboard: bool = False
    # Several processes (torchrun): batch norm over the global batch (SyncBatchNorm) instead of each
    # process's share; the norm then matches one process with the whole batch. No effect on instance norm.
    sync_bn: bool = False
    # torch.compile (inductor) the networks the step runs, around any DDP wrapper. The first steps pay the
    # compilation (35-55 s for the demo's networks on a 2-core CPU, 1.5-2.5 min for resnet9); then 5% faster
    # on a Zen 5 EPYC, no faster on a Zen 4 one, so it is off by default; checkpoints hold the plain modules
    # either way (docs/performance.md).
    compile: bool = False

    def validate(self) -> None:
        if self.epochs < 0 or self.epochs_decay < 0 or self.epochs + self.epochs_decay < 1:
            raise ConfigError("epochs: need epochs + epochs_decay >= 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be >= 1")
        if self.lr <= 0:
            raise ConfigError("lr: must be > 0")
        if not self.schedule:
            raise ConfigError("schedule: needs at least one phase")

        try:
            make_augment(self.augment)
        except ValueError as e:
            raise ConfigError(f"augment: {e}") from None
        if self.cycle_blur < 0:
            raise ConfigError(f"cycle_blur: must be >= 0 (0 is the exact cycle), got {self.cycle_blur}")
        if self.huber_beta < 0:
            raise ConfigError(f"huber_beta: must be >= 0 (0 is plain L1), got {self.huber_beta}")
        if self.tint_weight < 0:
            raise ConfigError(f"tint_weight: must be >= 0 (0 is off), got {self.tint_weight}")
        if self.pool_size < 0:
            raise ConfigError("pool_size: must be >= 0 (0 disables the pool)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads: must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay: must lie in [0, 1), got {self.ema_decay}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError("minutes: must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps: must be >= 1, got {self.max_steps}")
        if self.schedule_by == "budget" and self.minutes is None and self.max_steps is None:
            raise ConfigError(
                "schedule_by: budget needs train.minutes or train.max_steps (the budget the schedule follows)"
            )
        if self.gen_lr_coef <= 0 or self.disc_lr_coef <= 0:
            raise ConfigError("gen_lr_coef and disc_lr_coef: must be > 0")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigError(f"beta1, beta2: must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.samples < 1 or self.eval_images < 0:
            raise ConfigError("samples must be >= 1 and eval_images >= 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError("max_steps_per_epoch: must be >= 1")
        validate_reliability(self)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay


@dataclass
class CycleGANConfig:
    """The whole CycleGAN experiment."""

    preset: str = "model2"
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    disc: PatchGANConfig = field(default_factory=PatchGANConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def build_cyclegan_config(
    preset: str | None = None,
    files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> CycleGANConfig:
    """Resolve defaults < preset < base (e.g. a checkpoint's config) < YAML files < overrides."""

    layers: list[dict[str, Any]] = []
    if base is not None:
        layers.append(base)
    for f in files or []:
        layers.append(load_yaml(f))
    if overrides:
        layers.append(overrides)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge(merged, layer)
    name = preset or merged.get("preset") or CycleGANConfig.preset
    merged["preset"] = name
    # The preset fills the architecture; explicit model keys (file or --set) win over it.
    if base is None:
        merged["model"] = merge(to_dict(preset_config(name)), merged.get("model", {}))
    return from_dict(CycleGANConfig, merged)


# The flags of `ganlab train` and the shorthands of a sweep's base: and grid:, one table for both.
OPTIONS: tuple[Option, ...] = (
    Option("data", "data.root", "data root with trainA/ and trainB/ (optional testA/, testB/, testB_gt/)"),
    Option("data_a", "data.a", "folder of domain A images (instead of --data)"),
    Option("data_b", "data.b", "folder of domain B images (instead of --data)"),
    Option("epochs", "train.epochs", "epochs at constant learning rate", int),
    Option("epochs_decay", "train.epochs_decay", "then linear lr decay over this many epochs", int),
    Option("size", "data.size", "random crop size", int),
) + COMMON_OPTIONS
