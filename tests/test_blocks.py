"""The layout-keeping layers of ganlab.models.layers (and PixelShuffleUp's channels_last path) equal the
torch layers they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ganlab.models.blocks import PixelShuffleUp, ResizeConvUp, separable_filter, with_torch_layers
from ganlab.models.layers import ConvTranspose, PadConv2d, ReflectionPad, _ConvTransposeFn
from ganlab.models.narrow import NarrowConv2d, NarrowInputConv2d
from ganlab.models.norm import InstanceNorm

CL = torch.channels_last


def _x(shape, layout=CL, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(shape, generator=g, dtype=dtype) * 3 + 1).contiguous(memory_format=layout)


@pytest.mark.parametrize("p", [1, 3])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_reflection_pad_matches_torch_forward_and_backward(p: int, layout) -> None:
    x = _x((2, 3, 7, 9), layout).requires_grad_()
    pad = ReflectionPad(p)
    assert torch.equal(pad(x), F.pad(x, (p,) * 4, mode="reflect"))
    assert torch.autograd.gradcheck(pad, (x,))
    assert pad(x).is_contiguous(memory_format=layout)


def test_reflection_pad_keeps_bf16_under_autocast() -> None:
    """CPU autocast runs aten's reflection pad in fp32 (a cast there and back per layer); ours does not."""
    x = _x((1, 4, 8, 8), dtype=torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ReflectionPad(1)(x)
        assert F.pad(x, (1,) * 4, mode="reflect").dtype == torch.float32  # what it replaces
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_pad_conv_is_the_torch_conv_and_pads_in_bf16(mode: str) -> None:
    """The down conv with reflect padding: nn.Conv2d's function and gradients; under bf16 autocast no
    fp32 pad (nn.Conv2d's F.pad runs in fp32 there: a cast of the input to fp32 and back)."""
    torch.manual_seed(0)
    conv = PadConv2d(3, 4, 3, stride=2, padding=1, padding_mode=mode).double()
    ref = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode=mode).double()
    ref.load_state_dict(conv.state_dict())
    x = _x((2, 3, 9, 8)).requires_grad_()
    torch.testing.assert_close(conv(x), ref(x))
    assert torch.autograd.gradcheck(conv, (x,))
    seen: list[torch.dtype] = []

    class Dtypes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func.overloadpacket.__name__ == "reflection_pad2d":
                seen.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    xb = _x((2, 3, 9, 8), dtype=torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16), Dtypes():
        y = conv.float()(xb)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and xb.grad is not None
    assert seen == ([torch.bfloat16] if mode == "reflect" else [])


# Maps under 32 x 32 px take per-sample batch norm forward, larger ones group norm (blocks.py).
@pytest.mark.parametrize("shape", [(2, 5, 6, 7), (2, 3, 32, 33)])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_instance_norm_matches_torch_and_keeps_channels_last(layout, shape) -> None:
    x = _x(shape, layout).requires_grad_()
    norm = InstanceNorm(shape[1])
    torch.testing.assert_close(norm(x), F.instance_norm(x))
    g = torch.randn(shape, dtype=x.dtype)
    ref = x.detach().clone().requires_grad_()
    torch.testing.assert_close(
        torch.autograd.grad(norm(x), x, g)[0], torch.autograd.grad(F.instance_norm(ref), ref, g)[0]
    )
    if x.numel() < 1000:  # gradcheck's cost grows with the square of the size
        assert torch.autograd.gradcheck(norm, (x,))
    assert norm(x).is_contiguous(memory_format=layout)
    with torch.no_grad():
        torch.testing.assert_close(norm(x), F.instance_norm(x))


def test_instance_norm_backward_survives_an_inplace_relu() -> None:
    """The generators put ReLU(inplace=True) after every norm: the backward must not need the output."""
    x = _x((2, 4, 5, 5), dtype=torch.float32).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    torch.relu_(InstanceNorm(4)(x)).sum().backward()
    torch.relu(F.instance_norm(ref)).sum().backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", ["resnet9", "model2"])
def test_with_torch_layers_is_the_same_function(preset: str) -> None:
    """The benchmark's plain path swaps in torch's layers: same outputs, same parameters, none left over."""
    import copy

    from ganlab.models import ResnetGenerator
    from ganlab.models.blocks import with_torch_layers
    from ganlab.models.registry import preset_config

    cfg = preset_config(preset, hidden=8, upsample="resize_conv", down_padding="reflect")
    g = ResnetGenerator(cfg).double()
    plain = with_torch_layers(copy.deepcopy(g))
    kinds = {type(m) for m in plain.modules()}
    assert not kinds & {
        ReflectionPad,
        InstanceNorm,
        NarrowConv2d,
        NarrowInputConv2d,
        ConvTranspose,
        PadConv2d,
    }
    x = _x((1, 3, 20, 24), torch.contiguous_format)
    torch.testing.assert_close(plain(x), g(x))
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in g.parameters())


