"""CycleGAN training (Zhu et al. 2017, arXiv 1703.10593): the step and the epoch loop.

The step reads like the paper: generators first (adversarial + cycle + identity terms under the weights
of the current phase), then the two discriminators on real images and pooled fakes. It returns its losses
as floats; all long-lived state (models, optimizers, pools) is passed in, nothing is kept per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ganlab.core.augment import make_augment
from ganlab.core.checkpoint import Checkpoint, load_module_state, restore
from ganlab.core.images import save_image
from ganlab.core.losses import cycle_l1, gan_loss, l1
from ganlab.core.rundir import (
    Budget,
    MetricsLog,
    RunDir,
    StopFlag,
    autocast,
    peak_memory_mb,
    progress_meta,
    select_device,
)
from ganlab.cyclegan.config import CycleGANConfig, Phase, TrainConfig
from ganlab.cyclegan.data import load_unpaired
from ganlab.cyclegan.ema import ema_name, inference_view, make_ema, update_ema
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.samples import sample_grid, sample_images
from ganlab.cyclegan.schedule import lr_factor, phase_at
from ganlab.models import PatchGANDiscriminator, ResnetGenerator

MODULE_NAMES = ("G_A2B", "G_B2A", "D_A", "D_B")
SUMMARY_EVAL = ("eval_cycle_psnr", "eval_cycle_ssim", "eval_gt_psnr", "eval_gt_ssim")
LOSS_KEYS = ("G_gan_A2B", "G_gan_B2A", "cycle_A", "cycle_B", "idt_A", "idt_B", "G_total", "D_A", "D_B")


def build_models(cfg: CycleGANConfig) -> nn.ModuleDict:
    """G_A2B, G_B2A (generators) and D_A, D_B (PatchGANs judging domain A and domain B)."""
    return nn.ModuleDict(
        {
            "G_A2B": ResnetGenerator(cfg.model),
            "G_B2A": ResnetGenerator(cfg.model),
            "D_A": PatchGANDiscriminator(cfg.disc),
            "D_B": PatchGANDiscriminator(cfg.disc),
        }
    )


def build_optimizers(models: nn.ModuleDict, t: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One Adam for both generators; one per discriminator at lr x disc_lr_coef."""
    betas = (t.beta1, t.beta2)
    g_params = list(models["G_A2B"].parameters()) + list(models["G_B2A"].parameters())
    return {
        "G": torch.optim.Adam(g_params, lr=t.lr * t.gen_lr_coef, betas=betas),
        "D_A": torch.optim.Adam(models["D_A"].parameters(), lr=t.lr * t.disc_lr_coef, betas=betas),
        "D_B": torch.optim.Adam(models["D_B"].parameters(), lr=t.lr * t.disc_lr_coef, betas=betas),
    }


