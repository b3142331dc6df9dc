from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from ganlab.cli import main
from ganlab.core.config import ConfigError
from ganlab.core.rundir import run_meta
from ganlab.experiments.sweep import parse_sweep, run_state, run_sweep, sanitize

pytestmark = pytest.mark.usefixtures("one_thread")


# The conftest TINY flags, as sweep base: keys.
TINY_BASE = {
    "preset": "model2",
    "size": 32,
    "batch_size": 2,
    "model.hidden": 8,
    "disc": {"hidden": 8, "n_layers": 2},
    "train.eval_images": 0,  # no per-epoch scoring: the final comparison evaluates each run once
    "train.samples": 1,
    "train.max_steps_per_epoch": 1,
}


def write_sweep(path: Path, data: Path, grid: dict, **base) -> Path:
    path.write_text(yaml.safe_dump({"base": {**TINY_BASE, "data": str(data), **base}, "grid": grid}))
    return path


def test_grid_expansion_names_and_shorthands(tmp_path: Path) -> None:
    sweep = parse_sweep(
        {
            "base": {"data": "d", "epochs": 3, "model.hidden": 8, "train": {"lr": 1e-3}},
            "grid": {
                "model.n_residual": [2, 9],
                "model.n_down": [1, 2],
                "disc.hidden": [8],
                "model.hidden": [4],
            },
        }
    )
    names = [r.name for r in sweep.runs]
    assert names[0] == "n_residual=2,n_down=1,disc.hidden=8,model.hidden=4"
    assert len(names) == 4 and len(set(names)) == 4
    ov = sweep.runs[-1].overrides
    assert ov["model"] == {"hidden": 4, "n_residual": 9, "n_down": 2}  # grid wins over base
    assert ov["train"] == {"epochs": 3, "lr": 1e-3}
    assert ov["data"]["root"] == str(Path("d").resolve())
    assert sanitize("upsample=a/b c") == "upsample=a_b_c"
    with pytest.raises(ConfigError, match="grid.model.n_down: expected a non-empty list"):
        parse_sweep({"grid": {"model.n_down": 2}})
    with pytest.raises(ConfigError, match="unknown top-level key 'runs'"):
        parse_sweep({"runs": []})


def test_unknown_key_fails_before_any_training(tiny_data: Path, tmp_path: Path, capsys) -> None:
    # The bad key sits in the last combination only: validation must still catch it first.
    spec = write_sweep(tmp_path / "s.yaml", tiny_data, {"model.n_down": [1, 2], "train.nope": [1]}, epochs=1)
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key train.nope" in err and "sweep run n_down=1,nope=1" in err
    assert not out.exists()
    spec = write_sweep(tmp_path / "t.yaml", tiny_data, {"model.upsample": ["pixelshuffle", "bogus"]})
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert "upsample=bogus: model.upsample: invalid value 'bogus'" in capsys.readouterr().err
    assert not out.exists()


def test_interrupted_sweep_restarts_skipping_finished_runs(tiny_data: Path, tmp_path: Path, capsys) -> None:
    spec = write_sweep(tmp_path / "s.yaml", tiny_data, {"model.n_down": [1, 2]}, epochs=2)
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert "run 2/2 n_down=2: train; 2 epochs" in capsys.readouterr().out and not out.exists()

    # Press Ctrl-C once during the second run's first epoch: the trainer finishes the step, saves a
    # checkpoint and the sweep stops there, as it would for a person at a terminal.
    lines: list[str] = []

    def log(msg: str) -> None:
        lines.append(msg)
        if msg.startswith("epoch 1/2") and any(line == "run 2/2 n_down=2" for line in lines):
            os.kill(os.getpid(), signal.SIGINT)

    result = run_sweep(spec, out, log=log, progress=False)
    assert result.interrupted and result.compare_rows is None
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["finished", "interrupted"]
    assert manifest["grid"] == {"model.n_down": [1, 2]}
    first = out / "n_down=1" / "checkpoints"
    before = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert run_state(out / "n_down=2", result_cfg(spec))[0] == "unfinished"

    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out), "--quiet", "--sort", "gflops_256"]) == 0
    printed = capsys.readouterr().out
    assert "skip n_down=1: finished" in printed
    assert "run 2/2 n_down=2" in printed and "resuming n_down=2 from epoch 1" in printed
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == before
    latest = json.loads((out / "n_down=2" / "checkpoints" / "latest.json").read_text())
    assert latest["epoch"] == 2
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["finished", "finished"]
    rows = json.loads((out / "compare" / "table.json").read_text())
    assert [r["run"] for r in rows] == ["n_down=1", "n_down=2"]  # fewer GFLOPs first
    assert (out / "compare" / "report.html").is_file() and (out / "compare" / "grid.png").is_file()


