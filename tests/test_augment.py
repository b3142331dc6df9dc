"""Differentiable discriminator augmentation (ganlab.core.augment)."""

from __future__ import annotations

import pytest
import torch

from ganlab.core.augment import channels, color, make_augment, rot90, translation
from ganlab.core.config import ConfigError
from ganlab.cyclegan.config import build_cyclegan_config


def test_translation_shifts_each_image_and_fills_with_zeros() -> None:
    torch.manual_seed(0)
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8).repeat(16, 3, 1, 1)
    y = translation(x, ratio=0.25)  # shifts of up to 2 px each way
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x[0, 0], (2, 2, 2, 2))
    shifts = {(dy, dx): padded[dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)}
    seen = set()
    for img in y[:, 0]:
        match = [k for k, v in shifts.items() if torch.equal(img, v)]
        assert len(match) == 1  # exactly a zero-filled shifted copy
        seen.add(match[0])
    assert len(seen) > 1  # per-image shifts differ


def test_color_is_per_image_and_keeps_gradients() -> None:
    torch.manual_seed(0)
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_()
    y = color(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y[0] - x[0], y[1] - x[1])  # different random draws per image
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_make_augment_composes_and_rejects_unknown() -> None:
    assert make_augment([]) is None
    aug = make_augment(["color", "translation"])
    x = torch.zeros(2, 3, 8, 8, requires_grad=True)
    aug(x).mean().backward()
    assert x.grad is not None
    with pytest.raises(ValueError, match="known"):
        make_augment(["cutout"])
    with pytest.raises(ConfigError, match="augment"):
        build_cyclegan_config(overrides={"train": {"augment": ["blur"]}})


def test_channels_permutes_each_images_channels_and_keeps_gradients() -> None:
    torch.manual_seed(0)
    # Channel k of every image is the constant k, so each output image spells out its permutation.
    x = torch.arange(3.0).view(1, 3, 1, 1).expand(64, 3, 4, 4).clone().requires_grad_()
    y = channels(x)
    orders = {tuple(int(v) for v in img[:, 0, 0]) for img in y.detach()}
    assert all(sorted(o) == [0, 1, 2] for o in orders)  # a permutation, nothing mixed or lost
    assert len(orders) == 6  # 64 draws reach all 3! orders
    y.pow(2).sum().backward()
    assert torch.equal(x.grad, 2 * x.detach())  # a pure gather: gradients route back unchanged
    # The input's memory layout is kept (a channels_last discriminator runs slower on NCHW input).
    cl = torch.rand(2, 3, 5, 4).contiguous(memory_format=torch.channels_last)
    assert channels(cl).is_contiguous(memory_format=torch.channels_last) and channels(cl[:, :, :2]).shape == (
        2,
        3,
        2,
        4,
    )


def test_rot90_rotates_each_image_exactly() -> None:
    torch.manual_seed(0)
    x = torch.rand(32, 3, 6, 6)
    y = rot90(x)
    turns = []
    for a, b in zip(x, y):
        match = [k for k in range(4) if torch.equal(torch.rot90(a, k, dims=(1, 2)), b)]
        assert len(match) == 1
        turns.append(match[0])
    assert set(turns) == {0, 1, 2, 3}  # per-image draws cover every rotation
    with pytest.raises(ValueError, match="square"):
        rot90(torch.rand(2, 3, 4, 6))


def test_probability_applies_a_transform_to_a_share_of_the_images() -> None:
    torch.manual_seed(0)
    x = torch.rand(2000, 3, 4, 4) * 2 - 1
    x[:, 0] = 0.9  # a red channel that any permutation but the identity moves
    y = make_augment(["channels:0.5"])(x)
    changed = (y != x).flatten(1).any(1).float().mean().item()
    assert 0.35 < changed < 0.5  # half the images drawn, 5 of the 6 orders move the red channel
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        make_augment(["channels:1.5"])
    with pytest.raises(ValueError, match="unknown augmentation 'hue'"):
        make_augment(["hue:0.5"])


def test_dequantize_fills_one_8bit_step_and_keeps_gradients() -> None:
    """Values move by at most half an 8-bit level either way, differently per value, so 8-bit images
    become continuous; the gradient passes unchanged."""
    from ganlab.core.augment import dequantize

    levels = torch.randint(0, 256, (4, 3, 16, 16)).float() * (2 / 255) - 1  # an 8-bit image in [-1, 1]
    x = levels.clone().requires_grad_()
    y = dequantize(x)
    step = (y - levels).detach() * 255 / 2  # in 8-bit levels
    assert step.abs().max() <= 0.5 + 1e-5 and step.std() > 0.2
    assert len(torch.unique(y.detach())) > 10 * 256  # no longer 256 levels
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
