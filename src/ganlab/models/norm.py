"""InstanceNorm: nn.InstanceNorm2d (same type, parameters and checkpoints) that keeps a channels_last
input channels_last on the CPU, forward and backward, and sets flat maps to zero in training. Why and
what it gains: docs/performance.md."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# aten's channels_last group-norm kernel takes a slow path for maps under 32 x 32 pixels: 20-60x slower
# than batch norm over each sample alone (PyTorch 2.13 CPU, docs/performance.md), as in a PatchGAN's last
# layers (16 x 16 and 15 x 15 at 128 px).
_GROUP_NORM_MIN_PIXELS = 1024


def _instance_norm_cl(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance norm of a channels_last (N, C, H, W) tensor: y (channels_last), and the (N, C) mean and
    1 / std of each sample's channels."""
    n, c, h, w = x.shape
    if h * w >= _GROUP_NORM_MIN_PIXELS:
        # Group norm with one channel per group is instance norm; its CPU kernel keeps channels_last.
        y, mean, rstd = torch.ops.aten.native_group_norm(x, None, None, n, c, h * w, c, eps)
        return y, mean.view(n, c), rstd.view(n, c)
    y = torch.empty_like(x)  # channels_last, as x; y[i : i + 1] is a channels_last sample
    mean, rstd = x.new_empty((n, c)), x.new_empty((n, c))
    for i in range(n):
        torch.ops.aten.native_batch_norm.out(
            x[i : i + 1], None, None, None, None, True, 0.0, eps,
            out=y[i : i + 1], save_mean=mean[i], save_invstd=rstd[i],
        )  # fmt: skip
    return y, mean, rstd


