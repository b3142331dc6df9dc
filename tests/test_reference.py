"""Reference (pytorch-CycleGAN-and-pix2pix) state dicts load into numerically identical ganlab networks;
unsafe or foreign files are refused with a clear error."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from ganlab.core.errors import CheckpointError
from ganlab.core.torchfile import UnsafeFileError, read_state_dict
from ganlab.models.reference import (
    ReferenceLayoutError,
    discriminator_config,
    generator_config,
    load_discriminator,
    load_generator,
)

from .reference_nets import (
    RefDiscriminator,
    RefGenerator,
    randomized,
    save_state_dict,
    with_stale_norm_stats,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_output(ref: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference net on x reflect-padded to a multiple of 4, cropped back: what ganlab promises for
    any size (on multiples of 4 the padding is empty and this is the plain reference forward)."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
    return ref(xp)[..., :h, :w]


@pytest.mark.parametrize(
    "n_blocks, ngf, dropout",
    [(9, 8, False), (9, 12, True), (6, 8, True), (6, 12, False)],
)
def test_generator_is_numerically_the_reference(tmp_path, n_blocks, ngf, dropout) -> None:
    ref = randomized(RefGenerator(ngf, n_blocks, dropout), seed=n_blocks + ngf)
    path = tmp_path / "g.pth"
    # Old PyTorch versions saved unused InstanceNorm statistics; they must be ignored.
    save_state_dict(with_stale_norm_stats(ref.state_dict(), ["model.2", "model.10.conv_block.2"]), path)
    sd = read_state_dict(path)
    cfg = generator_config(sd)
    assert (cfg.n_residual, cfg.hidden, cfg.n_down, cfg.upsample, cfg.norm) == (
        n_blocks,
        ngf,
        2,
        "convtranspose",
        "instance",
    )
    assert cfg.dropout == (0.5 if dropout else 0.0)
    g = load_generator(sd)
    torch.manual_seed(0)
    with torch.no_grad():
        for h, w in ((37, 29), (32, 44), (21, 23)):
            x = torch.rand(1, 3, h, w) * 2 - 1
            y = g(x)
            assert y.shape == x.shape
            assert (y - _reference_output(ref, x)).abs().max().item() < 1e-5


def test_batchnorm_generator_and_layer_indices(tmp_path) -> None:
    ref = randomized(RefGenerator(8, 9, False, norm="batch"), seed=3)
    sd = ref.state_dict()
    # The documented indices of the 9-block layout: up convs at 19, 22 and the last conv at 26.
    assert {"model.19.weight", "model.22.weight", "model.26.weight", "model.18.conv_block.5.weight"} <= set(
        sd
    )
    g = load_generator(sd)
    assert g.cfg.norm == "batch"
    x = torch.rand(2, 3, 24, 28) * 2 - 1
    with torch.no_grad():
        assert (g(x) - ref(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("n_layers, norm", [(3, "instance"), (2, "batch")])
def test_discriminator_is_numerically_the_reference(n_layers, norm) -> None:
    ref = randomized(RefDiscriminator(8, n_layers, norm), seed=n_layers)
    sd = ref.state_dict()
    if norm == "instance":
        sd = with_stale_norm_stats(sd, ["model.3"])
    cfg = discriminator_config(sd)
    assert (cfg.hidden, cfg.n_layers, cfg.norm, cfg.first_stride) == (8, n_layers, norm, 2)
    d = load_discriminator(sd).eval()
    x = torch.rand(2, 3, 45, 39) * 2 - 1
    with torch.no_grad():
        assert (d(x) - ref(x)).abs().max().item() < 1e-5


def test_a_file_that_would_run_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(8, 3, 7, 7), "payload": Evil()}, path)
    with pytest.raises(UnsafeFileError, match="arbitrary unpickling.*mkdir"):
        read_state_dict(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(CheckpointError):
        read_state_dict(path)
    assert not marker.exists()


def test_foreign_layouts_are_named(tmp_path) -> None:
    with pytest.raises(ReferenceLayoutError, match="U-Net"):
        generator_config({"model.model.0.weight": torch.zeros(8, 3, 4, 4)})
    disc = RefDiscriminator(8, 3).state_dict()
    with pytest.raises(ReferenceLayoutError, match="not a reference ResnetGenerator"):
        generator_config(disc)
    gen = RefGenerator(8, 6).state_dict()
    with pytest.raises(ReferenceLayoutError, match="not a reference NLayerDiscriminator"):
        discriminator_config(gen)
    broken = dict(gen)
    broken["model.19.weight"] = broken["model.19.weight"][:, :4]  # a ConvTranspose of the wrong width
    with pytest.raises(ReferenceLayoutError, match="model.19.weight|net.19.weight"):
        load_generator(broken)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a readable torch weights file"):
        read_state_dict(tmp_path / "junk.pth")
