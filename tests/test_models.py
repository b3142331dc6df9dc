from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ganlab.core.config import ConfigError
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.models import PatchGANConfig, PatchGANDiscriminator, ResnetGenerator, preset_config, preset_names
from ganlab.models.blocks import UPSAMPLE_KINDS, PixelShuffleUp
from ganlab.models.generator import GeneratorConfig
from ganlab.models.registry import UnknownPresetError


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("upsample", UPSAMPLE_KINDS)
def test_generator_any_size_finite_and_all_params_learn(preset: str, upsample: str) -> None:
    torch.manual_seed(0)
    g = ResnetGenerator(preset_config(preset, upsample=upsample))
    x = torch.rand(2, 3, 37, 53) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0
    y.square().mean().backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing[:3]}"
    assert all(p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_norm_variants_and_dropout(norm: str) -> None:
    g = ResnetGenerator(preset_config("model2", hidden=8, norm=norm, dropout=0.5))
    assert g(torch.zeros(2, 3, 17, 16)).shape == (2, 3, 17, 16)
    d = PatchGANDiscriminator(PatchGANConfig(hidden=8, norm=norm))
    assert d(torch.zeros(2, 3, 64, 64)).shape[:2] == (2, 1)


def test_reference_parameter_counts() -> None:
    assert n_params(ResnetGenerator(preset_config("resnet9"))) == 11_378_179
    assert n_params(PatchGANDiscriminator(PatchGANConfig())) == 2_764_737


@pytest.mark.parametrize(
    "sn, aa", [(False, False), (True, False), (False, True)], ids=["plain", "spectral_norm", "antialias"]
)
def test_discriminator_gradients_and_patch_output(sn: bool, aa: bool) -> None:
    d = PatchGANDiscriminator(PatchGANConfig(hidden=16, spectral_norm=sn, antialias=aa))
    out = d(torch.randn(2, 3, 70, 70))
    assert out.shape == (2, 1, 6, 6)  # 70x70 receptive field: one score per patch
    out.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


@pytest.mark.parametrize("aa", [False, True], ids=["plain", "antialias"])
def test_full_resolution_first_layer(aa: bool) -> None:
    """first_stride 1: the first conv keeps full resolution (twice the score map per side, less the
    4x4 kernel's trim), never blurs the raw image, and every parameter still learns."""
    cfg = PatchGANConfig(hidden=8, n_layers=2, antialias=aa, first_stride=1)
    d = PatchGANDiscriminator(cfg)
    assert isinstance(d.net[0], torch.nn.Conv2d) and d.net[0].stride == (1, 1)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = d(x)
    base = PatchGANDiscriminator(dataclasses.replace(cfg, first_stride=2))(x)
    assert out.shape == (2, 1, 2 * base.shape[-2] + 1, 2 * base.shape[-1] + 1)  # 29 against 14 here
    out.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    with pytest.raises(ConfigError, match="first_stride"):
        build_cyclegan_config(overrides={"disc": {"first_stride": 3}})


def test_icnr_init_equals_nearest_upsampling_of_one_conv() -> None:
    torch.manual_seed(0)
    up = PixelShuffleUp(6, 4, icnr=True)
    x = torch.randn(1, 6, 9, 11)
    y = up(x)
    # Base conv: the first filter of each group of 4 sub-pixel filters.
    base = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), up.conv.weight[::4], up.conv.bias[::4])
    assert torch.allclose(y, F.interpolate(base, scale_factor=2, mode="nearest"), atol=1e-6)
    # Without ICNR the four sub-pixels differ: the property is not an accident of the layout.
    plain = PixelShuffleUp(6, 4, icnr=False)(x)
    assert not torch.allclose(plain[..., 0::2, 0::2], plain[..., 1::2, 1::2], atol=1e-3)


def test_unknown_preset_lists_known() -> None:
    with pytest.raises(UnknownPresetError, match="model1, model2, resnet6, resnet9"):
        preset_config("model3")


