"""The CycleGAN step's fast options give the same update as the plain one."""

from __future__ import annotations

import copy

import pytest
import torch

from ganlab.core.device import autocast
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.step import build_models, build_optimizers, can_batch, train_step


def _tiny(norm: str = "instance", identity: float = 0.5):
    cfg = build_cyclegan_config(
        preset="model2",
        overrides={
            "model": {"hidden": 8, "norm": norm},
            "disc": {"hidden": 8, "n_layers": 2, "norm": norm},
            "train": {"pool_size": 0, "schedule": [{"start": 1, "identity": identity}]},
        },
    )
    torch.manual_seed(0)
    models = build_models(cfg)
    return cfg, models


def _step(
    cfg,
    models,
    batch_g: bool,
    batch_d: bool,
    sgd: bool = False,
    fmt=torch.contiguous_format,
    tint_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    opts = build_optimizers(models, cfg.train)
    if sgd:
        # Plain SGD shows the gradients themselves: Adam would blow the float noise of near-zero
        # gradients (conv biases before an instance norm) up to full lr-sized steps.
        opts = {k: torch.optim.SGD(o.param_groups[0]["params"], lr=0.1) for k, o in opts.items()}
    pools = {k: ImagePool(0) for k in ("D_A", "D_B")}
    g = torch.Generator().manual_seed(1)
    a, b = ((torch.rand(2, 3, 16, 16, generator=g) * 2 - 1).contiguous(memory_format=fmt) for _ in range(2))
    amp = lambda: autocast(torch.device("cpu"), "fp32")  # noqa: E731
    w = cfg.train.schedule[0]
    return train_step(
        models, opts, a, b, w, "lsgan", pools, amp, batch_g=batch_g, batch_d=batch_d, tint_weight=tint_weight
    )


@pytest.mark.parametrize("identity", [0.5, 0.0])
def test_batched_passes_give_the_same_update(identity: float) -> None:
    cfg, plain = _tiny(identity=identity)
    _assert_same_update(cfg, plain, copy.deepcopy(plain), {"batch_g": True, "batch_d": True}, rel=1e-5)


def _assert_same_update(cfg, plain, fast, fast_step: dict, rel: float) -> None:
    """One SGD step of ``plain`` as is and of ``fast`` with ``fast_step``'s options: same losses, weights."""
    losses_plain = _step(cfg, plain, False, False, sgd=True)
    losses_fast = _step(cfg, fast, **{"batch_g": False, "batch_d": False, **fast_step}, sgd=True)
    for k in losses_plain:
        assert float(losses_fast[k]) == pytest.approx(float(losses_plain[k]), rel=rel, abs=1e-6), k
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_tint_term_is_reported_weighted_and_moves_the_generators() -> None:
    cfg, models = _tiny()
    base = _step(cfg, copy.deepcopy(models), False, False, sgd=True)
    assert "tint" not in base  # off: the reference step, no extra term
    tinted_models = copy.deepcopy(models)
    tinted = _step(cfg, tinted_models, False, False, sgd=True, tint_weight=3.0)
    assert float(tinted["tint"]) > 0
    # G_total adds exactly weight x term; the other terms are the same forward values.
    assert float(tinted["G_total"]) == pytest.approx(
        float(base["G_total"]) + 3.0 * float(tinted["tint"]), rel=1e-5
    )
    assert float(tinted["cycle_A"]) == pytest.approx(float(base["cycle_A"]), rel=1e-6)
    plain_models = copy.deepcopy(models)
    _step(cfg, plain_models, False, False, sgd=True)
    moved = [
        float((p - q).detach().abs().max())
        for (name, p), q in zip(tinted_models.named_parameters(), plain_models.parameters())
        if name.startswith("G_")
    ]
    assert max(moved) > 1e-6


def test_losses_are_device_tensors_not_floats() -> None:
    cfg, models = _tiny()
    losses = _step(cfg, models, False, False)
    assert all(torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad for v in losses.values())


def test_batch_norm_is_never_batched_across_passes() -> None:
    assert can_batch("instance") and can_batch("none") and not can_batch("batch")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_batches_passes_in_bf16_only_and_never_across_batch_norm(precision: str) -> None:
    """On the CPU the shared-weight passes run as one call where that was measured faster (bf16), not in
    fp32 (no faster there); a batch-norm network never, whatever the precision."""
    from ganlab.cyclegan.step import fast_settings

    over = {"train": {"precision": precision}, "model": {"norm": "instance"}, "disc": {"norm": "batch"}}
    fast = fast_settings(build_cyclegan_config("model2", overrides=over), torch.device("cpu"))
    assert fast["batch_g"] is (precision == "bf16")
    assert fast["batch_d"] is False


def test_fast_path_translation_matches_fp32() -> None:
    """bf16 autocast (what auto picks on a CPU with native bf16) vs fp32: PSNR of the translation >= 40 dB."""
    from ganlab.core.metrics import psnr

    cfg, models = _tiny()
    g = models["G_A2B"].eval()
    x = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        ref = g(x)
        with autocast(torch.device("cpu"), "bf16"):
            fast = g(x.contiguous(memory_format=torch.channels_last)).float()
    to01 = lambda t: ((t[0].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)  # noqa: E731
    assert psnr(to01(fast), to01(ref)) >= 40.0


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_channels_last_gives_the_same_update(norm: str) -> None:
    """The trainer's layout on CPU and CUDA (channels_last) vs NCHW: same losses and weights after a step,
    and the layout survives the step (no layer silently converts back to NCHW)."""
    cfg, plain = _tiny(norm=norm)
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    _assert_same_update(cfg, plain, fast, {"fmt": torch.channels_last}, rel=1e-4)
    x = (torch.rand(2, 3, 16, 16) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = fast["G_A2B"].net[:-1](x)  # everything but the output conv's 3 channels
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_translator_runs_channels_last_with_the_same_output() -> None:
    """Inference runs channels_last on CPU (faster with AVX-512 and with AVX2 kernels); same output."""
    from ganlab.cyclegan.translate import Translator

    cfg, models = _tiny()
    ref = copy.deepcopy(models["G_A2B"]).eval()
    tr = Translator({"a2b": models["G_A2B"]}, cfg, torch.device("cpu"), "fp32")
    assert tr.generator("a2b").net[1].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 24, 20) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(tr.translate_tensor(x), ref(x), rtol=1e-4, atol=1e-5)
