"""Batch norm over the global batch of a data-parallel run (every process's samples), on CPUs as on GPUs.

``torch.nn.SyncBatchNorm`` runs on GPUs only; :class:`SyncBatchNorm2d` is the same computation written
with autograd-aware all-reduces, so it also runs under gloo on CPUs.
:func:`convert_sync_batchnorm` picks torch's on CUDA and this one elsewhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes whose gradient is the sum of the processes' gradients (each process's
    loss depends on the sum, so every process's input gets the gradient of all the losses)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch. Its backward reduces the
    gradient of the statistics over the processes too, so after DDP's gradient average every process
    holds the gradient one process with the whole batch would have. Outside training, or in a single
    process, it is plain BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        training = self.training or self.running_mean is None
        if not (training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        x32 = x.float()
        count = torch.full((1,), x.numel() // c, dtype=torch.float32, device=x.device)
        # Two passes (mean, then the mean squared deviation) for the accuracy F.batch_norm has.
        total = all_reduce(torch.cat([x32.sum((0, 2, 3)), count]))  # (C + 1,) summed over processes
        n = total[c]
        mean = total[:c] / n
        dev = x32 - mean.view(1, c, 1, 1)
        var = all_reduce(dev.pow(2).sum((0, 2, 3))) / n  # biased, as batch norm normalises with
        if self.training and self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach(), float(n.detach()))
        y = dev * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean, alpha=m)
        # The running variance is the unbiased one, as in F.batch_norm.
        self.running_var.mul_(1 - m).add_(var * (n / max(n - 1.0, 1.0)), alpha=m)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` (in place; the returned module is ``module`` unless it is
    itself a batch norm) by a synchronous one that shares its parameters and buffers, so optimizers built
    before and checkpoints keep working."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, (SyncBatchNorm2d, nn.SyncBatchNorm)):
        param = next(module.parameters(), None)
        if param is not None and param.device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(module)
        out = SyncBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        out.to(module.running_mean.device if module.running_mean is not None else "cpu")
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module
