from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlab.cli import main
from ganlab.cyclegan.evaluate import evaluate_run
from ganlab.experiments.compare import sort_rows

from .conftest import TINY, make_dataset

CELL = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Two one-epoch runs of different architectures (pixelshuffle 1 down vs resize-conv 2 down)."""
    root = tmp_path_factory.mktemp("compare")
    data = make_dataset(root / "data")
    runs = [root / "shallow", root / "deep"]
    extra = [[], ["--set", "model.n_down=2", "--set", "model.upsample=resize_conv"]]
    for run, more in zip(runs, extra):
        args = ["train", "--data", str(data), "--preset", "model2", "--out", str(run), *TINY]
        assert main([*args, "--epochs", "1", "--set", "train.max_steps_per_epoch=2", *more]) == 0
    return data, runs


def _count_columns(grid: Image.Image, y: int) -> int:
    """Image cells crossed by row ``y``: runs of non-white pixels wider than half a cell (label text is
    made of narrow glyphs and does not count)."""
    line = np.asarray(grid.convert("RGB"))[y]
    filled = (line != 255).any(axis=1)
    count, run = 0, 0
    for f in [*filled, False]:
        if f:
            run += 1
        else:
            count += run > CELL // 2
            run = 0
    return count


def test_compare_writes_grid_tables_and_report(two_runs, tmp_path: Path, capsys) -> None:
    data, runs = two_runs
    out = tmp_path / "cmp"
    args = ["compare", *map(str, runs), "--images", str(data / "testA"), "--out", str(out)]
    assert main([*args, "--cell", str(CELL), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| run |" in printed and "shallow" in printed

    grid = Image.open(out / "grid.png")
    # Three test images (rows) of original + one column per run, each a CELL-high cell.
    assert grid.height >= 3 * CELL
    first_row_middle = grid.height - 3 * (CELL + 4) + CELL // 2
    assert _count_columns(grid, first_row_middle) == 1 + len(runs)

    rows = json.loads((out / "table.json").read_text())
    assert [r["run"] for r in rows] == ["shallow", "deep"]
    md = (out / "table.md").read_text()
    configs_md, runs_md = md.split("\nRuns:\n")
    runs_lines = runs_md.strip().splitlines()
    assert len(runs_lines) == 2 + len(runs) and "G params" in runs_lines[0]
    # One configuration per run (they differ in more than the seed), with the tile interval and the marks.
    config_lines = [line for line in configs_md.splitlines() if line.startswith("| ")]
    assert len(config_lines) == 1 + len(runs) and "95% over tiles" in config_lines[0]
    assert sum("| best |" in line for line in config_lines) == 1
    assert all("1 seed" in line for line in config_lines[1:])  # one seed: no seed interval, said so
    with open(out / "table.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["run"] for r in table] == ["shallow", "deep"]
    for row, run in zip(rows, runs):
        assert main(["info", "--run", str(run), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert row["generator_params"] == info["generator_params"]
        assert row["gflops_256"] == pytest.approx(info["generator_gflops_256"])
        ev = json.loads((run / "eval.json").read_text())  # compare evaluated it, as `ganlab eval` does
        for k in ("cycle_psnr", "gt_psnr", "checkerboard_flat", "tint_delta_e2000", "seconds_per_epoch"):
            assert row[k] == ev[k] and np.isfinite(row[k]), k
        assert row["n_down"] == info["generator"]["n_down"] and row["epochs"] == 1
        # Compute spent: 2 steps of batch 2, at the FLOPs of one counted training step.
        assert row["steps"] == 2 and row["images_seen"] == 4
        assert row["train_gflops"] == pytest.approx(2 * row["step_gflops"]) and row["step_gflops"] > 0
    assert {r["upsample"] for r in table} == {"pixelshuffle", "resize_conv"}
    assert (out / "losses.png").read_bytes().startswith(b"\x89PNG")

    summary = json.loads((out / "summary.json").read_text())
    assert {s["config"] for s in summary} == {"shallow", "deep"}
    assert all(s["tile_ci"]["low"] <= s["mean"] <= s["tile_ci"]["high"] for s in summary)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # grid, losses, metric curves, score vs compute
    assert "95% over seeds" in html and "vs identity" in html and "against training compute" in html
    assert not re.search(r"https?://|src=\"(?!data:)|href=", html)
    assert "resize_conv" in html and "<table>" in html


def test_compare_reuses_fresh_eval_and_sorts(two_runs, tmp_path: Path, capsys) -> None:
    data, runs = two_runs
    out = tmp_path / "a"
    base = ["compare", *map(str, runs), "--images", str(data / "testA" / "000.png"), "--out", str(out)]
    base += ["--quiet", "--cell", "32"]
    assert main([*base, "--sort", "nope"]) == 2  # checked before any run is loaded
    assert "unknown metric 'nope'" in capsys.readouterr().err
    for run in runs:  # the first test usually left a fresh eval.json; make sure of it
        if not (run / "eval.json").is_file():
            evaluate_run(run, progress=False)
    assert main([*base, "--no-eval", "--sort", "generator_params:desc"]) == 0
    assert capsys.readouterr().out.count("reusing eval.json") == 2
    rows = json.loads((out / "table.json").read_text())
    assert [r["run"] for r in rows] == ["deep", "shallow"]
    assert all(np.isfinite(r["cycle_psnr"]) for r in rows)
    # A checkpoint newer than eval.json makes it stale; --no-eval then leaves the metrics blank.
    ckpt = sorted((runs[0] / "checkpoints").glob("*.safetensors"))[-1]
    later = (runs[0] / "eval.json").stat().st_mtime + 5
    os.utime(ckpt, (later, later))
    assert main([*base, "--no-eval", "--sort", "generator_params"]) == 0
    rows = json.loads((out / "table.json").read_text())
    assert [r["run"] for r in rows] == ["shallow", "deep"]  # fewer parameters first
    assert rows[0]["cycle_psnr"] is None and rows[0]["generator_params"] > 0
    assert rows[1]["cycle_psnr"] is not None


def test_sort_rows_puts_missing_last() -> None:
    rows = [
        {"run": "a", "cycle_psnr": None},
        {"run": "b", "cycle_psnr": 20.0},
        {"run": "c", "cycle_psnr": 25.0},
    ]
    assert [r["run"] for r in sort_rows(rows, "cycle_psnr")] == ["c", "b", "a"]
    assert [r["run"] for r in sort_rows(rows, "cycle_psnr:asc")] == ["b", "c", "a"]
    tint = [{"run": "x", "tint_delta_b": -3.0}, {"run": "y", "tint_delta_b": 1.0}]
    assert [r["run"] for r in sort_rows(tint, "tint_delta_b")] == ["y", "x"]  # smaller shift first


def test_compare_missing_run_is_user_error(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "run directory not found" in capsys.readouterr().err
