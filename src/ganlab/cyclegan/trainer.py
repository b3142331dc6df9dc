"""CycleGAN training: the task the shared loop (``ganlab.core.loop``) runs, and :func:`train`, the
library entry point behind ``ganlab train``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganlab.core import distributed
from ganlab.core.augment import make_augment
from ganlab.core.checkpoint import Checkpoint, load_module_state, restore
from ganlab.core.device import Amp, keep_freed_memory, resolve_precision, select_device, set_threads
from ganlab.core.errors import ConfigError
from ganlab.core.images import save_image
from ganlab.core.loop import LoopSettings, TrainLoop, TrainResult, TrainTask
from ganlab.core.resolve import resolve_run
from ganlab.core.rundir import MetricsLog, RunDir
from ganlab.cyclegan.config import CycleGANConfig, build_cyclegan_config
from ganlab.cyclegan.data import load_unpaired
from ganlab.cyclegan.ema import ema_name, inference_view, make_ema, update_ema
from ganlab.cyclegan.evaluate import evaluate_models
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.reference import describe_missing
from ganlab.cyclegan.samples import sample_grid, sample_images
from ganlab.cyclegan.schedule import lr_factor, lr_factor_at_progress, phase_at, phase_at_progress
from ganlab.cyclegan.step import build_models, build_optimizers, fast_settings, set_learning_rates, train_step

ARCHITECTURE_SECTIONS = ("model", "disc")
SUMMARY_EVAL = ("eval_cycle_psnr", "eval_cycle_ssim", "eval_gt_psnr", "eval_gt_ssim")


class CycleGANTask(TrainTask):
    """The long-lived training state (data, models, optimizers, pools, EMA) of one CycleGAN run."""

    name = "cyclegan"

    def __init__(
        self, cfg: CycleGANConfig, log: Callable[[str], None] = print, progress: bool = True
    ) -> None:
        self.cfg, self.log = cfg, log
        t = cfg.train
        self.device = select_device(t.device)
        self.precision = resolve_precision(t.precision, self.device, log)
        self.amp = Amp(self.device, self.precision)
        set_threads(t.threads)
        keep_freed_memory()
        self.data = load_unpaired(cfg.data, warn=log, progress=progress)
        torch.manual_seed(t.seed)
        self.models = build_models(cfg).to(self.device)
        self.train_models = self.models  # what the step runs: DDP wrappers with several processes
        fast = fast_settings(cfg, self.device)
        self.batch_passes = (fast["batch_g"], fast["batch_d"])
        self.memory_format = torch.channels_last if fast["channels_last"] else torch.contiguous_format
        self.models.to(memory_format=self.memory_format)
        self.opts = build_optimizers(self.models, t)
        self.ema = make_ema(self.models) if t.ema_decay > 0 else None
        self.augment = make_augment(t.augment)
        self.pools = {k: ImagePool(t.pool_size, seed=t.seed + i) for i, k in enumerate(("D_A", "D_B"))}
        self.samples_a, self.samples_b = sample_images(self.data, t.samples)
        self._baselines: dict[str, float] | None = None  # eval baselines, model-independent
        self._warned: set[str] = set()
        self.phase: tuple[int, Any] | None = None  # (index, weights) in force
        self.lrs = (0.0, 0.0)

    # --- state -------------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {**dict(self.models), **(dict(self.ema) if self.ema is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opts

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for k, pool in self.pools.items():
            tensors.update(pool.state_tensors(f"pool/{k}"))
        return {**tensors, **self.amp.state_tensors()}

    def restore(self, ckpt: Checkpoint) -> None:
        restore(ckpt, dict(self.models), self.opts)
        if self.ema is not None:
            if ckpt.section(f"model/{ema_name('G_A2B')}"):
                for name in self.ema:
                    load_module_state(ckpt, name, self.ema[name])
            else:  # EMA switched on at resume: start the average from the current weights
                self.ema = make_ema(self.models)
        for k, pool in self.pools.items():
            pool.load_state(ckpt.tensors, f"pool/{k}", self.device)
        self.amp.load_state(ckpt.tensors)
        # The phase in force when the checkpoint was written, so only a real switch is logged after it.
        t, m = self.cfg.train, ckpt.meta
        if t.schedule_by == "budget" and (t.minutes or t.max_steps):
            done = max(
                m["global_step"] / (t.total_epochs * self.steps_per_epoch()),
                m["train_seconds"] / (t.minutes * 60) if t.minutes else 0.0,
                m["global_step"] / t.max_steps if t.max_steps else 0.0,
            )
            self.phase = phase_at_progress(t.schedule, done, t.total_epochs)
        elif m["epoch"] > 0:
            self.phase = phase_at(t.schedule, m["epoch"], t.total_epochs)

    def parallelize(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.train_models = nn.ModuleDict({k: wrap(m) for k, m in self.models.items()})

    def reseed(self, seed: int) -> None:
        super().reseed(seed)
        for i, pool in enumerate(self.pools.values()):
            pool.gen.manual_seed(seed + 1 + i)

    # --- the loop's hooks ---------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        t = self.cfg.train
        steps = self.data.steps_per_epoch(t.batch_size * distributed.world_size())
        return min(steps, t.max_steps_per_epoch) if t.max_steps_per_epoch else steps

    def describe(self) -> str:
        return (
            f"training {self.cfg.preset} on {self.device} | A: {len(self.data.a)} images, "
            f"B: {len(self.data.b)} | {distributed.batch_note(self.cfg.train.batch_size)}, "
            f"{self.steps_per_epoch()} steps/epoch"
        )

    def begin_epoch(
        self, epoch: int, total: int | None, metrics: MetricsLog, log: Callable[[str], None]
    ) -> None:
        t = self.cfg.train
        self.metrics, self.epoch = metrics, epoch
        if t.schedule_by == "epochs":
            phase = phase_at(t.schedule, epoch, t.total_epochs)
            self._apply_schedule(phase, lr_factor(epoch, t.epochs, t.epochs_decay), log)
        self.models.train()

    def _apply_schedule(self, phase: tuple[int, Any], factor: float, log: Callable[[str], None]) -> None:
        """Put ``phase``'s loss weights and lr x ``factor`` in force; a phase switch is recorded."""
        if self.phase is None or phase[0] != self.phase[0]:
            rec = {"type": "phase", "epoch": self.epoch, "phase": phase[0], "weights": _weights(phase[1])}
            self.metrics.write(rec)
            if self.phase is not None:
                log(f"epoch {self.epoch}: loss-weight phase {phase[0]} {_weights(phase[1])}")
        self.phase = phase
        self.lrs = set_learning_rates(self.opts, self.cfg.train, factor)

    def batches(self, epoch: int, start: int) -> Iterable[Any]:
        t, part = self.cfg.train, (distributed.rank(), distributed.world_size())
        return self.data.loader(t.seed, epoch, t.batch_size, skip_batches=start, part=part)

    def step(self, batch: Any, progress: float, global_step: int) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        if t.schedule_by == "budget":
            phase = phase_at_progress(t.schedule, progress, t.total_epochs)
            self._apply_schedule(phase, lr_factor_at_progress(progress, t.epochs, t.epochs_decay), self.log)
        assert self.phase is not None
        losses = train_step(
            self.train_models,
            self.opts,
            batch["A"].to(self.device).contiguous(memory_format=self.memory_format),
            batch["B"].to(self.device).contiguous(memory_format=self.memory_format),
            self.phase[1],
            t.gan_loss,
            self.pools,
            self.amp,
            self.augment,
            t.cycle_blur,
            *self.batch_passes,
            huber_beta=t.huber_beta,
            tint_weight=t.tint_weight,
        )
        if self.ema is not None:
            update_ema(self.ema, self.models, t.ema_decay, global_step)
        return losses

    def record_fields(self) -> dict[str, Any]:
        assert self.phase is not None
        return {
            "weights": _weights(self.phase[1]),
            "phase": self.phase[0],
            "lr_g": self.lrs[0],
            "lr_d": self.lrs[1],
        }

    def postfix(self, losses: dict[str, float]) -> dict[str, float]:
        return {"G": losses["G_total"], "D": (losses["D_A"] + losses["D_B"]) / 2}

    def evaluate(self) -> dict[str, float]:
        """Cheap per-epoch evaluation on the run's test images (if any): metric curves over epochs."""
        if not self.cfg.train.eval_images or not self.cfg.data.root:
            return {}
        self.models.eval()
        # The baselines do not depend on the model: score them once per invocation, then reuse.
        cached = self._baselines
        res = evaluate_models(
            inference_view(self.models, self.ema),
            Path(self.cfg.data.root),
            self.device,
            limit=self.cfg.train.eval_images,
            baselines=cached is None,
            warn=self._warn_once,
        )
        if cached is None:
            self._baselines = {k: v for k, v in res.items() if k.startswith(("identity_", "affine_"))}
        res.update(self._baselines or {})
        return {f"eval_{k}": v for k, v in res.items() if isinstance(v, float)}

    def _warn_once(self, line: str) -> None:
        """The per-epoch evaluation names an unreadable test image once per run, not every epoch."""
        if line not in self._warned:
            self._warned.add(line)
            self.log(line)

    def end_epoch(self, epoch: int, record: dict[str, Any], run: RunDir) -> dict[str, Image.Image]:
        self.models.eval()
        grid = sample_grid(inference_view(self.models, self.ema), self.samples_a, self.samples_b, self.device)
        save_image(grid, run.samples / f"epoch_{epoch:04d}.png")
        return {"samples": grid}

    def summary(self, r: dict[str, Any]) -> str:
        return (
            f"epoch {r['epoch']}/{self.cfg.train.total_epochs} {r['seconds']:.1f}s | G {r['G_total']:.3f} "
            f"(gan {r['G_gan_A2B']:.3f}/{r['G_gan_B2A']:.3f} cyc {r['cycle_A']:.3f}/{r['cycle_B']:.3f} "
            f"idt {r['idt_A']:.3f}/{r['idt_B']:.3f}) | D {r['D_A']:.3f}/{r['D_B']:.3f} | w {r['weights']} "
            f"| lr {r['lr_g']:.2e}" + "".join(f" | {k[5:]} {r[k]:.2f}" for k in SUMMARY_EVAL if k in r)
        )


