"""One CycleGAN update (Zhu et al. 2017, arXiv 1703.10593), the four networks and their optimizers.

The step reads like the paper: generators first (adversarial + cycle + identity terms under the weights
of the current phase), then the two discriminators on real images and pooled fakes. It returns its losses
as floats; all long-lived state (models, optimizers, pools) is passed in, nothing is kept per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ganlab.core.losses import gan_loss, l1
from ganlab.cyclegan.config import CycleGANConfig, Phase, TrainConfig
from ganlab.cyclegan.losses import cycle_l1
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.schedule import lr_factor
from ganlab.models import PatchGANDiscriminator, ResnetGenerator

MODULE_NAMES = ("G_A2B", "G_B2A", "D_A", "D_B")
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
