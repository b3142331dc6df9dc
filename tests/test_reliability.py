"""Nothing lost, nothing crashes: checkpoint cadence, damaged checkpoints and the fallback to the previous
one, a full disk or unwritable run directory, non-finite losses, and untrusted config and weights files.
(The kill -9 harness is tests/test_killtest.py; hostile images are tests/test_hostile_files.py.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganlab.cli import main
from ganlab.core import checkpoint as ckpt_mod
from ganlab.core.cadence import Cadence
from ganlab.core.checkpoint import load_checkpoint
from ganlab.core.config import ConfigError, parse_set
from ganlab.core.errors import CheckpointError, StorageError
from ganlab.core.nonfinite import NonFiniteLoss
from ganlab.core.rundir import MetricsLog, RunDir, load_run_checkpoint, read_metrics, run_meta
from ganlab.cyclegan.config import Phase, build_cyclegan_config
from ganlab.sr.config import build_sr_config

from .conftest import TINY
from .hostile_corpus import deny_reading

SRC = Path(__file__).resolve().parent.parent / "src" / "ganlab"


pytestmark = pytest.mark.usefixtures("one_thread")


FAST = ["--set", "model.n_residual=1", "--set", "train.eval_images=0"]


def train(data: Path, out: Path, *extra: str) -> int:
    args = ["train", "--data", str(data), "--preset", "model2", "--out", str(out), *TINY, *FAST]
    return main([*args, *extra])


def names(run: Path) -> list[str]:
    return [p.name for p in RunDir(run).checkpoint_files()]


# ------------------------------------------------------------------------------------------ cadence


def test_cadence_by_steps_and_by_minutes() -> None:
    now = [0.0]
    c = Cadence(3, 1.0, clock=lambda: now[0])
    assert [g for g in range(1, 10) if c.due(g)] == [3, 6, 9]
    now[0] = 59.0
    assert not c.due(1)
    now[0] = 60.0
    assert c.due(1)
    c.saved()
    assert not c.due(1)
    assert not Cadence(None, None).due(100)


def test_cadence_writes_mid_epoch_checkpoints_for_both_tasks(tiny_data: Path, tmp_path: Path) -> None:
    every, steps, epochs = 2, 3, 2  # 6 images, batch 2: 3 steps per epoch
    expected = []
    for g in range(1, steps * epochs + 1):
        e, s = (g - 1) // steps + 1, (g - 1) % steps + 1
        if s == steps:
            expected.append(f"epoch_{e:04d}.safetensors")
        elif g % every == 0:
            expected.append(f"epoch_{e:04d}_step{s:06d}.safetensors")
    keep = ["--set", "train.keep_checkpoints=0", "--set", f"train.checkpoint_every_steps={every}"]
    assert train(tiny_data, tmp_path / "cg", "--epochs", str(epochs), *keep) == 0
    assert names(tmp_path / "cg") == expected
    sr = ["sr", "train", "--data", str(tiny_data / "trainA"), "--out", str(tmp_path / "sr"), "--quiet"]
    sr += ["--size", "32", "--scale", "2", "--batch-size", "2", "--epochs", str(epochs), *keep]
    sr += [
        "--set",
        f"train.steps_per_epoch={steps}",
        "--set",
        "data.eval_images=0",
        "--set",
        "model.hidden=8",
    ]
    assert main([*sr, "--set", "model.n_residual=1"]) == 0
    assert names(tmp_path / "sr") == expected
    # By time: a cadence shorter than a step checkpoints after every step.
    every_step = ["--set", "train.keep_checkpoints=0", "--set", "train.checkpoint_every_minutes=1e-9"]
    assert train(tiny_data, tmp_path / "t", "--epochs", "1", *every_step) == 0
    assert names(tmp_path / "t") == [f"epoch_0001_step{s:06d}.safetensors" for s in (1, 2)] + [
        "epoch_0001.safetensors"
    ]


def test_pruning_keeps_the_newest_by_progress_not_by_name(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.create()
    for n in ("epoch_0001", "epoch_0002_step000002", "epoch_0002", "epoch_0003_step000001"):
        (run.checkpoints / f"{n}.safetensors").write_bytes(b"x")
    run.prune(2, 0, protect=run.checkpoints / "epoch_0003_step000001.safetensors")
    # By name, epoch_0002 would sort before its own mid-epoch checkpoint and be deleted.
    assert names(tmp_path) == ["epoch_0002.safetensors", "epoch_0003_step000001.safetensors"]
    (run.checkpoints / ".epoch_0004.safetensors.tmp-123").write_bytes(b"half")
    run.create()  # a new invocation removes what a killed writer left
    assert not list(run.checkpoints.glob(".*"))
    with pytest.raises(ConfigError, match="keep_checkpoints: must be 0 .* or >= 2"):
        build_cyclegan_config(overrides=parse_set(["train.keep_checkpoints=1"]))


# ------------------------------------------------------------------------------ damaged checkpoints


def test_truncation_and_bit_flips_anywhere_are_detected(tiny_data: Path, tmp_path: Path) -> None:
    assert train(tiny_data, tmp_path / "run", "--epochs", "1") == 0
    good = (tmp_path / "run" / "checkpoints" / "epoch_0001.safetensors").read_bytes()
    header = 8 + int.from_bytes(good[:8], "little")
    positions = sorted({*range(0, header, max(1, header // 12)), *range(header, len(good), len(good) // 12)})
    victim = tmp_path / "victim.safetensors"
    for pos in positions:
        flipped = bytearray(good)
        flipped[pos] ^= 1 << (pos % 8)
        victim.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError):
            load_checkpoint(victim)
    for cut in (8, header, (header + len(good)) // 2, len(good) - 1):
        victim.write_bytes(good[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(victim)
    # A file from before checksums (format 1) still loads.
    old = tmp_path / "v1.safetensors"
    save_file({"model/x/w": torch.ones(2)}, str(old), metadata={"ganlab": json.dumps({"format_version": 1})})
    assert load_checkpoint(old).meta["format_version"] == 1


def test_damaged_latest_falls_back_in_every_command(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "2") == 0
    ckpts = run / "checkpoints"
    latest = ckpts / "epoch_0002.safetensors"
    latest.write_bytes(latest.read_bytes()[:-100])  # truncated
    capsys.readouterr()
    warnings: list[str] = []
    assert load_run_checkpoint(run, warn=warnings.append).path == ckpts / "epoch_0001.safetensors"
    assert str(latest) in warnings[0] and f"falling back to {ckpts / 'epoch_0001.safetensors'}" in warnings[1]
    assert run_meta(run, warn=lambda _: None)["epoch"] == 1  # safetensors checks the length too
    out = tmp_path / "out"
    assert main(["translate", "--run", str(run), str(tiny_data / "testA"), "--out", str(out)]) == 0
    assert "falling back to" in capsys.readouterr().err and len(list(out.iterdir())) == 3
    assert main(["eval", "--run", str(run), "--json"]) == 0
    assert "falling back to" in capsys.readouterr().err
    # Resuming retrains from the intact checkpoint and replaces the damaged one.
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "falling back to" in capsys.readouterr().err
    assert load_checkpoint(latest).meta["epoch"] == 2
    for p in RunDir(run).checkpoint_files():  # now damage every checkpoint: a clear error, exit 2
        data = bytearray(p.read_bytes())
        data[-1] ^= 0xFF
        p.write_bytes(bytes(data))
    assert main(["translate", "--run", str(run), str(tiny_data / "testA"), "--out", str(out)]) == 2
    assert re.search(
        r"error: .*run: no intact checkpoint \(2 damaged; the first: .*checksum", capsys.readouterr().err
    )


# ---------------------------------------------------------------------------- disk full, no access


def _enospc(*args, **kwargs):
    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


@pytest.mark.parametrize("failure", ["disk full", "permission denied"])
def test_a_failed_write_stops_training_and_keeps_the_last_checkpoint(
    tiny_data: Path, tmp_path: Path, monkeypatch, capsys, failure: str
) -> None:
    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "1") == 0
    target = run / "checkpoints" / "epoch_0002.safetensors"
    if failure == "disk full":
        monkeypatch.setattr(ckpt_mod, "save_file", _enospc)
        reason = "No space left on device"
    else:  # root ignores chmod: refuse the write where it happens, in open()
        deny_reading(monkeypatch, target.with_name(f".{target.name}.tmp-{os.getpid()}"))
        reason = "Permission denied"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write checkpoint {target}: " in err and reason in err
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["epoch"] == 1
    assert load_run_checkpoint(run).meta["epoch"] == 1
    assert not target.exists() and not list((run / "checkpoints").glob(".*tmp*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_run_directory_is_a_clear_error(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "1") == 0
    (run / "checkpoints").chmod(0o555)
    try:
        assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    finally:
        (run / "checkpoints").chmod(0o755)
    assert "Permission denied" in capsys.readouterr().err


def test_metrics_write_failure_names_the_file(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "gone" / "metrics.jsonl")
    with pytest.raises(StorageError, match=re.escape(f"cannot write {tmp_path / 'gone' / 'metrics.jsonl'}")):
        log.write({"type": "step"})


# -------------------------------------------------------------------------------- non-finite losses


def _snapshot(*stateful) -> list[torch.Tensor]:
    """Parameters of modules and state tensors of optimizers (norm layers' running statistics are not
    parameters: a skipped step's forward pass still updates them)."""
    out = []
    for s in stateful:
        if isinstance(s, torch.nn.Module):
            out += [p.detach().clone() for p in s.parameters()]
        else:
            out += [
                v.clone()
                for st in s.state_dict()["state"].values()
                for v in st.values()
                if torch.is_tensor(v)
            ]
    return out


def _tiny_cyclegan_step() -> tuple:
    """(models, optimizers, the train_step arguments) of a tiny CycleGAN on one 32 px image, fp32."""
    from ganlab.cyclegan import step as cg
    from ganlab.cyclegan.pool import ImagePool

    small = {"model": {"hidden": 4, "n_residual": 1}, "disc": {"hidden": 4, "n_layers": 2}}
    cfg = build_cyclegan_config(overrides=small)
    models, x = cg.build_models(cfg), torch.rand(1, 3, 32, 32) * 2 - 1
    opts = cg.build_optimizers(models, cfg.train)
    pools = {k: ImagePool(0) for k in ("D_A", "D_B")}
    amp = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    args = (models, opts, x, x.flip(-1), Phase(), "lsgan", pools, amp)
    return models, opts, args


def test_a_nan_loss_skips_the_whole_update_in_both_steps(monkeypatch) -> None:
    from ganlab.cyclegan import step as cg
    from ganlab.sr import step as sr

    models, opts, args = _tiny_cyclegan_step()
    amp = args[-1]
    cg.train_step(*args)  # a normal step first: the optimizers have state
    before = _snapshot(models, *opts.values())
    real = cg.recon_loss
    monkeypatch.setattr(cg, "recon_loss", lambda *a: real(*a) * float("nan"))
    with pytest.raises(NonFiniteLoss) as err:
        cg.train_step(*args)
    assert {"cycle_A", "cycle_B", "G_total"} <= set(err.value.terms) and "D_A" not in err.value.terms
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(models, *opts.values())))

    scfg = build_sr_config(overrides={"model": {"hidden": 4, "n_residual": 1}, "train": {"stage": "gan"}})
    m = sr.build_models(scfg, torch.device("cpu"))
    before = _snapshot(*m.modules().values(), *m.optimizers().values())
    monkeypatch.setattr(sr, "pixel_loss", lambda *a: torch.tensor(float("inf")))
    with pytest.raises(NonFiniteLoss, match="pixel"):
        sr.train_step(m, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32), scfg.train, amp)
    assert all(
        torch.equal(a, b) for a, b in zip(before, _snapshot(*m.modules().values(), *m.optimizers().values()))
    )


