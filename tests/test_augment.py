"""Differentiable discriminator augmentation (ganlab.train.augment)."""

from __future__ import annotations

import pytest
import torch

from ganlab.config import ConfigError, build_cyclegan_config
from ganlab.train.augment import color, make_augment, translation


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