def _flat_maps(x: torch.Tensor, rstd: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor | None:
    """(N, C) 0.0 for the flat maps of a floating-point (N, C, H, W) x (all values within 1e-5 of each
    other, relative: in bf16 and fp16, equal), 1.0 for the others; None when none is flat.

    A flat-colour crop makes every map of a generator flat. Their instance norm is exactly zero, but the
    kernels' rounding left it at +-1 ulp x 1/sqrt(eps) (fp32: the mean's; bf16: the group-norm kernel's
    x * rstd - mean * rstd); a ReLU after it then passed half the gradient and every norm multiplied
    that by up to 1/sqrt(eps) = 316: the demo's fp32 runs took a 1e19 gradient in a stem conv and their
    colours swung or collapsed, a bf16 run with 4 residual blocks an infinite one (docs/cpu-recipe.md).
    Set to zero, as the constants they are, such maps send no gradient back.

    ``rstd`` (N, C), the norm's 1 / sqrt(var + eps) when at hand, skips the scan of x in the usual case:
    a flat map has a variance near zero (below 3 eps for values up to about 500), so where no map does,
    none is flat (the scan cost the demo's bf16 step 7%)."""
    if not x.is_floating_point():
        return None
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    if rstd is not None and eager_cpu and not bool((rstd.float() * eps**0.5 >= 0.5).any()):
        return None
    # Half types reduced as fp32 (exact): aten's bf16 max over a channels_last map took 2.8-4.1 ms at
    # (8-12, 32, 64, 64), the cast and the fp32 reductions 0.10-0.14 ms.
    xf = x.float() if x.element_size() < 4 else x
    hi, lo = xf.amax(dim=(2, 3)), xf.amin(dim=(2, 3))
    flat = hi - lo <= 1e-5 * torch.maximum(hi.abs(), lo.abs())
    # On a GPU (no host sync) and under torch.compile (no data-dependent branch): always the mask.
    if eager_cpu and not bool(flat.any()):
        return None
    return (~flat).to(x.dtype)


def _instance_norm_cl_train(
    x: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """_instance_norm_cl with the flat maps set to zero (see _flat_maps): y, mean, rstd, keep or None."""
    y, mean, rstd = _instance_norm_cl(x, eps)
    keep = _flat_maps(x, rstd, eps)
    if keep is not None:
        y.mul_(keep[..., None, None])
    return y, mean, rstd, keep


def _instance_norm_cl_backward(
    g: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    keep: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """The input gradient of _instance_norm_cl_train, channels_last. Per sample and channel:
    dx = rstd * (g - mean_hw(g) - xhat * mean_hw(g * xhat)), by batch norm's backward of each sample."""
    g = g.contiguous(memory_format=torch.channels_last)
    dx = torch.empty_like(x)
    for i in range(x.shape[0]):
        dx[i : i + 1] = torch.ops.aten.native_batch_norm_backward(
            g[i : i + 1], x[i : i + 1], None, None, None, mean[i], rstd[i], True, eps, [True, False, False]
        )[0]
    return dx if keep is None else dx.mul_(keep[..., None, None])


class _InstanceNormCLFn(torch.autograd.Function):
    """Instance norm (no affine) of a channels_last (N, C, H, W) tensor that stays channels_last, forward
    and backward. F.instance_norm views its input as (1, N*C, H, W), which copies a channels_last tensor
    to NCHW and back in every layer; that copying ate the gain of channels_last convolutions.

    Instance norm of sample i is batch norm (training statistics, no affine) of the batch of one x[i];
    aten's fused channels_last batch-norm kernels do it in one pass for the statistics and one for the
    result, forward and backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        y, mean, rstd, ctx.keep = _instance_norm_cl_train(x, eps)
        ctx.eps = eps
        ctx.save_for_backward(x, mean, rstd)  # not y: a ReLU(inplace=True) may overwrite it
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, mean, rstd = ctx.saved_tensors  # (N, C, H, W) channels_last; (N, C) statistics
        return _instance_norm_cl_backward(g, x, mean, rstd, ctx.keep, ctx.eps), None


# The same norm as custom ops, for torch.compile: dynamo cannot trace the out= writes into slices of
# _instance_norm_cl (a graph break in every layer, a recompilation for every shape until its limit), and
# inductor's own channels_last instance norm made the demo's compiled step 25% slower. An op is opaque to
# the compiler and runs ganlab's kernels, so compiled and eager steps compute the same values.
@torch.library.custom_op("ganlab::instance_norm_cl", mutates_args=())
def _instance_norm_cl_op(
    x: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    y, mean, rstd, keep = _instance_norm_cl_train(x, eps)
    return y, mean, rstd, mean.new_ones(mean.shape) if keep is None else keep


@_instance_norm_cl_op.register_fake
def _(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    stats = [x.new_empty(x.shape[:2]) for _ in range(3)]
    return torch.empty_like(x), *stats


@torch.library.custom_op("ganlab::instance_norm_cl_backward", mutates_args=())
def _instance_norm_cl_backward_op(
    g: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, keep: torch.Tensor, eps: float
) -> torch.Tensor:
    return _instance_norm_cl_backward(g, x, mean, rstd, keep, eps)


@_instance_norm_cl_backward_op.register_fake
def _(g: torch.Tensor, x: torch.Tensor, *_: Any) -> torch.Tensor:
    return torch.empty_like(x)


def _op_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.save_for_backward(inputs[0], *output[1:])
    ctx.eps = inputs[1]


def _op_backward(ctx: Any, g: torch.Tensor, *_: Any) -> tuple[torch.Tensor, None]:
    return _instance_norm_cl_backward_op(g, *ctx.saved_tensors, ctx.eps), None


_instance_norm_cl_op.register_autograd(_op_backward, setup_context=_op_setup)


class InstanceNorm(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same type and state for anything that inspects the layers) that keeps a
    channels_last input channels_last (see _InstanceNormCLFn) and, in training, sets flat maps to zero
    (see _flat_maps); other inputs take the usual path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if self.affine or self.track_running_stats or x.dim() != 4:
            return super().forward(x)
        train = torch.is_grad_enabled() and x.requires_grad
        if train and cl and torch.compiler.is_compiling():
            return _instance_norm_cl_op(x, self.eps)[0]
        if train and cl:
            return _InstanceNormCLFn.apply(x, self.eps)
        if train and not torch.jit.is_tracing():
            # NCHW training: flat maps set to zero (see _flat_maps).
            y, keep = self._nchw_train(x)
            return y if keep is None else y * keep[..., None, None]
        if not cl or torch.compiler.is_compiling():  # compiled: inductor's norm (no backward to keep)
            return super().forward(x)
        return _instance_norm_cl(x, self.eps)[0]

    def _nchw_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y and the flat-map mask of an NCHW (or other non-channels_last) input in training. On the CPU
        by group norm with one channel per group, which is instance norm: F.instance_norm's batch norm over
        (1, N*C, H, W) took 2-4x as long, forward + backward, in fp32 (AVX2 and AVX-512 kernels) and up
        to 2.5x in bf16 (docs/performance.md); its statistics also spare _flat_maps the scan of x."""
        if x.device.type != "cpu":
            return super().forward(x), _flat_maps(x)
        n, c, h, w = x.shape
        y, _, rstd = torch.ops.aten.native_group_norm(x, None, None, n, c, h * w, c, self.eps)
        return y, _flat_maps(x, rstd.view(n, c), self.eps)
