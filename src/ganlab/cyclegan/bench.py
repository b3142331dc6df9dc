"""CycleGAN steps to benchmark: the training update and the translation, either as the trainer runs
them (the fast path) or written the plain way (fp32, NCHW, eager, one generator call per pass, every
loss read as a Python float each step)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ganlab.core.augment import make_augment
from ganlab.core.device import Amp
from ganlab.cyclegan.config import CycleGANConfig
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.step import build_models, build_optimizers, can_batch, train_step
from ganlab.models.blocks import with_torch_layers


def make_step(
    cfg: CycleGANConfig,
    device: torch.device,
    mode: str,
    precision: str,
    channels_last: bool,
    batched: bool,
    plain: bool = False,
    compile: bool = False,
) -> Callable[[], Any]:
    """A zero-argument call of one training step (``mode`` train) or one translation batch (infer) on
    random (batch, 3, size, size) data in [-1, 1]. ``plain`` builds the networks from torch's own layers
    (models.blocks.with_torch_layers) and reads every loss as a float, as code that prints losses each
    step does."""
    torch.manual_seed(cfg.train.seed)
    models = build_models(cfg).to(device)
    if plain:
        with_torch_layers(models)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models.to(memory_format=fmt)
    shape = (cfg.train.batch_size, 3, cfg.data.size, cfg.data.size)
    a = (torch.rand(shape, device=device) * 2 - 1).contiguous(memory_format=fmt)
    b = (torch.rand(shape, device=device) * 2 - 1).contiguous(memory_format=fmt)
    nets = {k: (torch.compile(m) if compile else m) for k, m in models.items()}

    amp = Amp(device, precision)  # the trainer's autocast and, in fp16, its loss scaling

    if mode == "infer":
        g = nets["G_A2B"].eval()

        @torch.inference_mode()
        def infer() -> torch.Tensor:
            with amp():
                return g(a)

        return infer
    opts = build_optimizers(models, cfg.train)
    pools = {k: ImagePool(cfg.train.pool_size, seed=i) for i, k in enumerate(("D_A", "D_B"))}
    aug, t, w = make_augment(cfg.train.augment), cfg.train, cfg.train.schedule[0]
    batch_g, batch_d = (batched and can_batch(cfg.model.norm), batched and can_batch(cfg.disc.norm))
    wrapped = torch.nn.ModuleDict(nets)

    def step() -> dict[str, Any]:
        losses = train_step(
            wrapped, opts, a, b, w, t.gan_loss, pools, amp, aug, t.cycle_blur, batch_g, batch_d,
            huber_beta=t.huber_beta,
            tint_weight=t.tint_weight,
        )  # fmt: skip
        return {k: float(v) for k, v in losses.items()} if plain else losses

    return step
