from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ganlab.cyclegan.demo import run as demo_mod
from ganlab.cyclegan.demo.run import demo_config, plan_epochs, run_demo

pytest.importorskip("skimage")


def test_plan_epochs_fits_budget() -> None:
    epochs, decay = plan_epochs(step_seconds=0.5, minutes=10, steps_per_epoch=40)
    steps = (epochs + decay) * 40
    assert steps * 0.5 <= 10 * 60 and steps * 0.5 > 0.6 * 10 * 60
    assert epochs - decay in (0, 1)
    assert plan_epochs(100.0, 0.1, 40) == (1, 1)  # never fewer than 2 epochs


@pytest.mark.parametrize(("bf16_seconds", "expected"), [(0.30, "bf16"), (0.46, "fp32"), (None, "fp32")])
def test_demo_trains_in_bf16_only_where_it_is_faster(monkeypatch, bf16_seconds, expected) -> None:
    def fake_measure(cfg, device, steps=3):
        assert cfg.train.precision == "bf16"
        if bf16_seconds is None:
            raise RuntimeError("no bf16 kernels")
        return bf16_seconds

    monkeypatch.setattr(demo_mod, "measure_step_seconds", fake_measure)
    cfg = demo_config(Path("unused"), 10.0)
    assert cfg.train.precision == "fp32"
    chosen, seconds = demo_mod._faster_precision(cfg, torch.device("cpu"), 0.5, log=lambda s: None)
    assert chosen.train.precision == expected
    assert seconds == (bf16_seconds if expected == "bf16" else 0.5)


def test_tiny_demo_writes_report_and_eval(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_demo(
        data=tmp_path / "demo",
        out=out,
        minutes=1.0,
        progress=False,
        data_kwargs={"n_train_a": 24, "n_train_b": 24, "n_test": 4},
        overrides={
            "model": {"hidden": 8},
            "disc": {"hidden": 8, "n_layers": 2},
            "data": {"size": 32, "load_size": 36},
            "train": {"max_steps_per_epoch": 1, "batch_size": 2, "eval_images": 2},
        },
    )
    saved = json.loads((out / "eval.json").read_text())
    for key in (
        "gt_psnr",
        "gt_ssim",
        "cycle_psnr",
        "cycle_ssim",
        "identity_psnr",
        "identity_ssim",
        "affine_psnr",
        "affine_ssim",
    ):
        assert saved[key] == pytest.approx(res[key])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # grid, curves
    assert "oracle affine" in html and "http://" not in html and "https://" not in html
    assert (out / "demo_grid.png").is_file()


@pytest.mark.parametrize(
    "gt, expected",
    [
        ({"gt_psnr": 18.9, "gt_ssim": 0.60}, "not yet closer"),  # PSNR below the identity
        ({"gt_psnr": 19.2, "gt_ssim": 0.58}, "not yet closer"),  # SSIM below the identity
        ({"gt_psnr": 19.2, "gt_ssim": 0.60}, "not the oracle colour map"),
        ({"gt_psnr": 20.0, "gt_ssim": 0.62}, "both baselines"),
    ],
)
def test_verdict_needs_psnr_and_ssim_above_each_baseline(gt: dict, expected: str) -> None:
    from ganlab.cyclegan.demo.report import verdict

    base = {"identity_psnr": 19.0, "identity_ssim": 0.59, "affine_psnr": 19.7, "affine_ssim": 0.61}
    assert expected in verdict({**base, **gt})
    assert verdict({}).startswith("No ground truth")
