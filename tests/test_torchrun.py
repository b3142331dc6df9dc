"""Launching with torchrun: the ``--nproc`` shortcut with an elastic restart after a worker is killed, and
two "machines" on 127.0.0.1 meeting through the c10d rendezvous, one of which then loses its worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ganlab.core.rundir import read_metrics

from .conftest import TINY
from .test_distributed import _free_ports

ARGS = [*TINY, "--precision", "fp32", "--set", "train.threads=1", "--set", "train.eval_images=0"]


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc), oldest first."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return sorted(out)


def _wait_for(path: Path, procs: list[subprocess.Popen], limit_s: float = 180) -> None:
    """Until ``path`` exists; fails if a process ends first or it takes over ``limit_s`` (a hang guard)."""
    end = time.monotonic() + limit_s
    while not path.exists():
        assert all(p.poll() is None for p in procs), "a launcher ended before the first checkpoint"
        assert time.monotonic() < end, f"no {path.name} after {limit_s} s"
        time.sleep(0.05)


def _train(data: Path, out: Path, epochs: int) -> list[str]:
    base = ["-m", "ganlab", "train", "--data", str(data), "--preset", "model2", "--out", str(out)]
    return [*base, *ARGS, "--epochs", str(epochs)]


def test_killed_worker_is_restarted_and_training_goes_on(tiny_data: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "launcher.log"
    env = dict(os.environ, PET_MAX_RESTARTS="1")  # torchrun --max-restarts 1, through its environment
    with open(log, "w") as fh:
        launcher = subprocess.Popen(
            [sys.executable, *_train(tiny_data, out, 4), "--nproc", "2"], stdout=fh, stderr=fh, env=env
        )
        try:
            _wait_for(out / "checkpoints" / "epoch_0001.safetensors", [launcher])
            os.kill(_children(launcher.pid)[-1], signal.SIGKILL)
            rc = launcher.wait(timeout=240)
        finally:
            launcher.kill()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    starts = [line for line in text.splitlines() if line.startswith("training model2")]
    assert len(starts) == 2 and "epochs 1..4" in starts[0], starts
    resumed_from = int(starts[1].split("| epochs ")[1].split("..")[0])
    assert resumed_from >= 2  # the restarted processes went on from a checkpoint, not from scratch
    assert {r["epoch"] for r in read_metrics(out, "epoch")} == set(range(1, 5))
    assert "global batch 4" in starts[1]


def test_two_nodes_meet_by_c10d_and_a_lost_node_stops_the_other(tiny_data: Path, tmp_path: Path) -> None:
    out, (port,) = tmp_path / "run", _free_ports(1)
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "ganlab-test"]
    logs = [tmp_path / f"node{n}.log" for n in range(2)]
    nodes: list[subprocess.Popen] = []
    try:
        # The documented two-machine command, both "machines" here (c10d assigns the ranks).
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", *rdzv]
        for log in logs:
            with open(log, "w") as fh:
                nodes.append(subprocess.Popen([*cmd, *_train(tiny_data, out, 50)], stdout=fh, stderr=fh))
        _wait_for(out / "checkpoints" / "epoch_0001.safetensors", nodes)
        os.kill(_children(nodes[1].pid)[-1], signal.SIGKILL)  # node 1's worker dies
        t0 = time.monotonic()
        codes = [p.wait(timeout=60) for p in nodes]  # TimeoutExpired here would be a hang
        waited = time.monotonic() - t0
    finally:
        for p in nodes:
            p.kill()
    text = [log.read_text() for log in logs]
    assert "global batch 4" in "".join(text)  # both nodes trained one run
    assert codes[0] != 0 and codes[1] != 0 and waited < 60
    assert "lost contact with the other processes" in text[0] or "stopped by the launcher" in text[0], text[
        0
    ][-3000:]