def result_cfg(spec: Path, index: int = 1):
    from ganlab.experiments.sweep import load_sweep, validate

    sweep = load_sweep(spec)
    validate(sweep)
    return sweep.runs[index].cfg


def test_minutes_budget_counts_as_finished(tiny_data: Path, tmp_path: Path) -> None:
    spec = write_sweep(tmp_path / "s.yaml", tiny_data, {}, epochs=5, minutes=0.00001)
    lines: list[str] = []
    run_sweep(spec, tmp_path / "sw", compare=False, log=lines.append, progress=False)
    assert "run 1/1 base" in lines
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["runs"][0]["status"] == "finished"
    lines.clear()
    run_sweep(spec, tmp_path / "sw", compare=False, log=lines.append, progress=False)
    assert lines == ["skip base: finished"]


def test_a_grid_may_list_its_configurations() -> None:
    sweep = parse_sweep(
        {
            "base": {"data": "d", "epochs": 1, "model.hidden": 32},
            "grid": [
                {"model.n_residual": 2, "model.n_down": 1, "model.hidden": 24},
                {"model.n_residual": 9, "model.n_down": 2, "model.hidden": 16},
                {"model.n_residual": 4, "batch_size": 2},  # the other keys keep base:'s values
            ],
            "seeds": [0, 1],
        }
    )
    names = [r.name for r in sweep.runs]
    assert names[:3] == ["n_residual=2,n_down=1,hidden=24,seed=0", "n_residual=9,n_down=2,hidden=16,seed=0",
                         "n_residual=4,batch_size=2,seed=0"]  # fmt: skip
    assert len(names) == 6 and sweep.n_configs == 3
    assert sweep.runs[1].overrides["model"] == {"hidden": 16, "n_residual": 9, "n_down": 2}
    assert sweep.runs[2].overrides["model"] == {"hidden": 32, "n_residual": 4}
    assert sweep.runs[2].overrides["train"]["batch_size"] == 2  # shorthands work as in a grid mapping
    assert list(sweep.grid) == ["model.n_residual", "model.n_down", "model.hidden", "train.batch_size"]
    assert sweep.grid["model.n_residual"] == [2, 9, 4] and sweep.grid["model.hidden"] == [24, 16]
    for bad, msg in (
        ([{"model.n_down": [1, 2]}], "one value per listed configuration"),
        ([{"model.n_down": 1}, {"model.n_down": 1}], "listed twice"),
        ([3], "expected a mapping"),
        ("x", "list configurations"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_sweep({"base": {"data": "d"}, "grid": bad})


def test_seeds_expand_each_configuration_and_group_by_name() -> None:
    sweep = parse_sweep(
        {"base": {"data": "d", "epochs": 1}, "grid": {"model.n_down": [1, 2]}, "seeds": [0, 7]}
    )
    names = [r.name for r in sweep.runs]
    # Seed by seed (an interrupted study holds every configuration once), named so seeds sort together.
    assert names == ["n_down=1,seed=0", "n_down=2,seed=0", "n_down=1,seed=7", "n_down=2,seed=7"]
    assert sorted(names)[:2] == ["n_down=1,seed=0", "n_down=1,seed=7"]
    assert [r.overrides["train"]["seed"] for r in sweep.runs] == [0, 0, 7, 7]
    assert [r.config for r in sweep.runs] == ["n_down=1", "n_down=2"] * 2 and sweep.n_configs == 2
    assert [r.name for r in parse_sweep({"base": {"data": "d"}, "seeds": [3]}).runs] == ["seed=3"]
    for bad, msg in (
        ({"seeds": [0, 0]}, "repeats a seed"),
        ({"seeds": "0"}, "list of integers"),
        ({"seeds": [0], "base": {"seed": 1}}, "train.seed is set by seeds"),
        ({"budget": {"hours": 1}}, "budget: expected"),
        ({"budget": {"minutes": 0}}, "positive number"),
        ({"budget": {"minutes": 1}, "base": {"minutes": 2}}, "train.minutes is set by budget"),
        ({"budget": {"gflops": 1}, "grid": {"epochs": [1, 2]}}, "train.epochs is set by budget"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_sweep(bad)
    minutes = parse_sweep({"base": {"data": "d"}, "budget": {"minutes": 2.5}}).runs[0].overrides["train"]
    assert minutes["minutes"] == 2.5 and minutes["epochs"] >= 1000  # the budget, not the epochs, ends runs


def test_seeded_sweep_runs_restarts_and_compares_per_configuration(tiny_data: Path, tmp_path: Path) -> None:
    spec = write_sweep(tmp_path / "s.yaml", tiny_data, {}, epochs=1)
    spec.write_text(spec.read_text() + "seeds: [0, 1]\n")
    out = tmp_path / "sw"
    lines: list[str] = []
    result = run_sweep(spec, out, log=lines.append, progress=False)
    assert not result.interrupted
    assert [r["name"] for r in result.runs] == ["seed=0", "seed=1"]
    assert [r["seed"] for r in result.runs] == [0, 1] and {r["config"] for r in result.runs} == {"base"}
    for seed in (0, 1):
        assert run_meta(out / f"seed={seed}")["config"]["train"]["seed"] == seed
    (config,) = json.loads((out / "compare" / "summary.json").read_text())  # two seeds, one configuration
    assert config["config"] == "base" and config["seeds"] == [0, 1] and config["seed_ci"] is not None
    assert "95% over seeds" in (out / "compare" / "table.md").read_text()
    lines.clear()
    run_sweep(spec, out, compare=False, log=lines.append, progress=False)
    assert lines == ["skip seed=0: finished", "skip seed=1: finished"]


def test_gflops_budget_sets_steps_and_stops_there(tiny_data: Path, tmp_path: Path, capsys) -> None:
    from ganlab.experiments.compute import train_step_gflops

    cfg = result_cfg(write_sweep(tmp_path / "p.yaml", tiny_data, {}), 0)
    step = train_step_gflops(cfg)
    doubled = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=4))
    assert train_step_gflops(doubled) == pytest.approx(2 * step, rel=0.05)  # a whole step was counted
    assert train_step_gflops(cfg, device="cpu") == pytest.approx(step)  # shapes only = a real step
    spec = write_sweep(tmp_path / "s.yaml", tiny_data, {}, **{"train.max_steps_per_epoch": 2})
    spec.write_text(spec.read_text() + f"budget: {{gflops: {3.5 * step}}}\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sw"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "sweep of 1 run(s)" in printed and "3 steps" in printed and "2 epochs" in printed
    assert "total budget: 1 runs x" in printed and "GFLOPs" in printed
    run_sweep(spec, tmp_path / "sw", compare=False, log=lambda m: None, progress=False)
    latest = run_meta(tmp_path / "sw" / "base")
    assert latest["global_step"] == 3 and latest["config"]["train"]["max_steps"] == 3
    assert run_state(tmp_path / "sw" / "base", result_cfg(spec, 0))[0] == "finished"


def test_dry_run_prints_count_and_total_minutes(tiny_data: Path, tmp_path: Path, capsys) -> None:
    spec = write_sweep(tmp_path / "s.yaml", tiny_data, {"model.n_down": [1, 2]})
    spec.write_text(spec.read_text() + "seeds: [0, 1, 2]\nbudget: {minutes: 5}\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sw"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "sweep of 6 run(s) (2 configuration(s) x 3 seed(s))" in printed
    assert "run 6/6 n_down=2,seed=2: train; 5 min" in printed
    assert "total budget: 6 runs x 5 min = 30 min (0.5 h)" in printed