def test_presets_are_overridable() -> None:
    cfg = preset_config("model1", hidden=32)
    assert dataclasses.asdict(cfg)["hidden"] == 32 and cfg.n_residual == 9


def test_global_skip_starts_as_identity_and_learns() -> None:
    g = ResnetGenerator(preset_config("model2", hidden=8, global_skip=True))
    x = torch.rand(1, 3, 21, 18) * 1.8 - 0.9
    y = g(x)
    assert torch.allclose(y, x, atol=1e-5)
    y.square().mean().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_spectral_norm_bounds_each_conv() -> None:
    torch.manual_seed(0)
    d = PatchGANDiscriminator(PatchGANConfig(hidden=8, spectral_norm=True))
    d.train()
    for _ in range(30):  # power iterations converge over forward passes
        d(torch.randn(1, 3, 32, 32))
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_antialiased_discriminator_is_blind_to_a_2px_grid() -> None:
    """The aliasing the option removes: a 2-px period pattern is invisible after the binomial low-pass
    (its kernel has a zero at the Nyquist frequency), but a plain strided conv responds to it."""
    torch.manual_seed(0)
    grid = torch.zeros(1, 3, 64, 64)
    grid[..., 0::2, :] = 0.5  # horizontal stripes, 2 px period, mean 0.25
    flat = torch.full_like(grid, 0.25)
    # No norm: instance-norm statistics would mix the border region into every score.
    aa = PatchGANDiscriminator(PatchGANConfig(hidden=8, n_layers=1, norm="none", antialias=True))
    plain = PatchGANDiscriminator(PatchGANConfig(hidden=8, n_layers=1, norm="none"))
    # Same weights, conv by conv (the blur has no parameters but shifts the layer indices).
    for dst, src in zip(
        (m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)),
        (m for m in aa.modules() if isinstance(m, torch.nn.Conv2d)),
        strict=True,
    ):
        dst.load_state_dict(src.state_dict())
    # Away from the borders (reflect padding changes the pattern's phase there) the blurred grid is flat.
    inner = (..., slice(4, -4), slice(4, -4))
    assert aa(grid)[inner].numel() > 100
    assert torch.allclose(aa(grid)[inner], aa(flat)[inner], atol=1e-5)
    assert not torch.allclose(plain(grid)[inner], plain(flat)[inner], atol=1e-3)


@pytest.mark.parametrize("upsample", UPSAMPLE_KINDS)
def test_reflect_down_padding_has_no_border_line(upsample: str) -> None:
    """A flat image keeps no trace of the border through a reflect-padded generator; zero padding of the
    stride-2 conv marks the top and left edges. Compared 2 px inward, so a sub-pixel upsampler's 2x2
    pattern (same at every phase-aligned position) does not count."""
    flat = torch.full((1, 3, 16, 16), 0.3)

    def border_gap(padding: str) -> float:
        cfg = GeneratorConfig(hidden=8, n_residual=1, upsample=upsample, norm="none", down_padding=padding)
        torch.manual_seed(0)
        with torch.no_grad():
            y = ResnetGenerator(cfg)(flat)[0]
        rows = (y[:, :2, :] - y[:, 2:4, :]).abs().max()
        cols = (y[:, :, :2] - y[:, :, 2:4]).abs().max()
        return max(rows.item(), cols.item())

    assert border_gap("zeros") > 1e-3  # the reference layout marks the edge ...
    assert border_gap("reflect") < 1e-6  # ... reflect padding does not
    a = ResnetGenerator(GeneratorConfig(hidden=8, down_padding="zeros")).state_dict()
    b = ResnetGenerator(GeneratorConfig(hidden=8, down_padding="reflect")).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}  # same checkpoints
    with pytest.raises(ConfigError, match="down_padding"):
        build_cyclegan_config(overrides={"model": {"down_padding": "circular"}})