def test_a_non_finite_gradient_with_finite_losses_skips_the_update() -> None:
    """An exploding backward can overflow a gradient while every loss stays finite (a flat crop through
    4 residual blocks in bf16 did): the step's check covers the gradients too, so Adam never writes NaN
    into the weights."""
    from ganlab.cyclegan import step as cg

    models, opts, args = _tiny_cyclegan_step()
    cg.train_step(*args)
    before = _snapshot(models, *opts.values())
    stem = next(models["G_B2A"].parameters())
    hook = stem.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteLoss) as err:
        cg.train_step(*args)
    hook.remove()
    assert err.value.terms == ["grad:G_B2A"]
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(models, *opts.values())))
    cg.train_step(*args)  # and the next step trains
    assert not all(torch.equal(a, b) for a, b in zip(before, _snapshot(models, *opts.values())))


def test_nan_steps_are_logged_then_stop_the_run(tiny_data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from ganlab.cyclegan import step as cg

    real, calls, bad = cg.recon_loss, [0], set()
    monkeypatch.setattr(cg, "recon_loss", lambda *a: real(*a) * (float("nan") if _count(calls) in bad else 1))
    bad.update({5})  # the 2nd step's cycle_A (four calls per step: cycle A, cycle B, identity A, B)
    run = tmp_path / "run"
    assert train(tiny_data, run, "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert (
        "warning: non-finite loss (cycle_A, G_total) at epoch 1 step 2 (global step 2); update skipped (1/3"
        in out
    )
    assert [(r["step"], r["terms"]) for r in read_metrics(run, "nonfinite")] == [(2, ["cycle_A", "G_total"])]
    bad.update(range(calls[0] + 1, calls[0] + 100))  # every step from now on
    assert (
        main(["train", "--resume", str(run), "--epochs", "2", "--set", "train.max_bad_steps=2", "--quiet"])
        == 2
    )
    err = capsys.readouterr().err
    assert "training stopped: 2 steps in a row had a non-finite loss, the last non-finite loss" in err
    assert f"the last good checkpoint is kept: {run / 'checkpoints' / 'epoch_0001.safetensors'}" in err
    weights = load_run_checkpoint(run).tensors
    assert all(torch.isfinite(v).all() for k, v in weights.items() if k.startswith("model/"))


def _count(calls: list[int]) -> int:
    calls[0] += 1
    return calls[0]


# ------------------------------------------------------------------------------- untrusted inputs


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "1e999"])
def test_non_finite_config_numbers_are_rejected(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.lr: expected a finite number"):
        build_cyclegan_config(overrides=parse_set([f"train.lr={value}"]))
    f = tmp_path / "c.yaml"
    f.write_text(f"train:\n  adv_weight: {value}\n")
    with pytest.raises(ConfigError, match=r"train\.adv_weight: expected a finite number"):
        build_sr_config(files=[f])


@pytest.mark.parametrize(
    ("build", "setting", "message"),
    [
        (build_cyclegan_config, "train.log_every=0", "log_every: must be >= 1"),
        (build_cyclegan_config, "train.beta1=1.5", "beta1, beta2: must lie in [0, 1)"),
        (build_cyclegan_config, "train.checkpoint_every_steps=0", "checkpoint_every_steps: must be >= 1"),
        (build_cyclegan_config, "train.checkpoint_every_minutes=-1", "checkpoint_every_minutes: must be > 0"),
        (build_cyclegan_config, "train.max_bad_steps=0", "max_bad_steps: must be >= 1"),
        (build_cyclegan_config, "train.keep_every=-1", "keep_every: must be >= 0"),
        (build_cyclegan_config, "data.max_images=0", "max_images: must be >= 1"),
        (build_cyclegan_config, "train.batch_size=two", "train.batch_size: expected an integer"),
        (build_sr_config, "train.lr_min_ratio=2", "lr_min_ratio: must lie in [0, 1]"),
        (build_sr_config, "train.grad_clip=0", "grad_clip: must be > 0"),
        (build_sr_config, "train.max_bad_steps=0", "max_bad_steps: must be >= 1"),
        (build_sr_config, "data.detail_candidates=0", "detail_candidates: must be >= 1"),
        (build_sr_config, "train.betas=[0.9, 1.0]", "betas: must lie in [0, 1)"),
    ],
)
def test_config_ranges_are_checked(build, setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(overrides=parse_set([setting]))


def test_yaml_is_read_with_the_safe_loader(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    f = tmp_path / "evil.yaml"
    f.write_text(f"train:\n  lr: !!python/object/apply:os.mkdir [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_cyclegan_config(files=[f])
    assert not marker.exists()


class _RunsCode:
    """Pickles to a call of os.mkdir: loading it with plain pickle runs that call."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    from ganlab.models.vgg import VGGWeightsError, load_vgg19_features

    marker, evil = tmp_path / "ran", tmp_path / "vgg19.pth"
    torch.save({"features.0.weight": _RunsCode(str(marker))}, evil)
    torch.load(evil, weights_only=False)  # what an unsafe load would do: run the code
    assert marker.is_dir()
    marker.rmdir()
    with pytest.raises(VGGWeightsError, match="cannot read VGG19 weights"):
        load_vgg19_features(evil)
    assert not marker.exists()


def test_every_load_of_untrusted_files_is_safe() -> None:
    sources = {p: p.read_text() for p in SRC.rglob("*.py")}
    loads = [(p, m) for p, s in sources.items() for m in re.finditer(r"torch\.load\((.*)\)", s)]
    assert loads  # the VGG weights reader
    assert all("weights_only=True" in m.group(1) for _, m in loads), loads
    unsafe = re.compile(
        r"yaml\.(load|unsafe_load|full_load)\(|pickle\.loads?\(|yaml\.Loader|yaml\.UnsafeLoader"
    )
    assert not [p for p, s in sources.items() if unsafe.search(s)]
    assert load_file  # safetensors files are the checkpoint format: no pickle involved


def test_resume_from_a_cadence_checkpoint_is_exact_with_augmentation(tiny_data: Path, tmp_path: Path) -> None:
    """Augmentation draws from the global RNG: a mid-epoch resume must leave it where an uninterrupted run
    has it (the data loader draws its base seed from its own generator)."""
    aug = ["--set", "train.augment=[color, translation]", "--set", "train.checkpoint_every_steps=1"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert train(tiny_data, straight, "--epochs", "1", *aug) == 0
    assert train(tiny_data, cut, "--epochs", "1", *aug) == 0
    ckpts = cut / "checkpoints"
    for p in ckpts.iterdir():  # back to the checkpoint after step 1, as if killed at step 2
        if p.name not in ("epoch_0001_step000001.safetensors",):
            p.unlink()
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    a = load_file(straight / "checkpoints" / "epoch_0001.safetensors")
    b = load_file(ckpts / "epoch_0001.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
