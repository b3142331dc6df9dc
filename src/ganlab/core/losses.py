"""GAN losses on raw discriminator scores and the L1 distance, shared by both tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_LOSSES = ("lsgan", "vanilla", "hinge")


def gan_loss(kind: str, pred: torch.Tensor, real: bool, for_discriminator: bool = True) -> torch.Tensor:
    """Loss of scores ``pred`` (any shape) against the label real/fake.

    lsgan: least squares (Mao et al. 2017, arXiv 1611.04076), MSE to 1 or 0.
    vanilla: binary cross-entropy with logits (Goodfellow et al. 2014).
    hinge: D: relu(1 - pred) on real, relu(1 + pred) on fake; G: -pred (Lim & Ye 2017).
    """
    pred = pred.float()
    if kind == "lsgan":
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, 1.0 if real else 0.0))
    if kind == "hinge":
        if not for_discriminator:
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
    raise ValueError(f"unknown gan loss {kind!r}; known: {', '.join(GAN_LOSSES)}")


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(a.float(), b.float())