def set_learning_rates(
    opts: dict[str, torch.optim.Optimizer], t: TrainConfig, epoch: int
) -> tuple[float, float]:
    """Apply the lr schedule (and the current coefficients, which may change at resume) for ``epoch``."""
    f = lr_factor(epoch, t.epochs, t.epochs_decay)
    lr_g, lr_d = t.lr * t.gen_lr_coef * f, t.lr * t.disc_lr_coef * f
    for name, opt in opts.items():
        for g in opt.param_groups:
            g["lr"] = lr_g if name == "G" else lr_d
            g["betas"] = (t.beta1, t.beta2)
    return lr_g, lr_d


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def train_step(
    models: nn.ModuleDict,
    opts: dict[str, torch.optim.Optimizer],
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    w: Phase,
    gan_kind: str,
    pools: dict[str, ImagePool],
    amp: Callable[[], Any],
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cycle_blur: float = 0.0,
) -> dict[str, float]:
    """One CycleGAN update. real_a, real_b: (N, 3, S, S) in [-1, 1]. Returns every loss term.

    ``augment`` (ganlab.core.augment) transforms every discriminator input, real and fake alike;
    ``cycle_blur`` > 0 compares the cycle's images after a Gaussian blur of that sigma (losses.cycle_l1)."""
    g_ab, g_ba, d_a, d_b = (models[k] for k in MODULE_NAMES)
    aug = augment or (lambda x: x)

    # --- Generators: fool the discriminators, reconstruct through the cycle, keep in-domain images.
    _requires_grad(d_a, False)
    _requires_grad(d_b, False)
    opts["G"].zero_grad(set_to_none=True)
    with amp():
        fake_b = g_ab(real_a)  # A -> B
        rec_a = g_ba(fake_b)  # A -> B -> A
        fake_a = g_ba(real_b)  # B -> A
        rec_b = g_ab(fake_a)  # B -> A -> B
        loss_gan_ab = gan_loss(gan_kind, d_b(aug(fake_b)), True, for_discriminator=False)
        loss_gan_ba = gan_loss(gan_kind, d_a(aug(fake_a)), True, for_discriminator=False)
        loss_cyc_a = cycle_l1(rec_a, real_a, cycle_blur)
        loss_cyc_b = cycle_l1(rec_b, real_b, cycle_blur)
        if w.identity > 0:
            # An image already in the target domain should pass unchanged (colour preservation).
            loss_idt_a, loss_idt_b = l1(g_ba(real_a), real_a), l1(g_ab(real_b), real_b)
        else:
            loss_idt_a = loss_idt_b = torch.zeros((), device=real_a.device)
    loss_g = (
        w.gan * (loss_gan_ab + loss_gan_ba)
        + w.cycle * (loss_cyc_a + loss_cyc_b)
        + w.identity * (loss_idt_a + loss_idt_b)
    )
    loss_g.backward()
    opts["G"].step()

    # --- Discriminators: real vs (pooled) fake, halved so D learns at half G's rate (reference).
    _requires_grad(d_a, True)
    _requires_grad(d_b, True)
    d_losses = {}
    for name, disc, real, fake in (("D_A", d_a, real_a, fake_a), ("D_B", d_b, real_b, fake_b)):
        opts[name].zero_grad(set_to_none=True)
        pooled = pools[name].query(fake.detach())
        with amp():
            real_score, fake_score = disc(aug(real)), disc(aug(pooled))
            loss_d = 0.5 * (gan_loss(gan_kind, real_score, True) + gan_loss(gan_kind, fake_score, False))
        loss_d.backward()
        opts[name].step()
        d_losses[name] = loss_d

    out = {
        "G_gan_A2B": loss_gan_ab,
        "G_gan_B2A": loss_gan_ba,
        "cycle_A": loss_cyc_a,
        "cycle_B": loss_cyc_b,
        "idt_A": loss_idt_a,
        "idt_B": loss_idt_b,
        "G_total": loss_g,
        **d_losses,
    }
    return {k: float(v.detach()) for k, v in out.items()}


@dataclass
class TrainResult:
    run_dir: Path
    epoch: int  # last completed epoch
    global_step: int
    stopped: str  # "done", "budget", "interrupted"
    checkpoint: Path | None


def _weights_dict(w: Phase) -> dict[str, float]:
    return {"identity": w.identity, "gan": w.gan, "cycle": w.cycle}


