"""The schedule by budget is the epoch schedule made continuous."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganlab.cli import main
from ganlab.core.rundir import read_metrics
from ganlab.cyclegan.config import ConfigError, build_cyclegan_config, documented_schedule
from ganlab.cyclegan.schedule import lr_factor, lr_factor_at_progress, phase_at, phase_at_progress

from .conftest import TINY


@pytest.mark.parametrize(("epochs", "decay"), [(5, 5), (21, 21), (3, 0), (1, 1)])
def test_progress_schedule_matches_the_epoch_schedule_at_epoch_ends(epochs: int, decay: int) -> None:
    total, sched = epochs + decay, documented_schedule()
    for e in range(1, total + 1):
        assert lr_factor_at_progress(e / total, epochs, decay) == pytest.approx(lr_factor(e, epochs, decay))
        assert phase_at_progress(sched, (e - 1) / total, total)[0] == phase_at(sched, e, total)[0]
    assert lr_factor_at_progress(0.0, epochs, decay) == 1.0


def test_budget_schedule_needs_a_budget() -> None:
    with pytest.raises(ConfigError, match="schedule_by: budget needs train.minutes"):
        build_cyclegan_config(overrides={"train": {"schedule_by": "budget"}})


def test_budget_schedule_moves_within_epochs(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        *TINY,
        "--epochs",
        "5",
        "--epochs-decay",
        "5",
    ]
    args += ["--minutes", "60", "--set", "train.schedule_by=budget", "--set", "train.log_every=1"]
    assert main(args) == 0
    steps = read_metrics(out, "step")
    lrs = [r["lr_g"] for r in steps]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == pytest.approx(2e-4)
    # Decay is continuous: inside one decaying epoch the lr still falls from step to step.
    last_epoch = [r["lr_g"] for r in steps if r["epoch"] == 10]
    assert len(set(last_epoch)) == len(last_epoch) > 1
    # Phases at 0, 0.5 (epoch 6 of 10) and the last 4 epochs (epoch 7), by share of the run done.
    assert [(r["phase"], r["epoch"]) for r in read_metrics(out, "phase")] == [(0, 1), (1, 6), (2, 7)]
