"""One SRResNet / SRGAN update (Ledig et al. 2017, arXiv 1609.04802), its losses and the model set.

Stage ``pixel``: the generator on an L1 or MSE pixel loss. Stage ``gan``: the generator on content loss
(pixel and/or VGG19 phi_5,4 perceptual MSE) plus 1e-3 x adversarial loss (paper eq. 3), then the
discriminator on real HR vs generated SR. :func:`train_step` reads top to bottom in that order and
returns its losses as tensors; all long-lived state is passed in, nothing is kept per step. The
optimizers step last, after one check that every loss is finite (``ganlab.core.nonfinite``): the
discriminator sees the detached SR output, so deferring the generator's update past its pass changes
nothing, and a NaN or Inf anywhere skips the whole update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.core.device import Amp
from ganlab.core.losses import gan_loss
from ganlab.core.nonfinite import check_finite
from ganlab.models.sr import SRDiscriminator, SRResNet
from ganlab.models.vgg import VGG19Features, load_vgg19_features
from ganlab.sr.config import SRConfig, SRTrainConfig

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
    m: SRModels,
    lr_img: torch.Tensor,
    hr_img: torch.Tensor,
    t: SRTrainConfig,
    amp: Amp | Callable[[], Any],
) -> dict[str, torch.Tensor]:
    """One update. lr_img: (N, 3, S/s, S/s), hr_img: (N, 3, S, S), both in [0, 1]. Returns every loss as
    a detached 0-d tensor (read them when logging: reading each one every step waits for the device)."""
    gan = t.stage == "gan"
    amp = Amp.of(amp)  # autocast; in fp16 also the loss scaling
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
            # RaGAN's generator term also needs D's opinion of the real images (no gradient to D here).
            real_score = d(hr_img).float().detach() if t.adv_kind == "relativistic" else fake_score
        out["adv_g"] = adversarial_losses(t.adv_kind, real_score, fake_score, for_discriminator=False)
        loss_g = loss_g + t.adv_weight * out["adv_g"]
    out["loss_g"] = loss_g
    amp.backward(loss_g)
    if t.grad_clip is not None:
        amp.unscale(m.opt_g)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(m.generator.parameters(), t.grad_clip)

    # --- Discriminator: real HR vs the (detached) SR output.
    if gan:
        assert d is not None and m.opt_d is not None
        d.requires_grad_(True)
        m.opt_d.zero_grad(set_to_none=True)
        with amp():
            real_score, fake_score = d(hr_img).float(), d(sr.detach()).float()
        out["loss_d"] = adversarial_losses(t.adv_kind, real_score, fake_score, for_discriminator=True)
        out["d_real"], out["d_fake"] = real_score.mean(), fake_score.mean()
        amp.backward(out["loss_d"])
    out = {k: v.detach() for k, v in out.items()}
    # Raises NonFiniteLoss before any optimizer applies this step (fp16: the GradScaler checks gradients).
    nets = {"G": m.generator, **({"D": d} if gan and d is not None else {})}
    check_finite(out, None if amp.scaler is not None else {k: v.parameters() for k, v in nets.items()})
    amp.step(m.optimizers().values())
    return out


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


def fast_settings(cfg: SRConfig, device: torch.device) -> dict[str, Any]:
    """What the trainer does on ``device``: channels_last on CPU and CUDA (NHWC is faster for these narrow
    convolutions in oneDNN and on tensor cores)."""
    return {"channels_last": device.type in ("cpu", "cuda"), "batch_g": False, "batch_d": False}