class CycleGANTrainer:
    """Owns the long-lived training state (models, optimizers, pools, data) and runs the epoch loop."""

    def __init__(
        self,
        cfg: CycleGANConfig,
        out: str | Path,
        resume: Checkpoint | None = None,
        config_changes: dict[str, list[Any]] | None = None,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ) -> None:
        self.cfg, self.log, self.progress = cfg, log, progress
        self.run = RunDir(Path(out))
        self.device = select_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.data = load_unpaired(cfg.data, warn=log, progress=progress)
        torch.manual_seed(cfg.train.seed)
        self.models = build_models(cfg).to(self.device)
        self.opts = build_optimizers(self.models, cfg.train)
        self.ema = make_ema(self.models) if cfg.train.ema_decay > 0 else None
        self.augment = make_augment(cfg.train.augment)
        self.pools = {
            k: ImagePool(cfg.train.pool_size, seed=cfg.train.seed + i) for i, k in enumerate(("D_A", "D_B"))
        }
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0  # progress so far
        self.train_seconds = 0.0  # training wall time of earlier invocations (the budget spans them)
        self.run.create()
        if resume is None and self.run.metrics_path.exists():
            # Left by an earlier attempt that never saved a checkpoint: its records describe no weights.
            self.run.metrics_path.unlink()
        self.metrics = MetricsLog(self.run.metrics_path)
        if resume is not None:
            restore(resume, dict(self.models), self.opts)
            if self.ema is not None:
                if resume.section(f"model/{ema_name('G_A2B')}"):
                    for name in self.ema:
                        load_module_state(resume, name, self.ema[name])
                else:  # EMA switched on at resume: start the average from the current weights
                    self.ema = make_ema(self.models)
            for k, pool in self.pools.items():
                pool.load_state(resume.tensors, f"pool/{k}", self.device)
            self.epoch, self.step_in_epoch = resume.meta["epoch"], resume.meta["step_in_epoch"]
            self.global_step = resume.meta["global_step"]
            self.train_seconds = float(resume.meta.get("train_seconds", 0.0))
            if config_changes:
                # The new recipe takes effect from the next step; log it so curves can be read correctly.
                self.metrics.config_change(self.epoch + 1, self.global_step, config_changes, log)
        self.run.write_config(cfg)
        self.samples_a, self.samples_b = sample_images(self.data, cfg.train.samples)
        self._baselines: dict[str, float] | None = None  # eval baselines, model-independent
        self.tb = None
        if cfg.train.tensorboard:
            from ganlab.core.tensorboard import TensorBoardLogger

            self.tb = TensorBoardLogger(self.run.root)

    # ----------------------------------------------------------------------------------------------
    def save(self, epoch: int, step_in_epoch: int) -> Path:
        """Checkpoint after ``epoch`` complete epochs plus ``step_in_epoch`` steps of the next."""
        tensors: dict[str, torch.Tensor] = {}
        for k, pool in self.pools.items():
            tensors.update(pool.state_tensors(f"pool/{k}"))
        meta = progress_meta(
            "cyclegan", self.cfg, epoch, step_in_epoch, self.global_step, self.budget.elapsed()
        )
        modules = {**dict(self.models), **(dict(self.ema) if self.ema is not None else {})}
        t = self.cfg.train
        path = self.run.save(
            epoch, step_in_epoch, modules, meta, self.opts, tensors, t.keep_checkpoints, t.keep_every
        )
        return path

    def fit(self) -> TrainResult:
        t = self.cfg.train
        total = t.total_epochs
        self.budget = budget = Budget(t.minutes, self.train_seconds)
        if budget.expired() and self.epoch < total:
            self.log(
                f"the run's {t.minutes}-minute budget is already spent; pass a larger --minutes to go on"
            )
            return TrainResult(self.run.root, self.epoch, self.global_step, "budget", None)
        amp = lambda: autocast(self.device, t.precision)  # noqa: E731
        steps = self.data.steps_per_epoch(t.batch_size)
        if t.max_steps_per_epoch:
            steps = min(steps, t.max_steps_per_epoch)
        self.log(
            f"training {self.cfg.preset} on {self.device} | A: {len(self.data.a)} images, B: "
            f"{len(self.data.b)} | {steps} steps/epoch, epochs {self.epoch + 1}..{total} | out: {self.run.root}"
        )
        last_ckpt: Path | None = None
        stopped = "done"
        prev_phase = None
        if self.epoch > 0:
            prev_phase = phase_at(t.schedule, self.epoch, total)[0]
        with StopFlag() as stop:
            while self.epoch < total:
                epoch = self.epoch + 1
                phase_idx, w = phase_at(t.schedule, epoch, total)
                if phase_idx != prev_phase:
                    self.metrics.write(
                        {"type": "phase", "epoch": epoch, "phase": phase_idx, "weights": _weights_dict(w)}
                    )
                    if prev_phase is not None:
                        self.log(f"epoch {epoch}: loss-weight phase {phase_idx} {_weights_dict(w)}")
                    prev_phase = phase_idx
                lr_g, lr_d = set_learning_rates(self.opts, t, epoch)
                self.models.train()
                sums = dict.fromkeys(LOSS_KEYS, 0.0)
                n = 0
                t0 = time.monotonic()
                start = self.step_in_epoch
                bar = tqdm(
                    total=steps,
                    initial=start,
                    desc=f"epoch {epoch}/{total}",
                    unit="step",
                    disable=not self.progress,
                    leave=False,
                    dynamic_ncols=True,
                )
                for batch in self.data.loader(t.seed, epoch, t.batch_size, skip_batches=start):
                    if self.step_in_epoch >= steps:
                        break
                    losses = train_step(
                        self.models,
                        self.opts,
                        batch["A"].to(self.device),
                        batch["B"].to(self.device),
                        w,
                        t.gan_loss,
                        self.pools,
                        amp,
                        self.augment,
                        t.cycle_blur,
                    )
                    if self.ema is not None:
                        update_ema(self.ema, self.models, t.ema_decay, self.global_step)
                    self.step_in_epoch += 1
                    self.global_step += 1
                    n += 1
                    for k in LOSS_KEYS:
                        sums[k] += losses[k]
                    if self.global_step % t.log_every == 0:
                        self.metrics.write(
                            {
                                "type": "step",
                                "epoch": epoch,
                                "step": self.global_step,
                                **losses,
                                "lr_g": lr_g,
                                "lr_d": lr_d,
                            }
                        )
                    postfix = {"G": losses["G_total"], "D": (losses["D_A"] + losses["D_B"]) / 2}
                    if t.minutes is not None:
                        postfix["left"] = f"{max(0.0, budget.left()) / 60:.1f}m"
                    bar.set_postfix(
                        {k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in postfix.items()}
                    )
                    bar.update(1)
                    if stop.requested or budget.expired():
                        break
                bar.close()
                seconds = time.monotonic() - t0
                if self.step_in_epoch < steps:  # stopped inside the epoch
                    stopped = "interrupted" if stop.requested else "budget"
                    last_ckpt = self.save(self.epoch, self.step_in_epoch)
                    self.log(
                        f"stopped ({stopped}) at epoch {epoch} step {self.step_in_epoch}/{steps}; "
                        f"checkpoint {last_ckpt}"
                    )
                    break
                means = {k: v / max(n, 1) for k, v in sums.items()}
                self.epoch, self.step_in_epoch = epoch, 0
                record = {
                    "type": "epoch",
                    "epoch": epoch,
                    "step": self.global_step,
                    "seconds": seconds,
                    "steps": n,
                    **means,
                    "weights": _weights_dict(w),
                    "phase": phase_idx,
                    "lr_g": lr_g,
                    "lr_d": lr_d,
                    "peak_mem_mb": peak_memory_mb(self.device),
                }
                record.update(self.epoch_eval())
                self.metrics.write(record)
                self.models.eval()
                grid = sample_grid(
                    inference_view(self.models, self.ema), self.samples_a, self.samples_b, self.device
                )
                save_image(grid, self.run.samples / f"epoch_{epoch:04d}.png")
                if self.tb is not None:
                    self.tb.log_epoch(record)
                    self.tb.log_image("samples", grid, epoch)
                last_ckpt = self.save(epoch, 0)
                self.log(
                    f"epoch {epoch}/{total} {seconds:.1f}s | G {means['G_total']:.3f} "
                    f"(gan {means['G_gan_A2B']:.3f}/{means['G_gan_B2A']:.3f} cyc {means['cycle_A']:.3f}/"
                    f"{means['cycle_B']:.3f} idt {means['idt_A']:.3f}/{means['idt_B']:.3f}) | D "
                    f"{means['D_A']:.3f}/{means['D_B']:.3f} | w {_weights_dict(w)} | lr {lr_g:.2e}"
                    + "".join(f" | {k[5:]} {record[k]:.2f}" for k in SUMMARY_EVAL if k in record)
                )
                if stop.requested or budget.expired():
                    stopped = "interrupted" if stop.requested else "budget"
                    if self.epoch < total:
                        self.log(f"stopped ({stopped}) after epoch {epoch}; checkpoint {last_ckpt}")
                    break
        if self.tb is not None:
            self.tb.close()
        return TrainResult(self.run.root, self.epoch, self.global_step, stopped, last_ckpt)

    def epoch_eval(self) -> dict[str, float]:
        """Cheap per-epoch evaluation on the run's test images (if any): metric curves over epochs."""
        if not self.cfg.train.eval_images or not self.cfg.data.root:
            return {}
        from ganlab.cyclegan.evaluate import evaluate_models

        self.models.eval()
        # The baselines do not depend on the model: score them once per invocation, then reuse.
        cached = self._baselines
        res = evaluate_models(
            inference_view(self.models, self.ema),
            Path(self.cfg.data.root),
            self.device,
            limit=self.cfg.train.eval_images,
            baselines=cached is None,
        )
        if cached is None:
            self._baselines = {k: v for k, v in res.items() if k.startswith(("identity_", "affine_"))}
        res.update(self._baselines)
        return {f"eval_{k}": v for k, v in res.items() if isinstance(v, float)}