def test_sr_tail_is_narrow_and_swaps_back() -> None:
    """The SR generator's 9x9 tail (C -> 3, reflect padding inside the conv) takes the phase form; the
    plain layers give the same function."""
    import copy

    from ganlab.models.blocks import with_torch_layers
    from ganlab.models.sr import SRResNet, SRResNetConfig

    g = SRResNet(SRResNetConfig(hidden=8, n_residual=1, scale=2, skip="none")).double().eval()
    torch.nn.init.normal_(g.tail.weight, std=0.1)
    x = _x((1, 3, 10, 12), torch.contiguous_format)
    assert isinstance(g.tail, NarrowConv2d) and g.tail._phases_apply(g.upsample(g.head(x)))
    plain = with_torch_layers(copy.deepcopy(g))
    assert type(plain.tail) is torch.nn.Conv2d and plain.tail.padding_mode == "reflect"
    torch.testing.assert_close(plain(x), g(x))


@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
@pytest.mark.parametrize(
    ("bias", "pad"),
    [
        (True, {}),
        (False, {}),
        (True, {"padding": 3, "padding_mode": "reflect"}),
        (False, {"padding": (1, 2)}),
    ],
)
def test_narrow_conv_is_the_plain_conv_in_phases(layout, bias: bool, pad: dict) -> None:
    """The generator's last conv (few output channels) as one stride-2 conv over four output phases and a
    pixel shuffle: the same function and gradients as nn.Conv2d with the same parameters, padding inside
    the conv (the SR tail's reflect padding) included."""
    torch.manual_seed(0)
    conv = NarrowConv2d(5, 3, 7, bias=bias, **pad).double()
    ref = torch.nn.Conv2d(5, 3, 7, bias=bias, **pad).double()
    assert conv.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(conv.state_dict())
    ph, pw = conv.padding
    x = _x(
        (2, 5, 14 - 2 * ph, 16 - 2 * pw), layout
    ).requires_grad_()  # output 8 x 10: even, so the phase form applies
    assert conv._phases_apply(x)
    torch.testing.assert_close(conv(x), ref(x))
    assert conv(x).is_contiguous(memory_format=layout)
    assert torch.autograd.gradcheck(conv, (x,))
    y, g = conv(x), _x((2, 3, 8, 10), layout)
    got = torch.autograd.grad(y, [x, *conv.parameters()], g)
    want = torch.autograd.grad(ref(x), [x, *ref.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_narrow_conv_takes_the_plain_path_where_the_phases_do_not_fit() -> None:
    conv = NarrowConv2d(4, 3, 3).double()
    odd = _x((1, 4, 9, 10))  # output 7 x 8: odd height
    assert not conv._phases_apply(odd)
    torch.testing.assert_close(conv(odd), F.conv2d(odd, conv.weight, conv.bias))
    wide = NarrowConv2d(4, 8, 3)  # 4 x 8 output channels: more than one vector block already
    assert not wide._phases_apply(_x((1, 4, 10, 10), dtype=torch.float32))
    strided = NarrowConv2d(4, 3, 3, stride=2)
    assert not strided._phases_apply(_x((1, 4, 10, 10), dtype=torch.float32))


@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
@pytest.mark.parametrize("bias", [True, False])
def test_stem_conv_input_gradient_in_phases(layout, bias: bool) -> None:
    """The stem (few input channels): its input gradient, a conv with 3 output channels, is computed in
    the phase form in channels_last; outputs and all gradients equal nn.Conv2d's, and an NCHW input, an
    input without a gradient (a first pass on data) or an odd size takes nn.Conv2d's own path."""
    torch.manual_seed(0)
    conv = NarrowInputConv2d(3, 5, 7, bias=bias).double()
    ref = torch.nn.Conv2d(3, 5, 7, bias=bias).double()
    ref.load_state_dict(conv.state_dict())
    x = _x((2, 3, 14, 16), layout).requires_grad_()
    assert conv._phases_apply(x) == (layout is CL)
    assert not conv._phases_apply(x.detach()) and not conv._phases_apply(_x((2, 3, 13, 16)).requires_grad_())
    y = conv(x)
    torch.testing.assert_close(y, ref(x))
    assert y.is_contiguous(memory_format=layout)
    assert torch.autograd.gradcheck(conv, (x,))
    g = _x(tuple(y.shape), layout)
    got = torch.autograd.grad(y, [x, *conv.parameters()], g)
    want = torch.autograd.grad(ref(x), [x, *ref.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert got[0].is_contiguous(memory_format=layout)


def test_stem_conv_under_bf16_autocast_matches_the_plain_conv() -> None:
    conv = NarrowInputConv2d(3, 16, 7)
    ref = torch.nn.Conv2d(3, 16, 7)
    ref.load_state_dict(conv.state_dict())
    x = _x((2, 3, 22, 22), dtype=torch.float32).requires_grad_()
    outs = []
    for m in (conv, ref):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
        assert y.dtype == torch.bfloat16
        (gx,) = torch.autograd.grad(y.float().square().sum(), [x])
        outs.append((y.float(), gx))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=0.02, atol=0.02 * b.abs().max().item())


def test_long_blur_in_bf16_channels_last_does_not_stall() -> None:
    """oneDNN's bf16 depthwise convolution in channels_last stalled for minutes with 15 taps; the filter
    goes NCHW for long kernels (on images too large for the matrix form). Run in a subprocess so a stall
    fails the test instead of hanging it."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from ganlab.models.blocks import separable_filter\n"
        "x = torch.rand(1, 3, 176, 176).contiguous(memory_format=torch.channels_last).bfloat16()\n"
        "y = separable_filter(x, torch.ones(15) / 15)\n"
        "assert y.shape == x.shape and torch.allclose(y.float().mean(), x.float().mean(), atol=0.02)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
def test_pixel_shuffle_up_matches_conv_then_pixel_shuffle(layout, scale: int) -> None:
    """Channels_last on the CPU, PixelShuffleUp reorders its conv's output channels so that the shuffle
    copies contiguous runs; outputs, all gradients, layout and state dict are those of conv + nn.PixelShuffle."""
    import copy

    up = PixelShuffleUp(6, 5, icnr=False, scale=scale).double()
    torch.nn.init.normal_(up.conv.bias)
    plain = with_torch_layers(copy.deepcopy(up))
    assert not plain.subpixel_last and up.subpixel_last
    assert plain.state_dict().keys() == up.state_dict().keys()
    x = _x((2, 6, 7, 9), layout).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    y, y_ref = up(x), plain.shuffle(plain.conv(plain.pad(ref)))
    assert y.shape == (2, 5, 7 * scale, 9 * scale) and y.is_contiguous(memory_format=layout)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn(y.shape, dtype=y.dtype)
    grads = torch.autograd.grad(y, [x, *up.parameters()], g)
    grads_ref = torch.autograd.grad(y_ref, [ref, *plain.parameters()], g)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("args", [((2, 2), (1, 1), (1, 1), 1, (1, 1)), ((2, 1), (0, 2), (1, 0), 2, (1, 2))])
def test_conv_transpose_backward_is_the_adjoint_conv(args) -> None:
    """_ConvTransposeFn's backward (conv2d and its weight gradient) against aten's, in float64: every
    gradient, for strides, paddings, output paddings, groups and dilations."""
    stride, padding, output_padding, groups, dilation = args
    x = _x((2, 4, 5, 6)).requires_grad_()
    w = _x((4, 3, 3, 3)).mul(0.1).requires_grad_()
    b = _x((3 * groups,), torch.contiguous_format).requires_grad_()
    y = _ConvTransposeFn.apply(x, w, b, args)  # w: (C_in, C_out / groups, k, k)
    y_ref = F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn(y.shape, dtype=y.dtype)
    torch.testing.assert_close(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(y_ref, (x, w, b), g))


def test_conv_transpose_takes_its_path_in_bf16_and_matches_torch() -> None:
    """Under bf16 autocast on channels_last input, ConvTranspose runs _ConvTransposeFn (its own autograd
    node) and gives nn.ConvTranspose2d's outputs and gradients; with_torch_layers swaps the plain one in."""
    import copy

    up = ConvTranspose(6, 4, 3, stride=2, padding=1, output_padding=1)
    plain = with_torch_layers(torch.nn.Sequential(copy.deepcopy(up)))[0]
    assert type(plain) is torch.nn.ConvTranspose2d
    x = _x((2, 6, 8, 8), dtype=torch.float32).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_ref = up(x), plain(ref)
    assert y.grad_fn.name() == "_ConvTransposeFnBackward" and y.is_contiguous(memory_format=CL)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn(y.shape, dtype=y.dtype)
    for a, b in zip(
        torch.autograd.grad(y, [x, *up.parameters()], g),
        torch.autograd.grad(y_ref, [ref, *plain.parameters()], g),
        strict=True,
    ):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
@pytest.mark.parametrize("bias", [True, False])
def test_resize_conv_phases_are_upsample_pad_conv(layout, bias: bool) -> None:
    """The resize-conv computed at the input's resolution (replicate pad, 2x2 conv per output phase,
    phases read at their offsets): the same function and gradients as nearest x2, reflect pad, 3x3 conv,
    in the input's layout, on a non-square input."""
    torch.manual_seed(0)
    up = ResizeConvUp(5, 3, bias=bias).double()
    x = _x((2, 5, 6, 9), layout).requires_grad_()
    y = up(x)
    up.phases = False
    ref = up(x)
    up.phases = True
    assert y.shape == (2, 3, 12, 18) and y.is_contiguous(memory_format=layout)
    torch.testing.assert_close(y, ref)
    g = _x((2, 3, 12, 18), layout)
    got = torch.autograd.grad(y, [x, *up.parameters()], g)
    up.phases = False
    want = torch.autograd.grad(up(x), [x, *up.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    up.phases = True
    assert torch.autograd.gradcheck(up, (x,))
    assert not with_torch_layers(up).phases  # the plain path of ganlab bench --baseline


def test_resize_conv_takes_the_plain_path_under_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor failed on the phase form's strided read (the demo's generator, PyTorch 2.13: "vr must not
    be None"), so a compiled ResizeConvUp is upsample, pad, conv; eager keeps the phases."""
    import ganlab.models.blocks as blocks

    calls: list[int] = []
    real = blocks.resize_conv_phases
    monkeypatch.setattr(blocks, "resize_conv_phases", lambda x, conv: calls.append(1) or real(x, conv))
    up = ResizeConvUp(4, 2).double()
    x = _x((1, 4, 5, 6))
    eager = up(x)
    assert calls == [1]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.testing.assert_close(up(x), eager)
    assert calls == [1]


@pytest.mark.parametrize(
    ("shape", "taps"),
    [
        ((2, 3, 20, 31), (1, 2, 5, 7, 5, 2, 1)),
        ((1, 2, 4, 9), (1, 2, 5, 7, 5, 2, 1)),
        ((2, 4, 6, 7), (1, 2, 1)),
    ],
)
def test_separable_filter_is_the_padded_depthwise_filter_pair(shape, taps) -> None:
    """Long kernels on small CPU images run as two matrix products with the padding folded in, 3 taps as
    one 3x3 depthwise conv: the same values as reflect padding (replicate where a side is too short to
    reflect) and the pair of 1-D depthwise filters, gradients included."""
    k = torch.tensor(taps, dtype=torch.float64) / sum(taps)
    x = _x(shape).requires_grad_()
    r = len(taps) // 2
    mode = "reflect" if min(shape[-2:]) > r else "replicate"
    c = shape[1]
    xp = F.pad(x, (r, r, r, r), mode=mode)
    ref = F.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    ref = F.conv2d(ref, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    y = separable_filter(x, k)
    torch.testing.assert_close(y, ref)
    g = _x(shape, torch.contiguous_format)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0])


@pytest.mark.parametrize("layout", [CL, torch.contiguous_format])
@pytest.mark.parametrize("bf16", [False, True])
def test_flat_crop_sends_no_gradient_through_the_instance_norms(layout, bf16: bool) -> None:
    """A flat-colour input makes every map of a generator flat. Its instance norms then output exactly
    zero and pass no gradient to the layers before them (the kernels' rounding had left +-1 ulp x 316
    there, in fp32 and in bf16 alike, the ReLUs passed half the gradient, and it grew up to 316x per
    norm: to 1e19 in an fp32 demo run, to inf with 4 residual blocks in bf16). 64 px: the 32 px maps of
    the residual blocks take the group-norm kernel, where bf16 left the residue."""
    from ganlab.models.generator import GeneratorConfig, ResnetGenerator

    torch.manual_seed(0)
    g = ResnetGenerator(GeneratorConfig(hidden=8, n_residual=2, n_down=1)).to(memory_format=layout)
    x = torch.full((2, 3, 64, 64), 0.3).contiguous(memory_format=layout)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = g(x)
    (y.float() * torch.randn(y.shape)).sum().backward()
    stem, down = g.net[1], g.net[4]
    for conv in (stem, down):
        assert torch.count_nonzero(conv.weight.grad) == 0 and torch.count_nonzero(conv.bias.grad) == 0
    assert g.net[-2].bias.grad.abs().sum() > 0  # the output conv still learns


def test_training_instance_norm_is_f_instance_norm_on_maps_that_vary() -> None:
    """Training-mode InstanceNorm (channels_last kernels, or fp32 NCHW group norm with the flat-map mask)
    equals F.instance_norm, gradients included, in both layouts."""
    for layout in (CL, torch.contiguous_format):
        x = _x((2, 3, 6, 7), layout).requires_grad_()
        y = InstanceNorm(3)(x)
        ref = F.instance_norm(x)
        torch.testing.assert_close(y, ref)
        g = _x((2, 3, 6, 7), layout)
        torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(ref, x, g)[0])