def _network(name: str) -> torch.nn.Module:
    from ganlab.cyclegan.step import build_models
    from ganlab.models.sr import SRDiscriminator, SRDiscriminatorConfig, SRResNet

    if name in preset_names():
        return ResnetGenerator(preset_config(name, n_residual=1))  # the layer kinds, fewer to trace
    if name in preset_names("sr"):
        return SRResNet(preset_config(name, "sr", n_residual=1))
    if name == "PatchGAN":
        return PatchGANDiscriminator(PatchGANConfig())
    if name == "SR D":
        return SRDiscriminator(SRDiscriminatorConfig())
    demo = build_cyclegan_config(
        files=["src/ganlab/configs/demo/cyclegan.yaml"], overrides={"train": {"minutes": 1}}
    )
    return build_models(demo)["G_A2B" if name == "demo G" else "D_A"]


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", [*preset_names(None), "demo G", "demo D", "PatchGAN", "SR D"])
def test_every_network_compiles_as_one_graph(name: str, amp: bool) -> None:
    """train.compile: a graph break (once in every channels_last instance norm) split the generator
    into one compiled piece per layer, and each new shape recompiled until dynamo's limit left the
    rest eager. fullgraph=True raises at any break; the "eager" backend traces without inductor."""
    torch.manual_seed(0)
    net = _network(name).to(memory_format=torch.channels_last).train()
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    torch._dynamo.reset()
    with torch.autocast("cpu", torch.bfloat16, enabled=amp):
        y = torch.compile(net, fullgraph=True, backend="eager")(x)
        want = net(x)
    if amp:  # the compiled instance norm is torch's, whose bf16 rounding differs from ganlab's kernels
        assert (y.float() - want.float()).abs().mean() < 0.01
    else:
        torch.testing.assert_close(y, want)
    (gx,) = torch.autograd.grad(y.float().square().sum(), x)
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_instance_norm_runs_ganlabs_kernels(dtype: torch.dtype) -> None:
    """Under torch.compile the channels_last instance norm is a custom op (its fake tensors and autograd
    registered), so the compiled norm equals the eager one exactly, flat maps (set to zero) included;
    "aot_eager" traces forward and backward with fake tensors as inductor does, without its codegen."""
    from ganlab.models.norm import InstanceNorm

    torch.manual_seed(0)
    x = torch.randn(3, 5, 9, 7, dtype=dtype)
    x[1, 2] = 0.25  # a flat map
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(x.shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    norm = InstanceNorm(5)
    torch._dynamo.reset()
    y = torch.compile(norm, fullgraph=True, backend="aot_eager")(x)
    want = norm(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and y.dtype == dtype
    assert torch.equal(y, want) and torch.count_nonzero(y[1, 2]) == 0
    assert torch.equal(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(want, x, g)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nchw_training_instance_norm_is_group_norm_on_the_cpu(dtype: torch.dtype) -> None:
    """An NCHW input in training takes aten's group norm (one channel per group), not F.instance_norm's
    batch norm over (1, N*C, H, W), which took 2-4x as long on the CPU; same values and gradients, and
    a flat map is still set to zero."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from ganlab.models.norm import InstanceNorm

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    x = torch.randn(3, 4, 9, 7, dtype=dtype)
    x[2, 1] = -0.5  # a flat map
    x.requires_grad_()
    g = torch.randn(x.shape, dtype=dtype)
    with Ops() as ops:
        y = InstanceNorm(4)(x)
        (gx,) = torch.autograd.grad(y, x, g)
    assert "native_group_norm" in ops.names and "native_batch_norm" not in ops.names
    ref = F.instance_norm(x)
    (gref,) = torch.autograd.grad(ref, x, g)
    tol = {} if dtype == torch.float32 else {"atol": 0.05, "rtol": 0.05}
    keep = torch.ones(3, 4, 1, 1, dtype=dtype)
    keep[2, 1] = 0
    torch.testing.assert_close(y, ref * keep, **tol)
    torch.testing.assert_close(gx, gref * keep, **tol)
    assert torch.count_nonzero(y[2, 1]) == 0 and torch.count_nonzero(gx[2, 1]) == 0
