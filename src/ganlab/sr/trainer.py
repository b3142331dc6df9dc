"""SRResNet / SRGAN training (Ledig et al. 2017, arXiv 1609.04802): the task the shared loop
(``ganlab.core.loop``) runs, and :func:`train_sr`, the library entry point behind ``ganlab sr train``.
The update itself is :func:`ganlab.sr.step.train_step`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlab.core import distributed
from ganlab.core.checkpoint import Checkpoint, load_module_state
from ganlab.core.config import merge, to_dict
from ganlab.core.device import Amp, keep_freed_memory, resolve_precision, select_device, set_threads
from ganlab.core.errors import CheckpointError, ConfigError
from ganlab.core.loop import LoopSettings, TrainLoop, TrainResult, TrainTask
from ganlab.core.resolve import resolve_run
from ganlab.core.rundir import MetricsLog, load_run_checkpoint, run_meta
from ganlab.models.sr import SRResNet
from ganlab.sr.config import SRConfig, build_sr_config
from ganlab.sr.data import SRPatchSampler, builtin_images, read_folder
from ganlab.sr.evaluate import score_images
from ganlab.sr.step import build_models, fast_settings, lr_factor, train_step

EVAL_KEYS = ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")


def load_init_generator(generator: SRResNet, init_run: str | Path) -> dict[str, Any]:
    """Copy the generator weights of another run's latest checkpoint (``--init``); returns its config."""
    ckpt = load_run_checkpoint(init_run, "latest", "sr")
    try:
        load_module_state(ckpt, "generator", generator)
    except CheckpointError as e:
        theirs = ckpt.meta.get("config", {}).get("model")
        raise ConfigError(
            f"--init {init_run}: its generator does not fit this model ({e}); its model config is "
            f"{theirs}, this run's is {to_dict(generator.cfg)}"
        ) from None
    return ckpt.meta.get("config", {})


