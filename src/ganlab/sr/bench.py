"""Super-resolution steps to benchmark: the training update and the upscale, as the trainer runs them
or written the plain way (fp32, NCHW, every loss read as a Python float each step)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ganlab.core.device import Amp
from ganlab.models.blocks import with_torch_layers
from ganlab.sr.config import SRConfig
from ganlab.sr.step import build_models, train_step


def make_step(
    cfg: SRConfig,
    device: torch.device,
    mode: str,
    precision: str,
    channels_last: bool,
    batched: bool,
    plain: bool = False,
    compile: bool = False,
) -> Callable[[], Any]:
    """A zero-argument call of one training step (``mode`` train) or one upscale batch (infer) on random
    HR crops of (batch, 3, size, size) and their LR (size / scale). ``plain`` builds the networks from
    torch's own layers (models.blocks.with_torch_layers) and reads every loss as a float."""
    torch.manual_seed(cfg.train.seed)
    models = build_models(cfg, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in models.modules().values():
        if plain:
            with_torch_layers(m)
        m.to(memory_format=fmt)
    n, s, scale = cfg.train.batch_size, cfg.data.size, cfg.model.scale
    hr = torch.rand(n, 3, s, s, device=device).contiguous(memory_format=fmt)
    lr = torch.rand(n, 3, s // scale, s // scale, device=device).contiguous(memory_format=fmt)
    if compile:
        models.generator = torch.compile(models.generator)  # type: ignore[assignment]

    amp = Amp(device, precision)  # the trainer's autocast and, in fp16, its loss scaling

    if mode == "infer":
        g = models.generator.eval()

        @torch.inference_mode()
        def infer() -> torch.Tensor:
            with amp():
                return g(lr)

        return infer

    def step() -> dict[str, Any]:
        losses = train_step(models, lr, hr, cfg.train, amp)
        return {k: float(v) for k, v in losses.items()} if plain else losses

    return step
