"""`ganlab bench`: the JSON it prints has its keys; the numbers are consistent with each other."""

from __future__ import annotations

import json

import pytest

from ganlab.cli import main
from ganlab.core.bench import conv_peak, count_flops, machine_info

KEYS = {
    "seconds_per_step",
    "images_per_s",
    "gflop_per_step",
    "gflops_per_s",
    "peak_gflops_per_s",
    "peak_fraction",
    "peak_memory_mb",
    "precision",
    "channels_last",
    "compiled",
    "cpu_capability",
}


@pytest.mark.parametrize(
    "args",
    [
        [
            "--preset",
            "model2",
            "--size",
            "32",
            "--set",
            "model.hidden=4",
            "--set",
            "disc.hidden=4",
            "--set",
            "disc.n_layers=2",
        ],
        ["--task", "sr", "--preset", "srresnet-small", "--size", "16", "--set", "model.hidden=4"],
        ["--preset", "model2", "--size", "16", "--set", "model.hidden=4", "--mode", "infer"],
    ],
    ids=["cyclegan-train", "sr-train", "cyclegan-infer"],
)
def test_bench_json_has_its_keys(args: list[str], capsys, monkeypatch) -> None:
    # The conv peak is the slow part of a bench; a small one keeps this a test of the plumbing.
    monkeypatch.setattr("ganlab.core.bench.PEAK_CONV", (1, 8, 8))
    assert main(["bench", *args, "--batch-size", "2", "--repeats", "1", "--baseline", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert KEYS | {"baseline_seconds_per_step", "speedup"} <= set(r)
    assert r["images_per_s"] == pytest.approx(2 / r["seconds_per_step"])
    assert r["gflops_per_s"] == pytest.approx(r["gflop_per_step"] / r["seconds_per_step"])
    assert r["speedup"] == pytest.approx(r["baseline_seconds_per_step"] / r["seconds_per_step"])
    # The ceiling: the plain step's rate against the peak, which the measured speedup reaches at 100%.
    assert r["speedup_at_peak"] == pytest.approx(r["speedup"] / r["peak_fraction"])
    assert r["gflop_per_step"] > 0 and r["precision"] in ("fp32", "bf16")


def test_flop_counter_counts_a_known_convolution() -> None:
    import torch

    conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.zeros(2, 8, 10, 10)
    assert count_flops(lambda: conv(x)) == 2 * (2 * 16 * 10 * 10) * (8 * 3 * 3)


def test_conv_peak_and_machine_info_are_sane(monkeypatch) -> None:
    import torch

    monkeypatch.setattr("ganlab.core.bench.PEAK_CONV", (2, 16, 16))
    calls: list[str] = []
    peak = conv_peak(
        torch.device("cpu"), "fp32", train=True, repeats=3, alongside={"step": lambda: calls.append("x")}
    )
    assert peak["peak_gflops_per_s"] > 0 and peak["peak_layout"] in ("nchw", "channels_last")
    assert peak["peak_gflops_per_s"] == max(peak["by_layout"].values())
    assert len(calls) == 3 and len(peak["times"]["step"]) == 3  # timed in turn with the peak
    info = machine_info(torch.device("cpu"))
    assert info["cores"] >= 1 and info["threads"] >= 1 and isinstance(info["cpu_flags"], list)


@pytest.mark.parametrize("task", ["cyclegan", "sr"])
def test_bench_counts_the_models_flops_not_those_of_a_faster_rewrite(task: str, capsys, monkeypatch) -> None:
    """The generators' last conv runs as a stride-2 conv over shifted kernels (more multiply-adds, most of
    them by zero); the benchmark's FLOPs are those of the model as defined, so its GFLOP/s stays honest."""
    import torch

    from ganlab.models.narrow import NarrowConv2d

    monkeypatch.setattr("ganlab.core.bench.PEAK_CONV", (1, 8, 8))
    if task == "cyclegan":
        from ganlab.cyclegan.config import build_cyclegan_config
        from ganlab.cyclegan.step import build_models

        args = ["--preset", "model2", "--size", "16", "--set", "model.hidden=4"]
        g = build_models(build_cyclegan_config("model2", overrides={"model": {"hidden": 4}}))["G_A2B"]
        x = torch.zeros(2, 3, 16, 16)
    else:
        from ganlab.sr.config import build_sr_config
        from ganlab.sr.step import build_models as build_sr_models

        args = ["--task", "sr", "--preset", "srresnet-small", "--size", "32", "--set", "model.hidden=4"]
        cfg = build_sr_config("srresnet-small", overrides={"model": {"hidden": 4}})
        g = build_sr_models(cfg, torch.device("cpu")).generator
        x = torch.zeros(2, 3, 8, 8)  # the LR side of 32 px HR crops at x4
    assert main(["bench", *args, "--mode", "infer", "--batch-size", "2", "--repeats", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    g.eval()
    with torch.no_grad():
        rewritten = count_flops(lambda: g(x))
        monkeypatch.setattr(NarrowConv2d, "_phases_apply", lambda self, x: False)
        defined = count_flops(lambda: g(x))
    assert rewritten > defined
    assert r["gflop_per_step"] * 1e9 == pytest.approx(defined)
    assert r["gflop_executed_per_step"] * 1e9 == pytest.approx(rewritten)


def test_op_times_names_the_steps_ops(monkeypatch) -> None:
    """``ganlab bench --ops``: every aten op of the step timed alone, slowest first; a training step runs
    convolutions forward and backward, and the shares of all ops add up to one."""
    from ganlab.experiments.bench import format_bench, run_bench

    monkeypatch.setattr("ganlab.core.bench.PEAK_CONV", (1, 8, 8))
    r = run_bench(
        preset="model2",
        size=32,
        batch_size=2,
        overrides={"model": {"hidden": 4}, "disc": {"hidden": 4, "n_layers": 2}},
        repeats=1,
        ops=1000,
    )
    ops = r["ops"]
    assert {"convolution", "convolution_backward"} <= {o["op"] for o in ops}
    assert [o["ms_per_step"] for o in ops] == sorted((o["ms_per_step"] for o in ops), reverse=True)
    assert sum(o["share"] for o in ops) == pytest.approx(1.0)
    assert all(o["calls_per_step"] > 0 for o in ops)
    assert "convolution_backward" in format_bench(r)


def test_bench_reports_the_spread_over_its_rounds(capsys, monkeypatch) -> None:
    """Each round times the step, the plain step and the peak's convolution in turn; the ranges give
    the noise a comparison between two benchmarks has to beat."""
    monkeypatch.setattr("ganlab.core.bench.PEAK_CONV", (1, 8, 8))
    tiny = ["--preset", "model2", "--size", "16", "--batch-size", "1", "--set", "model.hidden=4"]
    tiny += ["--set", "disc.hidden=4", "--set", "disc.n_layers=2", "--repeats", "3", "--baseline"]
    assert main(["bench", *tiny, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    lo, hi = r["seconds_per_step_range"]
    assert lo <= r["seconds_per_step"] <= hi
    for key in ("peak_fraction_range", "speedup_range"):
        assert 0 < r[key][0] <= r[key][1], key
    assert main(["bench", *tiny]) == 0
    text = capsys.readouterr().out
    assert "over 3 rounds)" in text and "% by round)" in text and "x by round)" in text
    assert "at the full conv peak" in text


def test_bench_runs_with_the_configs_threads(capsys, monkeypatch) -> None:
    """``train.threads`` of the benchmarked recipe applies, as in the trainer, and the machine line says so."""
    import torch

    monkeypatch.setattr("ganlab.core.bench.PEAK_CONV", (1, 8, 8))
    default = torch.get_num_threads()
    tiny = ["--preset", "model2", "--size", "16", "--batch-size", "1", "--set", "model.hidden=4"]
    tiny += ["--set", "disc.n_layers=2", "--repeats", "1", "--set", f"train.threads={default + 1}"]
    try:
        assert main(["bench", *tiny, "--json"]) == 0
    finally:
        torch.set_num_threads(default)
    assert json.loads(capsys.readouterr().out)["threads"] == default + 1
