"""State dicts of the reference CycleGAN code (pytorch-CycleGAN-and-pix2pix, Zhu et al. 2017) mapped onto
ganlab's modules, with the architecture read off the tensor names and shapes.

Reference ``ResnetGenerator`` (``--netG resnet_9blocks`` / ``resnet_6blocks``), one ``model``
nn.Sequential: 0 reflect pad 3, 1 conv7x7 (3 -> ngf), 2 norm, 3 ReLU; then per downsampling three
entries (conv3x3 stride 2, norm, ReLU: 4, 7); then the residual blocks (10, 11, ...), each a
``conv_block`` Sequential [pad, conv3x3 (1), norm, ReLU, (Dropout), pad, conv3x3 (5, or 6 with
dropout), norm]; then per upsampling ConvTranspose2d(k3, s2, p1, output_padding 1), norm, ReLU; then
reflect pad 3, conv7x7 -> 3, Tanh (19, 22 and 26 for 9 blocks). Convs carry a bias when the norm is
InstanceNorm (affine=False) and none with BatchNorm. ganlab's ResnetGenerator with
``upsample="convtranspose"`` and ``down_padding="zeros"`` has the same modules at the same indices
(``net`` for ``model``, ``body`` for ``conv_block``), so the map is a renaming.

Reference ``NLayerDiscriminator`` (``--netD basic``, n_layers 3; ``--netD n_layers``): conv4x4 stride 2
(0), LeakyReLU; per further layer conv4x4, norm, LeakyReLU (2, 5, ...; stride 2 except the last, which
has stride 1); conv4x4 -> 1. That is ganlab's PatchGAN with ``first_stride=2``, no antialias and no
spectral norm, again index for index.

Files written by old PyTorch versions carry ``running_mean``/``running_var``/``num_batches_tracked``
for InstanceNorm layers that do not use them (reference issue #318): they are dropped.
"""

from __future__ import annotations

import re
from typing import TypeVar

import torch
from torch import nn

from ganlab.core.errors import CheckpointError
from ganlab.models.discriminator import PatchGANConfig, PatchGANDiscriminator
from ganlab.models.generator import GeneratorConfig, ResnetGenerator

StateDict = dict[str, torch.Tensor]
M = TypeVar("M", bound=nn.Module)

REFERENCE_DROPOUT = 0.5  # the reference's nn.Dropout(0.5) in every residual block (--no_dropout off)
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


class ReferenceLayoutError(CheckpointError):
    """A state dict is not in a layout of the reference CycleGAN code that ganlab can represent."""


