"""The kill -9 harness (benchmarks/killtest.py) with 5 trials: random SIGKILLs and kills inside the
checkpoint write; every resume succeeds, no torn checkpoint is loaded, at most the cadence is lost, and
the final weights equal an uninterrupted run's bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks its training processes")
def test_five_kills_lose_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "killtest.py"), "--trials", "5", "--json"]
    done = subprocess.run(
        [*cmd, "--work", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    fig = json.loads(done.stdout.strip().splitlines()[-1])
    assert fig["kills"] == 5
    assert set(fig["kills_by_kind"]) == {"random", "kill-in-write", "torn-in-write", "harness-in-write"}
    assert all(fig["kills_by_kind"].values())  # every kind of kill happened at least once
    assert fig["resumes_succeeded"] == fig["resumes"] == 5
    assert fig["torn_checkpoints_loaded"] == 0 and fig["damaged_files_on_disk"] == 0
    assert 0 < fig["max_work_lost_steps"] <= fig["cadence_steps"]
    assert fig["final_resume_exit"] == 0
    assert fig["final_weights_equal"] and fig["final_state_equal"]
    assert fig["passed"] and done.returncode == 0, done.stderr[-2000:]
