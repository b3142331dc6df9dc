"""SRResNet / SRGAN discriminator / VGG19 feature extractor: shapes, gradients, presets, weight files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ganlab.models.registry import UnknownPresetError, preset_config, preset_names
from ganlab.models.sr import SRDiscriminator, SRDiscriminatorConfig, SRResNet, SRResNetConfig
from ganlab.models.vgg import CONV5_4, VGG19Features, VGGWeightsError, load_vgg19_features
from ganlab.sr.step import perceptual_loss

TINY_D = SRDiscriminatorConfig(hidden=4, dense=16, pool=2)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_srresnet_shapes_odd_sizes(scale: int, norm: str) -> None:
    g = SRResNet(SRResNetConfig(scale=scale, hidden=8, n_residual=2, norm=norm))
    y = g(torch.rand(2, 3, 13, 17))
    assert y.shape == (2, 3, 13 * scale, 17 * scale)
    # Inputs smaller than the 9x9 convs' reflect padding still work.
    assert g(torch.rand(1, 3, 2, 3)).shape == (1, 3, 2 * scale, 3 * scale)


def test_icnr_init_gives_nearest_neighbour_subpixels() -> None:
    g = SRResNet(SRResNetConfig(scale=2, hidden=8, n_residual=1, icnr=True))
    up = g.upsample[0][0]  # PixelShuffleUp
    y = up(torch.rand(1, 8, 5, 5))  # (1, 8, 10, 10): the 2x2 sub-pixels of every output pixel are equal
    assert torch.allclose(y[..., ::2, ::2], y[..., 1::2, 1::2])


def test_every_parameter_gets_a_gradient() -> None:
    g = SRResNet(SRResNetConfig(scale=2, hidden=8, n_residual=2, norm="batch"))
    d = SRDiscriminator(TINY_D)
    sr = g(torch.rand(2, 3, 12, 12))
    d(sr).mean().backward()
    for name, module in (("generator", g), ("discriminator", d)):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


@pytest.mark.parametrize("size", [16, 24, 40, 96, 100])
def test_discriminator_accepts_any_crop(size: int) -> None:
    d = SRDiscriminator(TINY_D)
    assert d(torch.rand(2, 3, size, size)).shape == (2, 1)


def test_paper_sized_models() -> None:
    cfg = preset_config("srresnet", "sr")
    assert (cfg.hidden, cfg.n_residual, cfg.norm, cfg.scale) == (64, 16, "batch", 4)
    # The paper's discriminator at its 96 px crops: 4 stride-2 convs -> 6x6, so the 6x6 pool is the identity.
    d = SRDiscriminator(SRDiscriminatorConfig())
    assert d.features(torch.rand(1, 3, 96, 96)).shape == (1, 512, 6, 6)


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(UnknownPresetError) as e:
        preset_config("srresnet-huge", "sr")
    for name in preset_names("sr"):
        assert name in str(e.value)
    assert {"srresnet", "srresnet-small"} <= set(preset_names("sr"))


# ------------------------------------------------------------------------------------------- VGG19

TORCHVISION_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, torch.Tensor]:
    """A random state_dict in torchvision's full vgg19 layout (features + classifier)."""
    torch.manual_seed(0)
    sd = {k: torch.randn_like(v) * 0.05 for k, v in VGG19Features().state_dict().items()}
    # torchvision files also hold the classifier; it must be ignored. Small stand-ins keep the test fast.
    sd["classifier.0.weight"] = torch.zeros(8, 4)
    sd["classifier.0.bias"] = torch.zeros(8)
    return sd


def test_vgg_keys_follow_torchvision_layout(vgg_state: dict[str, torch.Tensor]) -> None:
    keys = {k for k in vgg_state if k.startswith("features.")}
    assert keys == {f"features.{i}.{p}" for i in TORCHVISION_CONVS for p in ("weight", "bias")}
    assert vgg_state[f"features.{CONV5_4}.weight"].shape == (512, 512, 3, 3)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_vgg_weights_file_drives_perceptual_loss(tmp_path, vgg_state, fmt: str) -> None:
    path = tmp_path / f"vgg19.{fmt}"
    if fmt == "pth":
        torch.save(vgg_state, path)
    else:
        save_file(vgg_state, str(path))
    vgg = load_vgg19_features(path)
    assert torch.equal(vgg.features[CONV5_4].weight, vgg_state[f"features.{CONV5_4}.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())

    g = SRResNet(SRResNetConfig(scale=2, hidden=8, n_residual=1, norm="none"))
    lr, hr = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 32)
    loss = perceptual_loss(vgg, g(lr), hr, rescale=1 / 12.75)
    other = perceptual_loss(vgg, g(torch.rand(1, 3, 16, 16)), hr, rescale=1 / 12.75)
    assert loss.item() > 0 and loss.item() != other.item()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


def test_vgg_wrong_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "notvgg.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, bad)
    with pytest.raises(VGGWeightsError, match="features.0"):
        load_vgg19_features(bad)
    with pytest.raises(VGGWeightsError, match="not found"):
        load_vgg19_features(tmp_path / "missing.pth")


def test_bicubic_skip_starts_at_the_bicubic_baseline() -> None:
    from ganlab.sr.data import bicubic_resize

    g = SRResNet(preset_config("srresnet-small", "sr", scale=3))
    x = torch.rand(2, 3, 11, 14)
    assert torch.allclose(g(x), bicubic_resize(x, (33, 42)), atol=1e-6)