def _weights(w: Any) -> dict[str, float]:
    return {"identity": w.identity, "gan": w.gan, "cycle": w.cycle}


def train(
    preset: str | None = None,
    config_files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainResult:
    """Train (or exactly resume) a CycleGAN run and return where it stopped."""
    cfg, out, ckpt, changes = resolve_run(
        "cyclegan",
        build_cyclegan_config,
        lambda key: "the architecture" if key.split(".")[0] in ARCHITECTURE_SECTIONS else None,
        preset,
        config_files,
        overrides,
        out,
        resume,
        lambda c: Path("runs") / c.preset,
    )
    if ckpt is not None and describe_missing(ckpt.meta, resume or out):
        raise ConfigError(
            f"{describe_missing(ckpt.meta, resume or out)}: training needs both generators and both "
            "discriminators (import a reference checkpoints folder with latest_net_D_A.pth and "
            "latest_net_D_B.pth to continue training)"
        )
    with distributed.session(cfg.train.device):  # several processes under torchrun; else nothing
        log, progress = distributed.rank_zero(log), progress and distributed.is_main()
        task = CycleGANTask(cfg, log=log, progress=progress)
        settings = LoopSettings.of(cfg.train, cfg.train.total_epochs)
        loop = TrainLoop(task, settings, out, ckpt, changes, log=log, progress=progress)
        return loop.fit()
