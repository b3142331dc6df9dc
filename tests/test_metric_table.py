"""The metric table: every place that shows a metric finds it there, and sorting follows its direction."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

import ganlab.core.metric_table as MT
from ganlab.core.metric_table import METRICS, Metric
from ganlab.cyclegan.demo.report import EXTRA_KEYS, NUMBER_KEYS
from ganlab.cyclegan.evaluate import EVAL_PAIRS, EVAL_SINGLES, format_table
from ganlab.experiments import compare as C


def test_entries_are_consistent() -> None:
    for key, m in METRICS.items():
        assert isinstance(m, Metric) and m.key == key and m.label, key
        assert m.higher_is_better in (True, False, None), key
        assert not (m.absolute and m.higher_is_better), key  # a magnitude ranks smaller-first
    labels = [m.label for m in METRICS.values()]
    assert len(set(labels)) == len(labels)  # one name per metric, no two metrics under one name
    with pytest.raises(AttributeError):
        METRICS["cycle_psnr"].label = "x"  # type: ignore[misc]


def test_compare_eval_and_demo_keys_are_in_the_table() -> None:
    assert set(C.EVAL_KEYS) <= set(METRICS)
    assert {k for k in C.COLUMNS if k not in C.DESCRIPTIVE} <= set(METRICS)
    for k in ("generator_params", "gflops_256", "seconds_per_epoch", "peak_mem_mb"):
        assert k in C.COLUMNS and METRICS[k].higher_is_better is False, k
    eval_keys = [k for _, p, s in EVAL_PAIRS for k in (p, s)] + EVAL_SINGLES
    assert set(eval_keys) <= set(METRICS)
    assert set(NUMBER_KEYS) | set(EXTRA_KEYS) <= set(METRICS)
    assert {"psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "gain_db"} <= set(METRICS)


def test_compare_headers_and_sortable_come_from_the_table() -> None:
    for k in C.COLUMNS:
        assert C.HEADERS[k] == (METRICS[k].label if k in METRICS else k)
    assert C.HEADERS["generator_params"] == "G params"
    assert set(C.SUMMARY_COLUMNS) <= set(C.SORTABLE) | {"architecture"}
    for k in C.SORTABLE:
        assert C.parse_sort(k) == (k, MT.descending_by_default(k))


def test_lower_is_better_sorts_ascending_and_absolute_by_size() -> None:
    rows = [{"run": "a", "peak_mem_mb": 900.0}, {"run": "b", "peak_mem_mb": 300.0}, {"run": "c"}]
    assert METRICS["peak_mem_mb"].higher_is_better is False
    assert [r["run"] for r in C.sort_rows(rows, "peak_mem_mb")] == ["b", "a", "c"]
    assert [r["run"] for r in C.sort_rows(rows, "peak_mem_mb:desc")] == ["a", "b", "c"]
    psnr = [{"run": "a", "gt_psnr": 18.0}, {"run": "b", "gt_psnr": 21.0}]
    assert [r["run"] for r in C.sort_rows(psnr, "gt_psnr")] == ["b", "a"]
    tint = [{"run": "x", "tint_delta_a": -5.0}, {"run": "y", "tint_delta_a": 2.0}]
    assert [r["run"] for r in C.sort_rows(tint, "tint_delta_a")] == ["y", "x"]
    assert MT.rank_value("tint_delta_a", -5.0) == 5.0 and MT.rank_value("gt_psnr", -5.0) == -5.0
    # Descriptive columns have no better end: they sort in natural (ascending) order.
    assert METRICS["epochs"].higher_is_better is None and not MT.descending_by_default("epochs")
    assert not MT.descending_by_default("run")


def test_direction_follows_a_new_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sorting reads the table at call time, so one entry decides the direction everywhere."""
    monkeypatch.setitem(METRICS, "gflops_256", Metric("gflops_256", "GFLOPs/256px", True, ".4g"))
    rows = [{"run": "a", "gflops_256": 1.0}, {"run": "b", "gflops_256": 2.0}]
    assert [r["run"] for r in C.sort_rows(rows, "gflops_256")] == ["b", "a"]


def test_format_and_label() -> None:
    assert MT.format("cycle_psnr", 25.849) == "25.85"
    assert MT.format("gt_ssim", 0.9) == "0.9000"
    assert MT.format("tint_delta_b", -2.081) == "-2.08" and MT.format("tint_delta_a", 0.5) == "+0.50"
    assert MT.format("generator_params", 11378179) == "11,378,179"
    assert MT.format("peak_mem_mb", 1533.6) == "1,534"
    assert MT.format("gain_db", 1.234) == "+1.23"
    for missing in (None, float("nan")):
        assert MT.format("cycle_psnr", missing) == "-"
    assert MT.format("cycle_psnr", math.inf) == "inf"
    assert MT.format("generator_params", 1.5) == "1.5"  # a value the spec does not fit: generic form
    assert MT.format("upsample", "pixelshuffle") == "pixelshuffle"  # not a metric: as is
    assert MT.format("n_down", 2) == "2"
    assert MT.label("gflops_256") == "GFLOPs/256px" and MT.label("preset") == "preset"
    assert MT.headers(["cycle_ssim", "run"]) == {"cycle_ssim": "cycle SSIM", "run": "run"}
    f = MT.formatters(["method", "gt_psnr"])
    assert list(f) == ["gt_psnr"] and f["gt_psnr"](19.011) == "19.01"


def test_eval_format_table_uses_the_table() -> None:
    res = {
        "cycle_psnr": 25.849,
        "cycle_ssim": 0.91234,
        "gt_psnr": 19.0,
        "gt_ssim": 0.59,
        "checkerboard_flat": 0.00171,
        "tint_delta_b": -2.081,
    }
    lines = format_table(res).splitlines()
    assert "PSNR dB" in lines[0] and len(lines) == 1 + 2 + 2  # absent metrics leave no row
    assert lines[1].startswith("cycle A->B->A") and lines[1].split()[-2:] == ["25.85", "0.9123"]
    assert lines[3].startswith("checker (flat)") and lines[3].endswith("0.0017")
    assert lines[4].startswith("delta b* (<0 bluer)") and lines[4].endswith("-2.08")


def test_core_table_imports_no_task_package() -> None:
    tree = ast.parse(Path(MT.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("ganlab")]
