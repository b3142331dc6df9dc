"""Launching with torchrun: the ``--nproc`` shortcut's command, and two "machines" on 127.0.0.1 meeting
through the c10d rendezvous, restarting after a killed worker, stopping after another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ganlab.cli import main
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


def _wait_for(done: Callable[[], bool], procs: list[subprocess.Popen], limit_s: float = 180) -> None:
    """Until ``done()``; fails if a launcher ends first or it takes over ``limit_s`` (a hang guard)."""
    end = time.monotonic() + limit_s
    while not done():
        assert all(p.poll() is None for p in procs), "a launcher ended too early"
        assert time.monotonic() < end, f"still waiting after {limit_s} s"
        time.sleep(0.05)


def _train(data: Path, out: Path, epochs: int) -> list[str]:
    base = ["-m", "ganlab", "train", "--data", str(data), "--preset", "model2", "--out", str(out)]
    return [*base, *ARGS, "--epochs", str(epochs)]


def test_nproc_runs_the_same_command_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.distributed import run as torchrun

    seen: list[Any] = []
    monkeypatch.setattr(torchrun, "run", seen.append)
    monkeypatch.delenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", raising=False)
    argv = ["train", "--data", "D", "--nproc", "2", "--epochs", "3", "--nproc=2", "--quiet"]
    assert main(argv) == 0
    (args,) = seen
    assert (args.standalone, args.nproc_per_node, args.module, args.training_script) == (
        True,
        "2",
        True,
        "ganlab",
    )
    assert args.training_script_args == ["train", "--data", "D", "--epochs", "3", "--quiet"]
    assert os.environ["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"  # a fresh store for each restart


def test_help_says_the_batch_is_per_process(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in (["train"], ["sr", "train"]):
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--nproc N" in text and "images per step and process" in text and "--sync-bn" in text


def test_two_nodes_meet_restart_after_a_kill_and_stop_after_another(tiny_data: Path, tmp_path: Path) -> None:
    """Two "machines" on 127.0.0.1, one process each, through the c10d rendezvous (the documented command).
    A killed worker: both restart from the latest checkpoint. Killed again with no restart left: the other
    machine's process exits at once with a clear message, and so do both launchers."""
    out, (port,) = tmp_path / "run", _free_ports(1)
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "ganlab-test"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", *rdzv]
    env = dict(os.environ, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    logs = [tmp_path / f"node{n}.log" for n in range(2)]
    nodes: list[subprocess.Popen] = []
    try:
        for log in logs:
            with open(log, "w") as fh:
                argv = [*cmd, "--max-restarts", "1", *_train(tiny_data, out, 50)]
                nodes.append(subprocess.Popen(argv, stdout=fh, stderr=fh, env=env))
        _wait_for(lambda: (out / "checkpoints" / "epoch_0001.safetensors").exists(), nodes)
        os.kill(_children(nodes[1].pid)[-1], signal.SIGKILL)
        _wait_for(lambda: len(_starts(logs)) == 2, nodes)
        resumed = int(_starts(logs)[1].split("| epochs ")[1].split("..")[0])
        _wait_for(lambda: (out / "checkpoints" / f"epoch_{resumed:04d}.safetensors").exists(), nodes)
        os.kill(_children(nodes[1].pid)[-1], signal.SIGKILL)
        t0 = time.monotonic()
        codes = [p.wait(timeout=60) for p in nodes]  # TimeoutExpired here would be a hang
        waited = time.monotonic() - t0
    finally:
        for p in nodes:
            p.kill()
    text = [log.read_text() for log in logs]
    assert "global batch 4" in _starts(logs)[0]  # one run over both machines
    assert resumed >= 2  # the restarted processes went on from a checkpoint, not from scratch
    epochs = [r["epoch"] for r in read_metrics(out, "epoch")]
    assert set(epochs) == set(range(1, max(epochs) + 1)) and max(epochs) >= resumed
    assert codes[0] != 0 and codes[1] != 0 and waited < 60
    assert "lost contact with the other processes" in text[0], text[0][-3000:]


def _starts(logs: list[Path]) -> list[str]:
    """The lines a run starts with, from both machines' logs."""
    lines = [line for log in logs for line in log.read_text().splitlines()]
    return [line for line in lines if line.startswith("training model2")]
