from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from ganlab.cli import main
from ganlab.core.rundir import read_metrics

from .conftest import TINY


def train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--preset", "model2", "--out", str(out), *TINY, *extra])


def test_two_epoch_run_writes_everything(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(tiny_data, out, "--epochs", "2") == 0
    assert (out / "config.yaml").is_file()
    assert sorted(p.name for p in (out / "checkpoints").glob("*.safetensors")) == [
        "epoch_0001.safetensors",
        "epoch_0002.safetensors",
    ]
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["epoch"] == 2
    grid = Image.open(out / "samples" / "epoch_0002.png")
    assert grid.size == (2 * 32, 6 * 32)  # 2 samples x (real, fake, rec) for A and B
    epochs = read_metrics(out, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    for key in (
        "G_gan_A2B",
        "G_gan_B2A",
        "cycle_A",
        "cycle_B",
        "idt_A",
        "idt_B",
        "D_A",
        "D_B",
        "weights",
        "lr_g",
        "lr_d",
        "seconds",
        "eval_cycle_psnr",
        "eval_gt_psnr",
    ):
        assert key in epochs[0], key
    assert all(np.isfinite(r["G_total"]) for r in epochs)
    assert epochs[0]["lr_d"] == pytest.approx(1.25 * epochs[0]["lr_g"])


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--set", "train.ema_decay=0.9"],
        ["--set", "train.augment=[color, translation]"],
        ["--set", "train.cycle_blur=1.0", "--set", "disc.antialias=true"],
        # fp16 with loss scaling (what a GPU without bf16 gets): the scale is resume state too
        ["--precision", "fp16"],
    ],
    ids=["plain", "ema", "augment", "lowpass", "fp16"],
)
def test_resume_is_bit_exact(tiny_data: Path, tmp_path: Path, extra: list[str]) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(tiny_data, straight, "--epochs", "2", *extra) == 0
    assert train(tiny_data, resumed, "--epochs", "1", *extra) == 0
    assert main(["train", "--resume", str(resumed), "--epochs", "2", "--quiet"]) == 0
    a = load_file(straight / "checkpoints" / "epoch_0002.safetensors")
    b = load_file(resumed / "checkpoints" / "epoch_0002.safetensors")
    assert a.keys() == b.keys()
    assert any(k.startswith("optim/") for k in a) and any(k.startswith("pool/") for k in a)
    different = [k for k in a if not (a[k].shape == b[k].shape and (a[k] == b[k]).all())]
    assert not different, different[:5]
    assert any(k.startswith("model/G_A2B_ema/") for k in a) == ("ema" in " ".join(extra))
    assert ("amp/scale" in a) == ("fp16" in extra)