class SRTask(TrainTask):
    """The long-lived training state (models, optimizers, patch sampler, eval images) of one SR run."""

    name = "sr"

    def __init__(
        self,
        cfg: SRConfig,
        init: str | Path | None = None,
        resuming: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg, self.log = cfg, log
        t, d = cfg.train, cfg.data
        self.device = select_device(t.device)
        self.precision = resolve_precision(t.precision, self.device, log)
        self.amp = Amp(self.device, self.precision)
        set_threads(t.threads)
        keep_freed_memory()
        torch.manual_seed(t.seed)
        self.models = build_models(cfg, self.device)
        self.train_models = self.models  # what the step runs: DDP wrappers with several processes
        cl = fast_settings(cfg, self.device)["channels_last"]
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        for mod in self.models.modules().values():
            mod.to(memory_format=self.memory_format)
        if init is not None and not resuming:
            load_init_generator(self.models.generator, init)
            log(f"generator initialised from {init}")
        elif init is None and not resuming and t.stage == "gan":
            log(
                "warning: GAN stage without --init trains SRGAN from scratch (the paper starts from SRResNet)"
            )
        # Data after the weights, so a bad --init fails before seconds of photo decoding.
        hr = (
            read_folder(d.root, warn=log)
            if d.root
            else builtin_images("train", d.split_seed, d.photo_max_side)
        )
        lr = read_folder(d.lr_root, warn=log) if d.lr_root else None
        self.sampler = SRPatchSampler(
            hr, cfg.model.scale, d.size, t.seed, lr, d.flip, d.rot90, log, d.detail_candidates
        )
        self.eval_images = []
        if d.eval_images:
            src = (
                read_folder(d.eval_root, warn=log)
                if d.eval_root
                else builtin_images("test", d.split_seed, d.photo_max_side)
            )
            self.eval_images = src[: d.eval_images]
        self.lr = t.lr

    def modules(self) -> dict[str, nn.Module]:
        return self.models.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.models.optimizers()

    def parallelize(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        m = self.models
        d = wrap(m.discriminator) if m.discriminator is not None else None
        self.train_models = dataclasses.replace(m, generator=wrap(m.generator), discriminator=d)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return self.amp.state_tensors()

    def restore(self, ckpt: Checkpoint) -> None:
        super().restore(ckpt)
        self.amp.load_state(ckpt.tensors)

    def steps_per_epoch(self) -> int:
        return self.cfg.train.steps_per_epoch

    def describe(self) -> str:
        t, g = self.cfg.train, self.models.generator
        return (
            f"SR {t.stage} training, {self.cfg.preset} x{self.cfg.model.scale} on {self.device} | "
            f"{sum(p.numel() for p in g.parameters()):,} generator parameters | {len(self.sampler)} HR images, "
            f"{self.cfg.data.size}px crops, {distributed.batch_note(t.batch_size)} | {t.steps_per_epoch} steps/epoch"
            + (f", budget {t.minutes} min" if t.minutes else "")
        )

    def begin_epoch(
        self, epoch: int, total: int | None, metrics: MetricsLog, log: Callable[[str], None]
    ) -> None:
        for mod in self.models.modules().values():
            mod.train()

    def batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        t, part = self.cfg.train, (distributed.rank(), distributed.world_size())
        for step in range(start, t.steps_per_epoch):
            yield self.sampler.batch(epoch, step, t.batch_size, part)

    def step(self, batch: Any, progress: float, global_step: int) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        self.lr = t.lr * lr_factor(t, progress)
        for opt in self.models.optimizers().values():
            for g in opt.param_groups:
                g["lr"], g["betas"] = self.lr, t.betas
        lr_img, hr_img = (v.to(self.device).contiguous(memory_format=self.memory_format) for v in batch)
        return train_step(self.train_models, lr_img, hr_img, t, self.amp)

    def record_fields(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def postfix(self, losses: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in losses.items() if k in ("pixel", "perceptual", "adv_g", "loss_d")}

    def evaluate(self) -> dict[str, float]:
        if not self.eval_images:
            return {}
        d = self.cfg.data
        res = score_images(
            self.models.generator, self.eval_images, self.cfg.model.scale, self.device, d.eval_size
        )
        return {k: res[k] for k in EVAL_KEYS}

    def summary(self, r: dict[str, Any]) -> str:
        losses = " ".join(
            f"{k} {r[k]:.4f}" for k in ("pixel", "perceptual", "adv_g", "loss_g", "loss_d") if k in r
        )
        psnr = f" | Y-PSNR {r['psnr_y']:.2f} dB (bicubic {r['bicubic_psnr_y']:.2f})" if "psnr_y" in r else ""
        return f"epoch {r['epoch']} {r['seconds']:.1f}s | {losses} | lr {r['lr']:.2e}{psnr}"


def _frozen(key: str) -> str | None:
    if key.split(".")[0] in ("model", "disc"):
        return "the architecture"
    return "the training stage" if key == "train.stage" else None


def train_sr(
    preset: str | None = None,
    config_files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    init: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainResult:
    """Train (or exactly resume) an SR run; ``init`` starts the generator from another run's weights."""
    if init is not None and resume is None and preset is None:
        # Fine-tuning: by default take the architecture of the run we start from (flags still win,
        # and a real mismatch is then reported when the weights are loaded).
        init_cfg = run_meta(init, "latest", "sr").get("config", {})
        preset = init_cfg.get("preset")
        overrides = merge({"model": init_cfg.get("model", {})}, overrides or {})
    cfg, out, ckpt, changes = resolve_run(
        "sr",
        build_sr_config,
        _frozen,
        preset,
        config_files,
        overrides,
        out,
        resume,
        lambda c: Path("runs") / f"sr-{c.preset}-x{c.model.scale}",
    )
    with distributed.session(cfg.train.device):  # several processes under torchrun; else nothing
        log, progress = distributed.rank_zero(log), progress and distributed.is_main()
        task = SRTask(cfg, init=init, resuming=ckpt is not None, log=log)
        settings = LoopSettings.of(cfg.train, cfg.train.epochs)
        loop = TrainLoop(task, settings, out, ckpt, changes, log=log, progress=progress)
        return loop.fit()
