from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path

import pytest
import torch
import yaml

from ganlab.core.config import to_dict
from ganlab.core.rundir import read_metrics
from ganlab.cyclegan.demo import run as demo_mod
from ganlab.cyclegan.demo.run import demo_config, plan_epochs, run_demo


def test_demo_recipe_comes_from_the_shipped_yaml() -> None:
    recipe = files("ganlab") / "configs" / "demo" / "cyclegan.yaml"
    assert yaml.safe_load(recipe.read_text()) == demo_mod.demo_recipe()
    cfg = demo_config(Path("data/x"), 7.0)
    assert cfg.preset == "model2"
    m, d, t = cfg.model, cfg.disc, cfg.train
    assert (m.hidden, m.global_skip, m.upsample, m.down_padding) == (32, True, "resize_conv", "reflect")
    assert (m.n_down, m.n_residual) == (1, 2)  # the rest of the architecture is the preset's
    assert (d.hidden, d.n_layers, d.antialias, d.norm) == (32, 2, True, "batch")
    assert (cfg.data.size, cfg.data.load_size, cfg.data.root) == (64, 128, "data/x")
    assert (t.batch_size, t.lr, t.ema_decay, t.augment, t.cycle_blur) == (4, 2e-4, 0.999, ["channels"], 1.5)
    assert t.huber_beta == 0.05
    assert (t.max_steps_per_epoch, t.log_every, t.eval_images, t.minutes) == (40, 10, 16, 7.0)
    assert (t.gan_loss, t.disc_lr_coef, t.beta1) == ("lsgan", 1.25, 0.5)  # the documented recipe


def test_user_layers_win_over_the_demo_recipe() -> None:
    cfg = demo_config(Path("d"), 3.0, {"model": {"upsample": "pixelshuffle"}, "train": {"augment": []}})
    assert (cfg.model.upsample, cfg.train.augment) == ("pixelshuffle", [])
    assert (cfg.model.hidden, cfg.train.cycle_blur) == (32, 1.5)
    other = to_dict(demo_config(Path("d"), 3.0, {"preset": "model1"}))
    assert other["preset"] == "model1" and other["model"]["hidden"] == 32


def test_sr_demo_recipe_comes_from_the_shipped_yaml() -> None:
    from ganlab.sr.demo import sr_demo_config

    cfg = sr_demo_config(4.0)
    assert (cfg.preset, cfg.model.scale, cfg.train.epochs, cfg.train.minutes) == (
        "srresnet-small",
        2,
        None,
        4.0,
    )
    assert sr_demo_config(4.0, {"model": {"scale": 4}}).model.scale == 4