def test_budget_stop_mid_epoch_then_resume(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(tiny_data, out, "--epochs", "2", "--minutes", "0.00001") == 0
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["epoch"] == 0 and latest["step_in_epoch"] == 1
    # The budget spans invocations: resuming with the same budget does nothing, a larger one goes on.
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step_in_epoch"] == 1
    assert main(["train", "--resume", str(out), "--minutes", "10", "--quiet"]) == 0
    assert [r["epoch"] for r in read_metrics(out, "epoch")] == [1, 2]


def test_phase_switch_and_change_at_resume_are_logged(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    sched = "train.schedule=[{start: 1, gan: 1.0}, {start: 3, gan: 1.5, identity: 0.3}]"
    assert train(tiny_data, out, "--epochs", "3", "--set", sched, "--set", "train.epochs_decay=0") == 0
    phases = read_metrics(out, "phase")
    assert [(p["epoch"], p["weights"]["gan"]) for p in phases] == [(1, 1.0), (3, 1.5)]
    epochs = read_metrics(out, "epoch")
    assert [r["weights"]["gan"] for r in epochs] == [1.0, 1.0, 1.5]
    # Change the ratios on the fly: resume with a new cycle weight and lr coefficient.
    new = "train.schedule=[{start: 1, gan: 1.5, identity: 0.3, cycle: 12.0}]"
    assert (
        main(
            [
                "train",
                "--resume",
                str(out),
                "--epochs",
                "4",
                "--set",
                new,
                "--set",
                "train.disc_lr_coef=2.0",
                "--quiet",
            ]
        )
        == 0
    )
    change = read_metrics(out, "config_change")
    assert len(change) == 1 and change[0]["epoch"] == 4
    assert "train.disc_lr_coef" in change[0]["changes"] and "train.schedule" in change[0]["changes"]
    last = read_metrics(out, "epoch")[-1]
    assert last["epoch"] == 4 and last["weights"]["cycle"] == 12.0
    assert last["lr_d"] == pytest.approx(2.0 * last["lr_g"])


def test_architecture_change_at_resume_and_mismatched_checkpoint(
    tiny_data: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert train(tiny_data, out, "--epochs", "1") == 0
    assert main(["train", "--resume", str(out), "--set", "model.hidden=16", "--quiet"]) == 2
    assert "cannot change the architecture" in capsys.readouterr().err
    from ganlab.core.checkpoint import CheckpointError, load_checkpoint, load_module_state
    from ganlab.cyclegan.config import build_cyclegan_config
    from ganlab.cyclegan.step import build_models

    other = build_models(build_cyclegan_config("model2", overrides={"model": {"hidden": 16}}))
    ckpt = load_checkpoint(out / "checkpoints" / "epoch_0001.safetensors")
    with pytest.raises(CheckpointError, match=r"net\.1\.weight has shape \(8, 3, 7, 7\).*\(16, 3, 7, 7\)"):
        load_module_state(ckpt, "G_A2B", other["G_A2B"])


def test_corrupt_files_skipped_with_warning(tiny_data: Path, tmp_path: Path, capsys) -> None:
    (tiny_data / "trainA" / "zero.png").write_bytes(b"")
    (tiny_data / "trainA" / "notes.jpg").write_text("hello")
    good = (tiny_data / "trainB" / "000.png").read_bytes()
    (tiny_data / "trainB" / "cut.png").write_bytes(good[: len(good) // 2])
    assert train(tiny_data, tmp_path / "run", "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "skipping 3 unreadable image(s)" in out
    for name in (
        "zero.png: empty file",
        "notes.jpg: not a recognised image",
        "cut.png: corrupt or truncated",
    ):
        assert name in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "nope"], "unknown preset 'nope'; known presets: model1, model2"),
        (["--set", "train.nope=1"], "unknown config key train.nope"),
        (["--set", "train.gan_loss=wgan"], "valid values: lsgan, vanilla, hinge"),
        (["--set", "train.cycle_blur=-1"], "cycle_blur: must be >= 0"),
        (["--set", "train.huber_beta=-0.1"], "huber_beta: must be >= 0"),
    ],
)
def test_clear_errors(tiny_data: Path, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), *args]) == 2
    assert message in capsys.readouterr().err


def test_empty_domain_is_an_error(tiny_data: Path, tmp_path: Path, capsys) -> None:
    for p in (tiny_data / "trainB").iterdir():
        p.unlink()
    assert train(tiny_data, tmp_path / "r", "--epochs", "1") == 2
    assert f"domain B: no usable images in {tiny_data / 'trainB'}" in capsys.readouterr().err


@pytest.mark.parametrize("gan_loss", ["vanilla", "hinge"])
def test_other_gan_losses_and_bf16(tiny_data: Path, tmp_path: Path, gan_loss: str) -> None:
    out = tmp_path / "r"
    assert (
        train(tiny_data, out, "--epochs", "1", "--set", f"train.gan_loss={gan_loss}", "--precision", "bf16")
        == 0
    )
    assert np.isfinite(read_metrics(out, "epoch")[0]["G_total"])


