"""ONNX export (`ganlab export`, `ganlab sr export`) and `ganlab translate --onnx` (onnxruntime only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlab.cli import main
from ganlab.cyclegan.export import check_sizes, export_generator
from ganlab.models.blocks import UPSAMPLE_KINDS
from ganlab.models.generator import GeneratorConfig, ResnetGenerator
from ganlab.models.sr import SRResNet, SRResNetConfig
from ganlab.sr.export import CHECK_SIZES, export_sr_generator

from .test_seamless import make_cyclegan_run, wake

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from ganlab.core.onnx_export import compare_onnx  # noqa: E402


@pytest.mark.parametrize("upsample", UPSAMPLE_KINDS)
def test_generator_export_matches_pytorch_on_three_sizes(upsample: str, tmp_path: Path) -> None:
    cfg = GeneratorConfig(
        hidden=4, n_down=2, n_residual=1, upsample=upsample, global_skip=upsample == "resize_conv"
    )
    g = wake(ResnetGenerator(cfg))
    path = export_generator(g, tmp_path / "g.onnx", {"direction": "a2b"})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    axes = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert axes[0] and axes[2] and axes[3]  # batch, height and width are symbolic
    sizes = check_sizes(g)
    assert any(h % 2 and w % 2 for h, w in sizes)
    assert compare_onnx(path, g, sizes) <= 1e-4


@pytest.mark.parametrize("scale, skip", [(2, "bicubic"), (4, "none"), (4, "bicubic")])
def test_sr_export_matches_pytorch(scale: int, skip: str, tmp_path: Path) -> None:
    g = wake(SRResNet(SRResNetConfig(scale=scale, hidden=4, n_residual=1, norm="batch", skip=skip)))
    path = export_sr_generator(g, tmp_path / "sr.onnx", {})
    assert compare_onnx(path, g, CHECK_SIZES, low=0.0, high=1.0) <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["ganlab.scale"]) == scale


def test_export_cli_then_translate_with_onnxruntime_alone(tmp_path: Path, capsys) -> None:
    run = make_cyclegan_run(tmp_path / "run")
    out = tmp_path / "g.onnx"
    assert main(["export", "--run", str(run), "--direction", "b2a", "--out", str(out)]) == 0
    assert "max abs difference" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["ganlab.config"])["preset"] == "resnet9"
    assert (
        meta["ganlab.direction"] == "b2a"
        and int(meta["ganlab.opset"]) == onnx.load(str(out)).opset_import[0].version
    )

    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(src / "a.png")
    # A fresh interpreter: the command must not import PyTorch or any training code.
    code = (
        "import sys; from ganlab.cli import main; "
        f"rc = main(['translate', '--onnx', {str(out)!r}, {str(tmp_path / 'in')!r}, '--out', {str(tmp_path / 'o')!r}]); "
        "bad = [m for m in ('torch', 'ganlab.cyclegan.trainer', 'ganlab.core.loop') if m in sys.modules]; "
        "print('RC', rc, 'IMPORTED', bad)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "RC 0 IMPORTED []" in res.stdout, res.stdout + res.stderr
    got = np.asarray(Image.open(tmp_path / "o" / "sub" / "a.png"))
    assert got.shape == rgb.shape

    # The same picture through PyTorch: equal up to a rounding step of the 8-bit output.
    assert (
        main(
            [
                "translate",
                "--run",
                str(run),
                "--direction",
                "b2a",
                str(src),
                "--out",
                str(tmp_path / "t"),
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    ref = np.asarray(Image.open(tmp_path / "t" / "a.png")).astype(int)
    assert np.abs(got.astype(int) - ref).max() <= 1


def test_onnx_errors_are_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["translate", "--onnx", str(bad), str(img), "--out", str(tmp_path / "o")]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
    # The model flags are one required, mutually exclusive group: argparse's one-line error, exit 2.
    for argv, says in (
        (["translate", str(img), "--out", str(tmp_path / "o")], "--run"),
        (["translate", "--onnx", str(bad), "--run", "r", str(img), "--out", "o"], "not allowed with"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert says in capsys.readouterr().err


def test_missing_extra_is_a_clear_error(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now fails as if not installed
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert (
        main(["translate", "--onnx", str(tmp_path / "m.onnx"), str(img), "--out", str(tmp_path / "o")]) == 2
    )
    assert "ganlab[export]" in capsys.readouterr().err


def test_sr_export_cli(tmp_path: Path, capsys) -> None:
    from ganlab.core.rundir import write_weights_run
    from ganlab.sr.config import build_sr_config

    cfg = build_sr_config("srresnet-small", overrides={"model": {"scale": 2, "hidden": 4, "n_residual": 1}})
    run = write_weights_run(tmp_path / "run", "sr", cfg, {"generator": wake(SRResNet(cfg.model))})
    out = tmp_path / "sr.onnx"
    assert main(["sr", "export", "--run", str(run), "--out", str(out)]) == 0
    diff = float(capsys.readouterr().out.split("max abs difference")[1])
    assert diff <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["ganlab.task"] == "sr" and json.loads(meta["ganlab.config"])["model"]["scale"] == 2
    # An SR file run by `translate --onnx` upscales.
    Image.new("RGB", (9, 7), (200, 30, 90)).save(tmp_path / "x.png")
    assert main(["translate", "--onnx", str(out), str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "x.png").size == (18, 14)