def _shape(sd: StateDict, key: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise ReferenceLayoutError(f"{what}: tensor {key} is missing")
    return tuple(sd[key].shape)


def _layer_indices(sd: StateDict) -> set[int]:
    return {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.", k))}


def _drop_unused_norm_stats(sd: StateDict, norm: str) -> StateDict:
    """Without BatchNorm no layer keeps running statistics: drop the stale InstanceNorm ones."""
    if norm == "batch":
        return dict(sd)
    return {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in _NORM_STATS}


def _not_resnet_hint(sd: StateDict) -> str:
    keys = sorted(sd)
    if any(k.startswith("model.model.") for k in keys):
        return " (it looks like the reference's U-Net generator, unet_256/unet_128, which ganlab has not)"
    if any(k.startswith("net.") for k in keys):
        return " (it looks like a pixel discriminator, --netD pixel, which ganlab has not)"
    return f" (its first tensors: {', '.join(keys[:4])})"


def generator_config(sd: StateDict) -> GeneratorConfig:
    """The GeneratorConfig of a reference ResnetGenerator state dict (blocks, width, channels, norm,
    dropout, number of down/up samplings) read from its tensor names and shapes."""
    what = "reference ResnetGenerator"
    if "model.1.weight" not in sd or not any(".conv_block." in k for k in sd):
        raise ReferenceLayoutError(f"not a reference ResnetGenerator state dict{_not_resnet_hint(sd)}")
    ngf, in_ch, kh, _ = _shape(sd, "model.1.weight", what)
    if kh != 7:
        raise ReferenceLayoutError(f"{what}: model.1.weight has a {kh}x{kh} kernel, expected the 7x7 stem")
    blocks = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    first = blocks[0]
    if blocks != list(range(first, first + len(blocks))) or (first - 4) % 3:
        raise ReferenceLayoutError(f"{what}: residual blocks at model.{blocks} are not one consecutive run")
    n_down = (first - 4) // 3  # stem (4 entries) + 3 per downsampling come before the first block
    # With dropout the second conv moves from 5 to 6 (with BatchNorm, 6 is otherwise that norm's weight).
    second = sd.get(f"model.{first}.conv_block.6.weight")
    dropout = second is not None and second.dim() == 4
    norm = "batch" if "model.2.weight" in sd else "instance"
    last = first + len(blocks) + 3 * n_down + 1
    out_ch = _shape(sd, f"model.{last}.weight", what)[0]
    extra = sorted(i for i in _layer_indices(sd) if i > last)
    if extra:
        raise ReferenceLayoutError(f"{what}: unexpected layers after the last conv (model.{extra[0]})")
    return GeneratorConfig(
        hidden=ngf,
        n_down=n_down,
        n_residual=len(blocks),
        upsample="convtranspose",
        norm=norm,
        dropout=REFERENCE_DROPOUT if dropout else 0.0,
        global_skip=False,
        down_padding="zeros",
        in_channels=in_ch,
        out_channels=out_ch,
    )


def discriminator_config(sd: StateDict) -> PatchGANConfig:
    """The PatchGANConfig of a reference NLayerDiscriminator state dict (ndf, n_layers, norm)."""
    what = "reference NLayerDiscriminator"
    if "model.0.weight" not in sd or any(".conv_block." in k for k in sd):
        raise ReferenceLayoutError(f"not a reference NLayerDiscriminator state dict{_not_resnet_hint(sd)}")
    convs = sorted(i for i in _layer_indices(sd) if sd.get(f"model.{i}.weight", torch.empty(0)).dim() == 4)
    ndf, in_ch, kh, _ = _shape(sd, "model.0.weight", what)
    n_layers = len(convs) - 2
    expected = [0] + [2 + 3 * i for i in range(n_layers + 1)]
    if kh != 4 or n_layers < 1 or convs != expected:
        raise ReferenceLayoutError(
            f"{what}: conv layers at model.{convs}, expected 4x4 convs at model.{expected[:4]}..."
        )
    return PatchGANConfig(
        hidden=ndf,
        n_layers=n_layers,
        norm="batch" if "model.3.weight" in sd else "instance",
        spectral_norm=False,
        antialias=False,
        first_stride=2,
        in_channels=in_ch,
    )


def _renamed(sd: StateDict, norm: str) -> StateDict:
    """Reference keys -> ganlab keys: ``model.`` -> ``net.``, ``.conv_block.`` -> ``.body.``."""
    out = {}
    for k, v in _drop_unused_norm_stats(sd, norm).items():
        out["net." + k.removeprefix("model.").replace(".conv_block.", ".body.")] = v
    return out


def _check_fits(own: StateDict, mapped: StateDict, what: str) -> None:
    for k, v in own.items():
        if k not in mapped:
            raise ReferenceLayoutError(f"{what}: tensor {k} (shape {tuple(v.shape)}) has no counterpart")
        if tuple(mapped[k].shape) != tuple(v.shape):
            raise ReferenceLayoutError(
                f"{what}: tensor {k} has shape {tuple(mapped[k].shape)}, expected {tuple(v.shape)}"
            )
    extra = sorted(set(mapped) - set(own))
    if extra:
        raise ReferenceLayoutError(f"{what}: tensor {extra[0]} does not fit the inferred architecture")


def _as_float(sd: StateDict) -> StateDict:
    """fp32 weights (published files may be fp16); integer buffers (BatchNorm's count) kept."""
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _load(model: M, sd: StateDict, norm: str, what: str) -> M:
    """``model`` holding the renamed reference weights ``sd``; a clear error when they do not fit."""
    mapped = _renamed(sd, norm)
    _check_fits(model.state_dict(), mapped, what)
    model.load_state_dict(_as_float(mapped))
    return model


def load_generator(sd: StateDict) -> ResnetGenerator:
    """A ganlab ResnetGenerator holding the weights of a reference ResnetGenerator state dict."""
    cfg = generator_config(sd)
    return _load(ResnetGenerator(cfg), sd, cfg.norm, "reference ResnetGenerator").eval()


def load_discriminator(sd: StateDict) -> PatchGANDiscriminator:
    """A ganlab PatchGANDiscriminator holding the weights of a reference NLayerDiscriminator."""
    cfg = discriminator_config(sd)
    return _load(PatchGANDiscriminator(cfg), sd, cfg.norm, "reference NLayerDiscriminator")