def test_translate_keeps_size_and_writes_rgb(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "1") == 0
    inputs = tmp_path / "in"
    inputs.mkdir()
    rgba = np.random.default_rng(0).integers(0, 255, (37, 53, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(inputs / "odd.png")
    Image.fromarray(rgba[:, :, 0], "L").resize((45, 31)).save(inputs / "gray.jpg")
    assert (
        main(
            ["translate", "--run", str(run), "--direction", "a2b", str(inputs), "--out", str(tmp_path / "o")]
        )
        == 0
    )
    a = Image.open(tmp_path / "o" / "odd.png")
    b = Image.open(tmp_path / "o" / "gray.png")
    assert (a.mode, a.size) == ("RGB", (53, 37))
    assert (b.mode, b.size) == ("RGB", (45, 31))
    assert (
        main(
            [
                "translate",
                "--run",
                str(run),
                "--direction",
                "b2a",
                "--checkpoint",
                "7",
                str(inputs),
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )


def test_info_json(capsys) -> None:
    assert main(["info", "--preset", "resnet9", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["generator_params"] == 11_378_179 and info["discriminator_params"] == 2_764_737
    assert 50 < info["generator_gflops_256"] < 200


def test_eval_writes_json(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert json.loads((run / "eval.json").read_text())["gt_psnr"] == res["gt_psnr"]
    for k in (
        "gt_psnr",
        "gt_ssim",
        "cycle_psnr",
        "cycle_ssim",
        "identity_psnr",
        "identity_ssim",
        "affine_psnr",
        "affine_ssim",
        "checkerboard_flat",
        "tint_delta_b",
        "generator_params",
        "seconds_per_epoch",
    ):
        assert np.isfinite(res[k]), k


def test_ema_generators_are_used_for_inference(tiny_data: Path, tmp_path: Path) -> None:
    from ganlab.cyclegan.translate import load_run_models

    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "1", "--set", "train.ema_decay=0.5") == 0
    ema, _, _ = load_run_models(run)
    raw, _, _ = load_run_models(run, use_ema=False)
    ckpt = load_file(run / "checkpoints" / "epoch_0001.safetensors")
    w = "net.1.weight"
    assert (ema["G_A2B"].state_dict()[w] == ckpt[f"model/G_A2B_ema/{w}"]).all()
    assert (raw["G_A2B"].state_dict()[w] == ckpt[f"model/G_A2B/{w}"]).all()
    assert not (ckpt[f"model/G_A2B_ema/{w}"] == ckpt[f"model/G_A2B/{w}"]).all()
    # `ganlab eval --raw` scores the raw generators into its own file, leaving eval.json alone.
    assert main(["eval", "--run", str(run), "--json"]) == 0
    assert main(["eval", "--run", str(run), "--json", "--raw"]) == 0
    smoothed = json.loads((run / "eval.json").read_text())
    raw_res = json.loads((run / "eval_raw.json").read_text())
    assert (smoothed["generators"], raw_res["generators"]) == ("ema", "raw")
    assert smoothed["cycle_psnr"] != raw_res["cycle_psnr"]


def test_ema_warmup_ramps_the_decay() -> None:
    import torch
    from torch import nn

    from ganlab.cyclegan.ema import make_ema, update_ema, warmup_decay

    assert warmup_decay(0.995, 0) == pytest.approx(0.1)
    assert warmup_decay(0.995, 90) == pytest.approx(0.91)
    assert warmup_decay(0.995, 10_000) == 0.995  # the configured decay once the ramp passes it
    models = nn.ModuleDict({k: nn.Linear(2, 2) for k in ("G_A2B", "G_B2A")})
    ema = make_ema(models)
    start = ema["G_A2B_ema"].weight.clone()
    with torch.no_grad():
        models["G_A2B"].weight.add_(1.0)
    update_ema(ema, models, 0.995, step=0)  # the first update keeps only 10% of the initial weights
    expected = 0.1 * start + 0.9 * models["G_A2B"].weight
    assert torch.allclose(ema["G_A2B_ema"].weight, expected)


def test_a_torch_compile_failure_is_one_clear_error(
    tiny_data: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inductor once failed on a resize-conv generator with its own traceback; a failure of torch.compile
    (not of the model) is one line that says how to train without it."""
    import torch._dynamo.exc

    class Failing(torch.nn.Module):
        def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise torch._dynamo.exc.TorchDynamoException("vr must not be None for symbol q3\n(long trace)")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Failing())
    assert train(tiny_data, tmp_path / "run", "--epochs", "1", "--set", "train.compile=true") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.compile failed" in err[0] and "train.compile=false" in err[0], err
    assert "vr must not be None" in err[0]


def test_compiled_run_trains_and_saves_plain_modules(tiny_data: Path, tmp_path: Path) -> None:
    """train.compile wraps what the step runs in torch.compile; checkpoints hold the plain modules (same
    keys as an eager run), so a compiled run resumes eagerly and the other way round."""
    from safetensors import safe_open

    compiled, eager = tmp_path / "compiled", tmp_path / "eager"
    assert train(tiny_data, compiled, "--epochs", "1", "--set", "train.compile=true") == 0
    assert train(tiny_data, eager, "--epochs", "1") == 0

    def keys(run: Path) -> set[str]:
        with safe_open(str(run / "checkpoints" / "epoch_0001.safetensors"), "pt") as f:
            return set(f.keys())

    assert keys(compiled) == keys(eager)
    assert (
        train(tiny_data, compiled, "--resume", str(compiled), "--epochs", "2", "--set", "train.compile=false")
        == 0
    )
    assert json.loads((compiled / "checkpoints" / "latest.json").read_text())["epoch"] == 2
