"""SRResNet / SRGAN training (Ledig et al. 2017, arXiv 1609.04802): the step and the epoch loop.

Stage ``pixel`` trains SRResNet on an L1 or MSE pixel loss. Stage ``gan`` fine-tunes it as SRGAN: content
loss (pixel and/or VGG19 conv5_4 perceptual MSE) plus 1e-3 x adversarial loss, then a discriminator
update. The step reads top to bottom like the paper and returns its losses as floats; long-lived state
(models, optimizers) is passed in, nothing is kept per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ganlab import __version__
from ganlab.config import ConfigError, diff, merge, to_dict
from ganlab.data.sr_data import SRPatchSampler, builtin_images, read_folder
from ganlab.models.sr import SRDiscriminator, SRResNet
from ganlab.models.vgg import VGG19Features, load_vgg19_features
from ganlab.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_module_state,
    restore,
    save_checkpoint,
)
from ganlab.train.losses import gan_loss
from ganlab.train.run import Budget, MetricsLog, RunDir, StopFlag, autocast, peak_memory_mb, select_device
from ganlab.train.sr_config import SRConfig, SRTrainConfig, build_sr_config

ARCHITECTURE_SECTIONS = ("model", "disc")


# ------------------------------------------------------------------------------------------ losses


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(sr, hr) if kind == "l1" else F.mse_loss(sr, hr)


def perceptual_loss(vgg: VGG19Features, sr: torch.Tensor, hr: torch.Tensor, rescale: float) -> torch.Tensor:
    """MSE between rescaled VGG19 phi_5,4 features (paper eq. 5; features x 1/12.75, sec. 3.2)."""
    with torch.no_grad():
        target = vgg(hr) * rescale
    return F.mse_loss(vgg(sr) * rescale, target)


def adversarial_losses(
    kind: str, real: torch.Tensor, fake: torch.Tensor, for_discriminator: bool
) -> torch.Tensor:
    """vanilla: non-saturating BCE (the paper's -log D(G(I_LR))). relativistic: RaGAN (Jolicoeur-Martineau
    2018, arXiv 1807.00734), D(x) = sigmoid(C(x) - mean C(y)), symmetric in real/fake as in ESRGAN."""
    if kind == "vanilla":
        if for_discriminator:
            return gan_loss("vanilla", real, True) + gan_loss("vanilla", fake, False)
        return gan_loss("vanilla", fake, True)
    rf, fr = real - fake.mean(), fake - real.mean()
    if for_discriminator:
        return gan_loss("vanilla", rf, True) + gan_loss("vanilla", fr, False)
    return 0.5 * (gan_loss("vanilla", rf, False) + gan_loss("vanilla", fr, True))


# -------------------------------------------------------------------------------------------- step


@dataclass
class SRModels:
    """The long-lived training state: generator, optional discriminator and VGG, their optimizers."""

    generator: SRResNet
    opt_g: torch.optim.Optimizer
    discriminator: SRDiscriminator | None = None
    opt_d: torch.optim.Optimizer | None = None
    vgg: VGG19Features | None = None

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"generator": self.generator}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator
        return out

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, **({"d": self.opt_d} if self.opt_d is not None else {})}


def train_step(
    m: SRModels, lr_img: torch.Tensor, hr_img: torch.Tensor, t: SRTrainConfig, amp: Callable[[], Any]
) -> dict[str, float]:
    """One update. lr_img: (N, 3, S/s, S/s), hr_img: (N, 3, S, S), both in [0, 1]. Returns every loss."""
    gan = t.stage == "gan"
    d = m.discriminator
    out: dict[str, torch.Tensor] = {}

    # --- Generator: content loss (+ perceptual) (+ 1e-3 adversarial, paper eq. 3).
    m.opt_g.zero_grad(set_to_none=True)
    if d is not None:
        d.requires_grad_(False)
    with amp():
        sr = m.generator(lr_img)
    sr = sr.float()
    out["pixel"] = pixel_loss(t.pixel_loss, sr, hr_img)
    loss_g = t.pixel_weight * out["pixel"]
    if m.vgg is not None:
        with amp():
            out["perceptual"] = perceptual_loss(m.vgg, sr, hr_img, t.vgg_rescale).float()
        loss_g = loss_g + t.perceptual_weight * out["perceptual"]
    if gan:
        assert d is not None
        with amp():
            fake_score = d(sr).float()
            real_score = d(hr_img).float().detach() if t.adv_kind == "relativistic" else fake_score
        out["adv_g"] = adversarial_losses(t.adv_kind, real_score, fake_score, for_discriminator=False)
        loss_g = loss_g + t.adv_weight * out["adv_g"]
    out["loss_g"] = loss_g
    loss_g.backward()
    if t.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(m.generator.parameters(), t.grad_clip)
    m.opt_g.step()

    # --- Discriminator: real HR vs the (detached) SR output.
    if gan:
        assert d is not None and m.opt_d is not None
        d.requires_grad_(True)
        m.opt_d.zero_grad(set_to_none=True)
        with amp():
            real_score, fake_score = d(hr_img).float(), d(sr.detach()).float()
        out["loss_d"] = adversarial_losses(t.adv_kind, real_score, fake_score, for_discriminator=True)
        out["d_real"], out["d_fake"] = real_score.mean(), fake_score.mean()
        out["loss_d"].backward()
        m.opt_d.step()
    return {k: float(v.detach()) for k, v in out.items()}


def lr_factor(t: SRTrainConfig, progress: float) -> float:
    """Multiplier of ``t.lr`` at training progress in [0, 1] (cosine from 1 to lr_min_ratio)."""
    if t.lr_schedule == "constant":
        return 1.0
    p = min(max(progress, 0.0), 1.0)
    return t.lr_min_ratio + (1 - t.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


# ------------------------------------------------------------------------------------------ models


def build_models(cfg: SRConfig, device: torch.device) -> SRModels:
    t = cfg.train
    g = SRResNet(cfg.model).to(device)
    m = SRModels(g, torch.optim.Adam(g.parameters(), lr=t.lr, betas=t.betas))
    if t.stage == "gan":
        m.discriminator = SRDiscriminator(cfg.disc).to(device)
        m.opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=t.lr, betas=t.betas)
    if t.vgg_weights:
        m.vgg = load_vgg19_features(t.vgg_weights, after_relu=t.vgg_after_relu).to(device)
    return m


def load_init_generator(generator: SRResNet, init_run: str | Path) -> dict[str, Any]:
    """Copy the generator weights of another run's latest checkpoint (``--init``); returns its config."""
    ckpt = load_checkpoint(RunDir(Path(init_run)).resolve_checkpoint("latest"))
    if ckpt.meta.get("task") != "sr":
        raise ConfigError(f"--init {init_run} is not an SR run (task {ckpt.meta.get('task')!r})")
    try:
        load_module_state(ckpt, "generator", generator)
    except CheckpointError as e:
        theirs = ckpt.meta.get("config", {}).get("model")
        raise ConfigError(
            f"--init {init_run}: its generator does not fit this model ({e}); its model config is "
            f"{theirs}, this run's is {to_dict(generator.cfg)}"
        ) from None
    return ckpt.meta.get("config", {})