def test_given_epochs_skip_the_planner(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the planner ran although train.epochs was given")

    monkeypatch.setattr(demo_mod, "measure_step_seconds", fail)
    monkeypatch.setattr(demo_mod, "plan_epochs", fail)
    overrides = {"train": {"epochs": 3, "epochs_decay": 2}}
    cfg = demo_config(Path("d"), 5.0, overrides)
    _, epochs, decay, left, _ = demo_mod._plan_training(cfg, overrides, 5.0, time.monotonic(), lambda s: None)
    assert (epochs, decay) == (3, 2) and 4.9 < left <= 5.0
    cfg = demo_config(Path("d"), 5.0, {"train": {"epochs": 3}})
    assert demo_mod._plan_training(cfg, {"train": {"epochs": 3}}, 5.0, time.monotonic(), print)[1:3] == (3, 0)


def test_without_epochs_the_planner_fits_the_budget(monkeypatch) -> None:
    monkeypatch.setattr(demo_mod, "measure_step_seconds", lambda cfg, device, steps=3: 0.5)
    overrides = {"train": {"precision": "fp32"}}  # no bf16 measurement
    cfg = demo_config(Path("d"), 10.0, overrides)
    cfg, epochs, decay, left, plan = demo_mod._plan_training(
        cfg, overrides, 10.0, time.monotonic(), lambda s: None
    )
    assert (epochs, decay) == plan_epochs(0.5, left, 40, demo_mod.MAX_STEPS)
    # 0.5 s per step leaves room for more than MIN_STEPS steps: the recipe's batch is kept.
    assert cfg.train.batch_size == 4 and [t["batch_size"] for t in plan["tried"]] == [4]
    assert "0.50 s per step of batch 4" in plan["note"]
    # A fast machine runs at most MAX_STEPS and says it finishes early.
    monkeypatch.setattr(demo_mod, "measure_step_seconds", lambda cfg, device, steps=3: 0.1)
    cfg = demo_config(Path("d"), 10.0, overrides)
    _, epochs, decay, _, plan = demo_mod._plan_training(
        cfg, overrides, 10.0, time.monotonic(), lambda s: None
    )
    assert (epochs + decay) * 40 == demo_mod.MAX_STEPS
    assert (
        f"at most {demo_mod.MAX_STEPS} steps" in plan["note"] and "about 1.3 of its minutes" in plan["note"]
    )


def test_the_step_is_timed_with_the_trainers_threads(monkeypatch) -> None:
    """train.threads applies before the planner times the step: timed with PyTorch's default threads, a
    one-thread run beside another job planned for a step three times slower than it trained."""
    default = torch.get_num_threads()
    seen: list[int] = []
    monkeypatch.setattr(
        demo_mod,
        "measure_step_seconds",
        lambda cfg, device, steps=3: seen.append(torch.get_num_threads()) or 0.5,
    )
    overrides = {"train": {"threads": default + 1, "precision": "fp32"}}
    try:
        demo_mod._plan_training(
            demo_config(Path("d"), 10.0, overrides), overrides, 10.0, time.monotonic(), print
        )
    finally:
        torch.set_num_threads(default)
    assert seen == [default + 1]


def test_the_planner_times_the_fastest_step(monkeypatch) -> None:
    """Other load only slows a step, and a plan for too few steps leaves the budget unused: the planner
    takes the fastest of its timed steps, not a median that one slow step can move."""
    calls: list[int] = []
    monkeypatch.setattr(demo_mod, "make_step", lambda *a, **k: lambda: calls.append(1))
    monkeypatch.setattr(
        demo_mod, "time_calls", lambda fns, n, device: {"step": [0.75, 0.53, 0.9, 0.55, 0.6][:n]}
    )
    cfg = demo_config(Path("d"), 10.0, {"train": {"precision": "fp32"}})
    assert demo_mod.measure_step_seconds(cfg, demo_mod.select_device("cpu")) == 0.53
    assert calls == [1]  # the untimed warm-up


def _step_seconds_by_batch(seconds: dict[int, float]):
    return lambda cfg, device, steps=3: seconds[cfg.train.batch_size]


def test_a_slow_machine_gets_a_smaller_batch_and_the_plan_says_why(monkeypatch) -> None:
    # 2 s per step of 4 fits about 280 steps in 10 minutes, under MIN_STEPS; 1.2 s per step of 2 fits 480.
    monkeypatch.setattr(demo_mod, "measure_step_seconds", _step_seconds_by_batch({4: 2.0, 2: 1.2, 1: 0.8}))
    cfg = demo_config(Path("d"), 10.0, {})
    cfg, epochs, decay, left, plan = demo_mod._plan_training(cfg, {}, 10.0, time.monotonic(), lambda s: None)
    assert cfg.train.batch_size == 2
    assert (epochs + decay) * 40 >= demo_mod.MIN_STEPS
    assert [t["batch_size"] for t in plan["tried"]] == [4, 2]
    assert plan["tried"][0]["steps"] < demo_mod.MIN_STEPS
    assert "batch was lowered to 2" in plan["note"]


def test_the_batch_stops_at_one_and_a_user_batch_is_kept(monkeypatch) -> None:
    monkeypatch.setattr(demo_mod, "measure_step_seconds", _step_seconds_by_batch({4: 18.0, 2: 12.0, 1: 9.0}))
    cfg = demo_config(Path("d"), 10.0, {})
    cfg, _, _, _, plan = demo_mod._plan_training(cfg, {}, 10.0, time.monotonic(), lambda s: None)
    assert cfg.train.batch_size == 1 and [t["batch_size"] for t in plan["tried"]] == [4, 2, 1]
    assert "give it more --minutes" in plan["note"]
    mine = {"train": {"batch_size": 4}}
    cfg = demo_config(Path("d"), 10.0, mine)
    cfg, _, _, _, plan = demo_mod._plan_training(cfg, mine, 10.0, time.monotonic(), lambda s: None)
    assert cfg.train.batch_size == 4 and len(plan["tried"]) == 1


def test_plan_epochs_fits_budget() -> None:
    epochs, decay = plan_epochs(step_seconds=0.5, minutes=10, steps_per_epoch=40)
    steps = (epochs + decay) * 40
    assert steps * 0.5 <= 10 * 60 and steps * 0.5 > 0.6 * 10 * 60
    assert epochs - decay in (0, 1)
    assert plan_epochs(100.0, 0.1, 40) == (1, 1)  # never fewer than 2 epochs
    assert plan_epochs(0.01, 10, 40, max_steps=800) == (10, 10)  # capped at 800 steps


def test_tiny_demo_writes_report_and_eval(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("skimage")

    def fail(*args, **kwargs):
        raise AssertionError("the planner ran although train.epochs was given")

    monkeypatch.setattr(demo_mod, "measure_step_seconds", fail)
    out = tmp_path / "run"
    res = run_demo(
        data=tmp_path / "demo",
        out=out,
        minutes=1.0,  # a cap only: the given epochs end the run
        progress=False,
        data_kwargs={"n_train_a": 2, "n_train_b": 2, "n_test": 2, "max_side": 256},
        overrides={
            "model": {"hidden": 8},
            "disc": {"hidden": 8, "n_layers": 2},
            "data": {"size": 32, "load_size": 36},
            "train": {
                "epochs": 1,
                "epochs_decay": 1,
                "max_steps_per_epoch": 1,
                "batch_size": 2,
                "eval_images": 2,
            },
        },
    )
    assert len(read_metrics(out, "epoch")) == 2  # exactly the given 1 + 1 epochs
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
    # The plan is saved with the run and stated in the report.
    plan = json.loads((out / demo_mod.PLAN_FILE).read_text())
    assert plan["note"] == "1 + 1 epochs as set (no planning)."
    assert "Plan: 1 + 1 epochs as set" in html


def _iv(mean: float, half: float) -> dict:
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": 48, "level": 0.95}


@pytest.mark.parametrize(
    "gt, expected",
    [
        # Below the identity in PSNR (whole interval below zero).
        ({"gt_psnr": 18.9, "gt_ssim": 0.60, "p": _iv(-0.1, 0.05), "s": _iv(0.01, 0.005)}, "further from"),
        # SSIM below the identity.
        ({"gt_psnr": 19.2, "gt_ssim": 0.58, "p": _iv(0.2, 0.05), "s": _iv(-0.01, 0.005)}, "further from"),
        # A model that is the identity: +0.0005 dB, interval across zero.
        (
            {"gt_psnr": 19.0005, "gt_ssim": 0.5902, "p": _iv(0.0005, 0.01), "s": _iv(0.0002, 0.001)},
            "not shown to be closer",
        ),
        # Means above, but one interval holds zero: not a win.
        (
            {"gt_psnr": 19.2, "gt_ssim": 0.591, "p": _iv(0.2, 0.05), "s": _iv(0.0005, 0.002)},
            "interval of its SSIM gain",
        ),
        (
            {"gt_psnr": 19.2, "gt_ssim": 0.60, "p": _iv(0.2, 0.05), "s": _iv(0.01, 0.005)},
            "not the oracle colour map",
        ),
        ({"gt_psnr": 20.0, "gt_ssim": 0.62, "p": _iv(1.0, 0.05), "s": _iv(0.03, 0.005)}, "both baselines"),
    ],
)
def test_verdict_needs_paired_intervals_above_zero(gt: dict, expected: str) -> None:
    from ganlab.cyclegan.demo.report import verdict

    base = {"identity_psnr": 19.0, "identity_ssim": 0.59, "affine_psnr": 19.7, "affine_ssim": 0.61}
    res = {**base, "gt_psnr": gt["gt_psnr"], "gt_ssim": gt["gt_ssim"]}
    res.update(gt_psnr_vs_identity=gt["p"], gt_ssim_vs_identity=gt["s"])
    assert expected in verdict(res)
    assert verdict({}).startswith("No ground truth")


def test_without_avx512_the_planner_times_both_layouts(monkeypatch) -> None:
    """memory_format auto on a CPU without AVX-512: the demo times NCHW and channels_last and keeps the
    faster, and the plan says so; with AVX-512 (or a layout set by the user) nothing extra is timed."""
    monkeypatch.setattr(demo_mod, "use_channels_last", lambda requested, device: False)
    seconds = {"nchw": 0.5, "channels_last": 0.4}
    monkeypatch.setattr(
        demo_mod, "measure_step_seconds", lambda cfg, device, steps=3: seconds[cfg.train.memory_format]
    )
    cfg = demo_mod.demo_config(Path("data/demo"), 10.0)
    cfg, _, _, _, plan = demo_mod._plan_training(cfg, {}, 10.0, time.monotonic(), lambda s: None)
    assert cfg.train.memory_format == "channels_last" and plan["layout_seconds"] == seconds
    assert "channels_last" in plan["note"]
    seconds["nchw"] = 0.3
    cfg = demo_mod.demo_config(Path("data/demo"), 10.0)
    assert (
        demo_mod._plan_training(cfg, {}, 10.0, time.monotonic(), lambda s: None)[0].train.memory_format
        == "nchw"
    )
    cfg = demo_mod.demo_config(Path("data/demo"), 10.0, {"train": {"memory_format": "channels_last"}})
    seconds["nchw"] = None  # must not be timed
    assert demo_mod._plan_training(cfg, {}, 10.0, time.monotonic(), lambda s: None)[4]["layout_seconds"] == {}


def test_the_demo_command_prints_the_reports_verdict(monkeypatch, capsys) -> None:
    """The console ends with the report's verdict, so a gain whose interval holds zero is not read off
    the table as a win."""
    from ganlab.cli import main

    res = {
        "gt_psnr": 19.37,
        "identity_psnr": 19.01,
        "gt_psnr_vs_identity": {"mean": 0.36, "low": 0.18, "high": 0.55, "n": 48},
        "gt_ssim_vs_identity": {"mean": 0.003, "low": -0.00004, "high": 0.0058, "n": 48},
        "report": "runs/demo/report.html",
    }
    monkeypatch.setattr("ganlab.cli.demo.run_demo", lambda **kw: res)
    monkeypatch.setattr("ganlab.cli.demo.format_table", lambda r: "TABLE")
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "not shown to be closer" in out and "SSIM gain" in out and "[+0.18, +0.55]" in out
