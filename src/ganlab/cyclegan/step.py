"""One CycleGAN update (Zhu et al. 2017, arXiv 1703.10593), the four networks and their optimizers.

The step reads like the paper: generators first (adversarial + cycle + identity terms under the weights
of the current phase), then the two discriminators on real images and pooled fakes. It returns its losses
as floats; all long-lived state (models, optimizers, pools) is passed in, nothing is kept per step.
The optimizers step last, after one check that every loss is finite (``ganlab.core.nonfinite``): the
discriminators see detached fakes and their own weights, so deferring the generator's update past their
passes changes nothing, and a NaN or Inf anywhere skips the whole update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ganlab.core.device import Amp, native_bf16, use_channels_last
from ganlab.core.losses import gan_loss
from ganlab.core.nonfinite import check_finite
from ganlab.cyclegan.config import CycleGANConfig, Phase, TrainConfig
from ganlab.cyclegan.losses import recon_loss, tint_loss
from ganlab.cyclegan.pool import ImagePool
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
    opts: dict[str, torch.optim.Optimizer], t: TrainConfig, f: float
) -> tuple[float, float]:
    """Set lr x ``f`` (the schedule's factor; the coefficients and betas may change at resume)."""
    lr_g, lr_d = t.lr * t.gen_lr_coef * f, t.lr * t.disc_lr_coef * f
    for name, opt in opts.items():
        for g in opt.param_groups:
            g["lr"] = lr_g if name == "G" else lr_d
            g["betas"] = (t.beta1, t.beta2)
    return lr_g, lr_d


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def can_batch(norm: str) -> bool:
    """Whether several inputs may share one call of a network with this norm: exact for per-sample norms
    (instance, none), not for batch norm, whose statistics would mix the inputs."""
    return norm != "batch"


def train_step(
    models: nn.ModuleDict,
    opts: dict[str, torch.optim.Optimizer],
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    w: Phase,
    gan_kind: str,
    pools: dict[str, ImagePool],
    amp: Amp | Callable[[], Any],
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cycle_blur: float = 0.0,
    batch_g: bool = False,
    batch_d: bool = False,
    *,
    huber_beta: float = 0.0,
    tint_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One CycleGAN update. real_a, real_b: (N, 3, S, S) in [-1, 1]. Returns every loss term as a detached
    0-d tensor (read them when logging: reading each one every step waits for the device).

    ``augment`` (ganlab.core.augment) transforms every discriminator input, real and fake alike. Options of
    the terms (ganlab.cyclegan.losses): ``cycle_blur`` (low-pass cycle), ``huber_beta`` (Huber cycle and
    identity), ``tint_weight`` (colour-cast term). ``batch_g`` / ``batch_d`` run the passes that share a
    network's weights as one call on the concatenated inputs; :func:`can_batch` says when that is exact."""
    g_ab, g_ba, d_a, d_b = (models[k] for k in MODULE_NAMES)
    amp = Amp.of(amp)  # autocast; in fp16 also the loss scaling
    aug = augment or (lambda x: x)
    n, identity = real_a.shape[0], w.identity > 0

    # --- Generators: fool the discriminators, reconstruct through the cycle, keep in-domain images.
    _requires_grad(d_a, False)
    _requires_grad(d_b, False)
    opts["G"].zero_grad(set_to_none=True)
    with amp():
        if batch_g:
            # G_A2B on (real A, real B): (2N, 3, S, S) -> fake B and the identity of B; G_B2A then on
            # (real B, fake B, real A): fake A, the A -> B -> A reconstruction and the identity of A.
            fake_b, idt_b = _split(g_ab(torch.cat([real_a, real_b] if identity else [real_a])), n, 2)
            fake_a, rec_a, idt_a = _split(
                g_ba(torch.cat([real_b, fake_b, real_a][: 3 if identity else 2])), n, 3
            )
        else:
            fake_b = g_ab(real_a)  # A -> B
            rec_a = g_ba(fake_b)  # A -> B -> A
            fake_a = g_ba(real_b)  # B -> A
            # An image already in the target domain should pass unchanged (colour preservation).
            idt_a, idt_b = (g_ba(real_a), g_ab(real_b)) if identity else (None, None)
        rec_b = g_ab(fake_a)  # B -> A -> B
        loss_gan_ab = gan_loss(gan_kind, d_b(aug(fake_b)), True, for_discriminator=False)
        loss_gan_ba = gan_loss(gan_kind, d_a(aug(fake_a)), True, for_discriminator=False)
        loss_cyc_a = recon_loss(rec_a, real_a, cycle_blur, huber_beta)
        loss_cyc_b = recon_loss(rec_b, real_b, cycle_blur, huber_beta)
        zero = torch.zeros((), device=real_a.device)
        loss_idt_a = recon_loss(idt_a, real_a, 0.0, huber_beta) if idt_a is not None else zero
        loss_idt_b = recon_loss(idt_b, real_b, 0.0, huber_beta) if idt_b is not None else zero
        loss_tint = tint_loss(fake_b, real_a) + tint_loss(fake_a, real_b) if tint_weight > 0 else zero
    loss_g = (
        w.gan * (loss_gan_ab + loss_gan_ba)
        + w.cycle * (loss_cyc_a + loss_cyc_b)
        + w.identity * (loss_idt_a + loss_idt_b)
        + tint_weight * loss_tint
    )
    amp.backward(loss_g)

    # --- Discriminators: real vs (pooled) fake.
    d_losses = discriminator_step(
        models, opts, (real_a, real_b), (fake_a, fake_b), gan_kind, pools, amp, aug, batch_d
    )

    out = {"G_gan_A2B": loss_gan_ab, "G_gan_B2A": loss_gan_ba, "cycle_A": loss_cyc_a, "cycle_B": loss_cyc_b}
    out |= {"idt_A": loss_idt_a, "idt_B": loss_idt_b, **({"tint": loss_tint} if tint_weight > 0 else {})}
    out = {k: v.detach() for k, v in {**out, "G_total": loss_g, **d_losses}.items()}
    # Raises NonFiniteLoss before any optimizer applies this step (fp16: the GradScaler checks gradients).
    check_finite(out, None if amp.scaler is not None else {k: models[k].parameters() for k in MODULE_NAMES})
    amp.step(opts[name] for name in ("G", "D_A", "D_B"))
    return out


def discriminator_step(
    models: nn.ModuleDict,
    opts: dict[str, torch.optim.Optimizer],
    reals: tuple[torch.Tensor, torch.Tensor],
    fakes: tuple[torch.Tensor, torch.Tensor],
    gan_kind: str,
    pools: dict[str, ImagePool],
    amp: Amp,
    aug: Callable[[torch.Tensor], torch.Tensor],
    batch_d: bool,
) -> dict[str, torch.Tensor]:
    """Gradients of D_A on (real A, pooled fake A) and D_B on (real B, pooled fake B) (the caller steps
    their optimizers); each loss is halved so D learns at half G's rate (reference). reals, fakes: (A, B)
    pairs of (N, 3, S, S)."""
    n = reals[0].shape[0]
    d_losses = {}
    for name, real, fake in (("D_A", reals[0], fakes[0]), ("D_B", reals[1], fakes[1])):
        disc = models[name]
        _requires_grad(disc, True)
        opts[name].zero_grad(set_to_none=True)
        pooled = pools[name].query(fake.detach())
        with amp():
            if batch_d:
                real_score, fake_score = disc(aug(torch.cat([real, pooled]))).split(n)
            else:
                real_score, fake_score = disc(aug(real)), disc(aug(pooled))
            loss_d = 0.5 * (gan_loss(gan_kind, real_score, True) + gan_loss(gan_kind, fake_score, False))
        amp.backward(loss_d)
        d_losses[name] = loss_d
    return d_losses


def _split(x: torch.Tensor, n: int, k: int) -> list[torch.Tensor | None]:
    """(j*N, ...) -> j chunks of N, padded with None up to ``k`` (the identity pass when it is off)."""
    parts: list[torch.Tensor | None] = list(x.split(n))
    return parts + [None] * (k - len(parts))


def fast_settings(cfg: CycleGANConfig, device: torch.device) -> dict[str, Any]:
    """What the trainer does on ``device``: the layout of ``train.memory_format`` (auto: channels_last on
    CUDA and AVX-512 CPUs; with the layout-keeping ReflectionPad and InstanceNorm of ganlab.models
    it was faster for every step measured there, bf16 and fp32); the passes that share weights batched
    where the norm allows it, on CUDA and on a CPU training in bf16 (4-8% faster there at batch 1 and in
    the demo's step, the same at 128 px batch 4; in fp32 no faster; docs/performance.md)."""
    p = cfg.train.precision
    half = p in ("bf16", "fp16") or (p == "auto" and native_bf16(device))
    batch = device.type == "cuda" or half
    return {
        "channels_last": use_channels_last(cfg.train.memory_format, device),
        "batch_g": batch and can_batch(cfg.model.norm),
        "batch_d": batch and can_batch(cfg.disc.norm),
    }