# ------------------------------------------------------------------------------------------- loop


@dataclass
class SRTrainResult:
    run_dir: Path
    epoch: int  # completed epochs
    global_step: int
    stopped: str  # "done", "budget", "interrupted"
    checkpoint: Path | None
    minutes: float


class SRTrainer:
    """Owns models, optimizers and data for one run directory and runs the epoch loop."""

    def __init__(
        self,
        cfg: SRConfig,
        out: str | Path,
        resume: Checkpoint | None = None,
        init: str | Path | None = None,
        config_changes: dict[str, list[Any]] | None = None,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ) -> None:
        self.cfg, self.log, self.progress = cfg, log, progress
        self.run = RunDir(Path(out))
        self.device = select_device(cfg.train.device)
        torch.manual_seed(cfg.train.seed)
        self.models = build_models(cfg, self.device)
        # NHWC is 20-30% faster for these narrow convs on CPU (oneDNN) and on CUDA tensor cores.
        self.memory_format = (
            torch.channels_last if self.device.type in ("cpu", "cuda") else torch.contiguous_format
        )
        for mod in self.models.modules().values():
            mod.to(memory_format=self.memory_format)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.sums: dict[str, float] = {}  # loss sums of the epoch in progress (kept across resume)
        self.train_seconds = 0.0  # training wall time of earlier invocations (the budget spans them)
        if init is not None and resume is None:
            load_init_generator(self.models.generator, init)
            self.log(f"generator initialised from {init}")
        self.run.create()
        self.metrics = MetricsLog(self.run.metrics_path)
        if resume is not None:
            restore(resume, self.models.modules(), self.models.optimizers())
            meta = resume.meta
            self.epoch, self.step_in_epoch, self.global_step = (
                meta["epoch"],
                meta["step_in_epoch"],
                meta["global_step"],
            )
            self.sums = dict(meta.get("epoch_sums", {}))
            self.train_seconds = float(meta.get("train_seconds", 0.0))
            if config_changes:
                self.metrics.write(
                    {
                        "type": "config_change",
                        "epoch": self.epoch + 1,
                        "step": self.global_step,
                        "changes": config_changes,
                    }
                )
                self.log(
                    "config changed at resume: "
                    + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in config_changes.items())
                )
        elif init is None and cfg.train.stage == "gan":
            self.log(
                "warning: GAN stage without --init trains SRGAN from scratch (the paper starts from SRResNet)"
            )
        # Data after the weights, so a bad --init fails before seconds of photo decoding.
        d = cfg.data
        hr = read_folder(d.root) if d.root else builtin_images("train", d.split_seed, d.photo_max_side)
        lr = read_folder(d.lr_root) if d.lr_root else None
        self.sampler = SRPatchSampler(
            hr, cfg.model.scale, d.size, cfg.train.seed, lr, d.flip, d.rot90, log, d.detail_candidates
        )
        self.eval_images = []
        if d.eval_images:
            src = (
                read_folder(d.eval_root)
                if d.eval_root
                else builtin_images("test", d.split_seed, d.photo_max_side)
            )
            self.eval_images = src[: d.eval_images]
        self.run.write_config(cfg)

    def save(self, epoch: int, step_in_epoch: int) -> Path:
        """Checkpoint after ``epoch`` complete epochs plus ``step_in_epoch`` steps of the next."""
        meta = {
            "task": "sr",
            "ganlab_version": __version__,
            "config": to_dict(self.cfg),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "epoch_sums": self.sums if step_in_epoch else {},
            "train_seconds": self.budget.elapsed(),
            "time": time.time(),
        }
        label = (epoch, 0) if step_in_epoch == 0 else (epoch + 1, step_in_epoch)
        path = self.run.checkpoint_path(*label)
        save_checkpoint(path, self.models.modules(), meta, self.models.optimizers())
        self.run.set_latest(path, epoch, step_in_epoch)
        self.run.prune(self.cfg.train.keep_checkpoints, self.cfg.train.keep_every, protect=path)
        return path

    def _progress(self, budget: Budget) -> float:
        t = self.cfg.train
        p = 0.0
        if t.epochs is not None:
            p = self.global_step / (t.epochs * t.steps_per_epoch)
        if t.minutes is not None:
            p = max(p, budget.elapsed() / (t.minutes * 60))
        return p

    def _set_lr(self, lr: float) -> None:
        for opt in self.models.optimizers().values():
            for g in opt.param_groups:
                g["lr"] = lr
                g["betas"] = self.cfg.train.betas

    def epoch_eval(self) -> dict[str, float]:
        if not self.eval_images:
            return {}
        from ganlab.eval.sr_eval import score_images

        res = score_images(
            self.models.generator,
            self.eval_images,
            self.cfg.model.scale,
            self.device,
            max_side=self.cfg.data.eval_size,
        )
        return {k: res[k] for k in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")}

    def fit(self) -> SRTrainResult:
        t = self.cfg.train
        self.budget = budget = Budget(t.minutes, self.train_seconds)
        if budget.expired():
            self.log(
                f"the run's {t.minutes}-minute budget is already spent; pass a larger --minutes to go on"
            )
            return SRTrainResult(self.run.root, self.epoch, self.global_step, "budget", None, 0.0)
        amp = lambda: autocast(self.device, t.precision)  # noqa: E731
        total = t.epochs if t.epochs is not None else math.inf
        g = self.models.generator
        self.log(
            f"SR {t.stage} training, {self.cfg.preset} x{self.cfg.model.scale} on {self.device} | "
            f"{sum(p.numel() for p in g.parameters()):,} generator parameters | {len(self.sampler)} HR images, "
            f"{self.cfg.data.size}px crops, batch {t.batch_size} | {t.steps_per_epoch} steps/epoch, epochs "
            f"{self.epoch + 1}..{t.epochs if t.epochs is not None else 'budget'}"
            + (f", budget {t.minutes} min" if t.minutes else "")
            + f" | out: {self.run.root}"
        )
        last_ckpt, stopped = None, "done"
        with StopFlag() as stop:
            while self.epoch < total:
                epoch = self.epoch + 1
                for mod in self.models.modules().values():
                    mod.train()
                t0, n = time.monotonic(), 0
                bar = tqdm(
                    total=t.steps_per_epoch,
                    initial=self.step_in_epoch,
                    desc=f"epoch {epoch}",
                    unit="step",
                    disable=not self.progress,
                    leave=False,
                    dynamic_ncols=True,
                )
                lr = t.lr
                while self.step_in_epoch < t.steps_per_epoch:
                    lr = t.lr * lr_factor(t, self._progress(budget))
                    self._set_lr(lr)
                    lr_img, hr_img = self.sampler.batch(epoch, self.step_in_epoch, t.batch_size)
                    lr_img, hr_img = (
                        v.to(self.device).contiguous(memory_format=self.memory_format)
                        for v in (lr_img, hr_img)
                    )
                    losses = train_step(self.models, lr_img, hr_img, t, amp)
                    self.step_in_epoch += 1
                    self.global_step += 1
                    n += 1
                    for k, v in losses.items():
                        self.sums[k] = self.sums.get(k, 0.0) + v
                    if self.global_step % t.log_every == 0:
                        self.metrics.write(
                            {"type": "step", "epoch": epoch, "step": self.global_step, **losses, "lr": lr}
                        )
                    post = {
                        k: f"{v:.4f}"
                        for k, v in losses.items()
                        if k in ("pixel", "perceptual", "adv_g", "loss_d")
                    }
                    if t.minutes is not None:
                        post["left"] = f"{max(0.0, budget.left()) / 60:.1f}m"
                    bar.set_postfix(post)
                    bar.update(1)
                    if stop.requested or budget.expired():
                        break
                bar.close()
                seconds = time.monotonic() - t0
                if self.step_in_epoch < t.steps_per_epoch:  # stopped inside the epoch
                    stopped = "interrupted" if stop.requested else "budget"
                    last_ckpt = self.save(self.epoch, self.step_in_epoch)
                    self.log(
                        f"stopped ({stopped}) at epoch {epoch} step {self.step_in_epoch}/{t.steps_per_epoch}; "
                        f"checkpoint {last_ckpt}"
                    )
                    break
                means = {k: v / t.steps_per_epoch for k, v in self.sums.items()}
                self.epoch, self.step_in_epoch, self.sums = epoch, 0, {}
                record = {
                    "type": "epoch",
                    "epoch": epoch,
                    "step": self.global_step,
                    "seconds": seconds,
                    "steps": n,
                    **means,
                    "lr": lr,
                    "peak_mem_mb": peak_memory_mb(self.device),
                }
                record.update(self.epoch_eval())
                self.metrics.write(record)
                last_ckpt = self.save(epoch, 0)
                self.log(
                    f"epoch {epoch} {seconds:.1f}s | "
                    + " ".join(f"{k} {v:.4f}" for k, v in means.items())
                    + f" | lr {lr:.2e}"
                    + (
                        f" | Y-PSNR {record['psnr_y']:.2f} dB (bicubic {record['bicubic_psnr_y']:.2f})"
                        if "psnr_y" in record
                        else ""
                    )
                )
                if stop.requested or budget.expired():
                    stopped = "interrupted" if stop.requested else "budget"
                    self.log(f"stopped ({stopped}) after epoch {epoch}; checkpoint {last_ckpt}")
                    break
        return SRTrainResult(
            self.run.root, self.epoch, self.global_step, stopped, last_ckpt, budget.elapsed() / 60
        )


def train_sr(
    preset: str | None = None,
    config_files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    init: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> SRTrainResult:
    """Train (or exactly resume) an SR run; ``init`` starts the generator from another run's weights."""
    if resume is not None:
        ckpt = load_checkpoint(RunDir(Path(resume)).resolve_checkpoint("latest"))
        if ckpt.meta.get("task") != "sr":
            raise ConfigError(f"{resume} is not an SR run (task {ckpt.meta.get('task')!r})")
        old = ckpt.meta["config"]
        if preset is not None and preset != old.get("preset"):
            raise ConfigError(f"--preset {preset} differs from the run's preset {old.get('preset')}")
        cfg = build_sr_config(files=config_files, overrides=overrides, base=old)
        changes = diff(old, to_dict(cfg))
        frozen = [k for k in changes if k.split(".")[0] in ARCHITECTURE_SECTIONS or k == "train.stage"]
        if frozen:
            k = frozen[0]
            raise ConfigError(
                f"cannot change {k} at resume ({changes[k][0]} -> {changes[k][1]}); start a new run"
            )
        trainer = SRTrainer(
            cfg, out or resume, resume=ckpt, config_changes=changes, log=log, progress=progress
        )
        return trainer.fit()
    if init is not None and preset is None:
        # Fine-tuning: by default take the architecture of the run we start from (flags still win,
        # and a real mismatch is then reported when the weights are loaded).
        init_cfg = load_checkpoint(RunDir(Path(init)).resolve_checkpoint("latest")).meta.get("config", {})
        preset = init_cfg.get("preset")
        overrides = merge({"model": init_cfg.get("model", {})}, overrides or {})
    cfg = build_sr_config(preset=preset, files=config_files, overrides=overrides)
    out = Path(out) if out else Path("runs") / f"sr-{cfg.preset}-x{cfg.model.scale}"
    if (out / "checkpoints" / "latest.json").exists():
        raise ConfigError(
            f"{out} already holds a run; use --resume {out} to continue it or pick another --out"
        )
    return SRTrainer(cfg, out, init=init, log=log, progress=progress).fit()
