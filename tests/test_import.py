"""`ganlab import` and `ganlab translate --weights`: reference weights become a normal run that translate,
info, eval and train --resume accept (or refuse clearly where networks are missing)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ganlab.cli import main
from ganlab.cyclegan.translate import load_run_models

from .conftest import make_dataset
from .reference_nets import RefDiscriminator, RefGenerator, randomized, save_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_folder(root: Path) -> dict[str, torch.nn.Module]:
    """A reference training checkpoints folder (6-block generators, ngf 8; 3-layer PatchGANs, ndf 8)."""
    root.mkdir(parents=True)
    nets = {
        "G_A": randomized(RefGenerator(8, 6), 1),
        "G_B": randomized(RefGenerator(8, 6), 2),
        "D_A": randomized(RefDiscriminator(8, 3), 3),
        "D_B": randomized(RefDiscriminator(8, 3), 4),
    }
    for name, net in nets.items():
        save_state_dict(net.state_dict(), root / f"latest_net_{name}.pth")
    return nets


def one_line_error(capsys, command: str, needle: str) -> None:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ganlab {command}: error: ") and needle in lines[0], lines


def test_checkpoints_folder_is_a_run_that_trains_on(tmp_path, capsys) -> None:
    nets = reference_folder(tmp_path / "ref")
    run = tmp_path / "run"
    assert main(["import", str(tmp_path / "ref"), "--out", str(run)]) == 0
    models, cfg, meta = load_run_models(run)
    assert (cfg.model.n_residual, cfg.model.hidden, cfg.disc.n_layers, cfg.disc.hidden) == (6, 8, 3, 8)
    x = torch.rand(1, 3, 36, 44) * 2 - 1
    with torch.no_grad():
        assert (models["G_A2B"](x) - nets["G_A"](x)).abs().max() < 1e-5
        assert (models["G_B2A"](x) - nets["G_B"](x)).abs().max() < 1e-5
        # The reference's D_A judges domain B (it scores G_A's fakes): it becomes ganlab's D_B.
        assert (models["D_B"](x) - nets["D_A"](x)).abs().max() < 1e-5
        assert (models["D_A"](x) - nets["D_B"](x)).abs().max() < 1e-5

    data = make_dataset(tmp_path / "data", n_train=2, n_test=1, size=36)
    assert main(["translate", "--run", str(run), str(data / "testB"), "--out", str(tmp_path / "o"), "--quiet", "--direction", "b2a"]) == 0  # fmt: skip
    assert Image.open(tmp_path / "o" / "000.png").size == (36, 36)
    capsys.readouterr()
    assert main(["info", "--run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["model"]["upsample"] == "convtranspose"

    before = load_file(run / "checkpoints" / "epoch_0000.safetensors")
    args = ["train", "--resume", str(run), "--data", str(data), "--epochs", "1", "--size", "32", "--quiet"]
    for key in (
        "train.epochs_decay=0",
        "train.max_steps_per_epoch=1",
        "train.eval_images=0",
        "train.samples=1",
    ):
        args += ["--set", key]
    assert main(args) == 0
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert (latest["epoch"], latest["file"]) == (1, "epoch_0001.safetensors")
    after = load_file(run / "checkpoints" / "epoch_0001.safetensors")
    for net in ("G_A2B", "G_B2A", "D_A", "D_B"):  # every network took its step
        key = f"model/{net}/net.1.weight" if net.startswith("G") else f"model/{net}/net.0.weight"
        assert not torch.equal(before[key], after[key]), net
    assert any(k.startswith("optim/D_A/") for k in after)


def test_single_generator_translates_a2b_only(tmp_path, capsys) -> None:
    ref = randomized(RefGenerator(8, 9, dropout=True), 5)
    weights = tmp_path / "horse2zebra.pth"
    save_state_dict(ref.state_dict(), weights)
    inputs = tmp_path / "in"
    inputs.mkdir()
    img = np.random.default_rng(0).integers(0, 255, (29, 35, 3), dtype=np.uint8)
    Image.fromarray(img).save(inputs / "odd.png")

    direct = tmp_path / "direct"
    common = [str(inputs), "--quiet", "--precision", "fp32"]
    assert main(["translate", "--weights", str(weights), "--out", str(direct), *common]) == 0
    run = tmp_path / "run"
    assert main(["import", str(weights), "--out", str(run)]) == 0
    assert main(["translate", "--run", str(run), "--out", str(tmp_path / "via_run"), *common]) == 0
    a, b = (np.asarray(Image.open(d / "odd.png")) for d in (direct, tmp_path / "via_run"))
    assert a.shape == img.shape and np.array_equal(a, b)
    capsys.readouterr()

    for argv, command, needle in (
        (
            ["translate", "--run", str(run), "--direction", "b2a", "--out", str(tmp_path / "x"), *common],
            "translate",
            "no b2a generator",
        ),  # fmt: skip
        (["eval", "--run", str(run), "--data", str(inputs)], "eval", "needs both generators"),
        (["train", "--resume", str(run), "--data", str(inputs)], "train", "training needs both generators"),
        (["import", str(weights), "--out", str(run)], "import", "already holds a run"),
    ):
        assert main(argv) == 2
        one_line_error(capsys, command, needle)

    # The reverse generator as a second file: both directions.
    save_state_dict(randomized(RefGenerator(8, 9, dropout=True), 6).state_dict(), tmp_path / "z2h.pth")
    both = tmp_path / "both"
    assert main(["import", str(weights), "--b2a", str(tmp_path / "z2h.pth"), "--out", str(both)]) == 0
    assert main(["translate", "--run", str(both), "--direction", "b2a", "--out", str(tmp_path / "b"), *common]) == 0  # fmt: skip


def test_import_refuses_a_file_that_would_run_code(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"model.1.weight": torch.zeros(8, 3, 7, 7), "x": Evil()}, tmp_path / "evil.pth")
    assert main(["import", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "import", "arbitrary unpickling")
    assert main(["translate", "--weights", str(tmp_path / "evil.pth"), str(tmp_path), "--out", "o"]) == 2
    one_line_error(capsys, "translate", "arbitrary unpickling")
    assert not marker.exists() and not (tmp_path / "run").exists()
