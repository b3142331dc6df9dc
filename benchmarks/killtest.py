"""Kill -9 harness: train a tiny run, SIGKILL it at random moments, resume each time, and check that
nothing is lost or torn.

    python benchmarks/killtest.py --trials 20              # CycleGAN (default)
    python benchmarks/killtest.py --trials 20 --task sr    # SRResNet
    python benchmarks/killtest.py --trials 5 --json        # what tests/test_killtest.py runs

A reference run trains the same config without interruption. Then each trial starts (or resumes) the
run in a forked child and kills it, in turn:

* ``random``: SIGKILL from this process a random 0..1 step after a random step, 1..2K+1 steps
  past the resume point (K = the step cadence, ``train.checkpoint_every_steps``);
* ``kill-in-write``: the child SIGKILLs itself inside its first checkpoint write, between the temporary
  file and the rename (``GANLAB_TEST_CHECKPOINT_HOOK=kill:1``);
* ``torn-in-write``: the same at its second write, after cutting the temporary file in half (``torn:2``);
* ``harness-in-write``: the child pauses inside every write (``sleep:0.3``); past a random step, this
  process SIGKILLs it while the temporary file exists.

After each kill a forked verifier loads every checkpoint file on disk (checksums) and notes which one a
resume would pick. At the end the run is resumed to completion and its final checkpoint compared
tensor by tensor with the reference run's (CPU, fp32, one thread). Printed figures: trials, kills by
kind, resumes succeeded, torn checkpoints loaded (must be 0), damaged files on disk, max work lost per
kill (steps; must be <= K) and whether the final weights equal the reference bit for bit. The exit
status is 0 only when every check holds.

Children are forked after importing ganlab and torch, but this process runs no tensor operation, so no
thread pool exists when it forks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Imported here, once, so that forked children start at once (torch.optim imports torch._dynamo when
# the first optimizer is built: seconds per child otherwise); importing runs no tensor operation.
import torch._dynamo  # noqa: F401
from PIL import Image

import ganlab.cyclegan.trainer
import ganlab.sr.trainer
from ganlab.core.checkpoint import TEST_HOOK_ENV, load_checkpoint
from ganlab.core.errors import CheckpointError
from ganlab.core.rundir import RunDir, load_run_checkpoint, progress_of

KINDS = ("random", "kill-in-write", "random", "torn-in-write", "harness-in-write")
RESUME_LINE = re.compile(r"resuming from (\S+): epoch (\d+) \+ (\d+) step")
IMAGES = 6  # per domain (CycleGAN) or in the HR folder (SR)


# ------------------------------------------------------------------------------ the run being killed


def make_data(root: Path, task: str) -> Path:
    """A tiny generated data set: CycleGAN trainA/trainB of 40 px images, or a folder of 48 px SR images."""
    rng = np.random.default_rng(0)
    folders = ["trainA", "trainB"] if task == "cyclegan" else ["hr"]
    for name in folders:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES):
            yy, xx = np.mgrid[0:48, 0:48] / 48
            c = rng.random((3, 3))
            img = np.stack(
                [c[k, 0] + 0.5 * np.sin(6 * c[k, 1] * xx + 5 * c[k, 2] * yy) for k in range(3)], -1
            )
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root if task == "cyclegan" else root / "hr"


def run_config(task: str, data: Path, epochs: int, every: int) -> dict[str, Any]:
    """Overrides of a tiny fp32 run on one CPU thread, checkpointing every ``every`` steps."""
    train = {
        "epochs": epochs,
        "device": "cpu",
        "precision": "fp32",
        "threads": 1,
        "log_every": 1,  # a step record per step: the work each trial did
        "checkpoint_every_steps": every,
        "checkpoint_every_minutes": None,
        "keep_checkpoints": 3,
    }
    if task == "cyclegan":
        return {
            "model": {"hidden": 8},
            "disc": {"hidden": 8, "n_layers": 2},
            "data": {"root": str(data), "size": 32},
            # EMA, image pools and augmentation (global RNG) all have to resume exactly.
            "train": {**train, "batch_size": 1, "eval_images": 0, "samples": 1, "ema_decay": 0.9}
            | {"augment": ["color", "translation"]},
        }
    return {
        "model": {"hidden": 8, "n_residual": 1},
        "data": {"root": str(data), "size": 32, "eval_images": 0},
        "train": {**train, "batch_size": 2, "steps_per_epoch": IMAGES},
    }


def train_run(task: str, out: Path, overrides: dict[str, Any], resume: bool) -> None:
    """Start or resume the run in this (child) process; every log line is flushed at once."""

    def log(line: str) -> None:
        print(line, flush=True)

    kw: dict[str, Any] = {"out": out, "log": log, "progress": False}
    if resume:
        kw["resume"] = out
    else:
        kw["overrides"] = overrides
    if task == "cyclegan":
        ganlab.cyclegan.trainer.train(preset="model2", **kw)
    else:
        ganlab.sr.trainer.train_sr(preset="srresnet-small", **kw)


# ------------------------------------------------------------------------------------------ children


def fork(fn: Callable[[], None], log: Path, env: dict[str, str] | None = None) -> int:
    """Run ``fn`` in a forked child with stdout and stderr appended to ``log``; returns its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.update(env or {})
        fn()
        code = 0
    except BaseException:  # noqa: BLE001 - report anything, then leave without the parent's cleanup
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def wait(pid: int) -> int:
    """The child's exit code (negative: killed by that signal)."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def in_child(fn: Callable[[], Any], work: Path) -> Any:
    """``fn()``'s JSON-able result, computed in a forked child (this process stays free of tensors)."""
    out = work / f"result-{time.monotonic_ns()}.json"

    def child() -> None:
        out.write_text(json.dumps(fn()))

    code = wait(fork(child, work / "children.log"))
    if code != 0:
        raise RuntimeError(f"child failed ({code}); see {work / 'children.log'}")
    return json.loads(out.read_text())


def verify(run: Path) -> dict[str, Any]:
    """(In a child.) Which checkpoint files load with a matching checksum, and which one a resume picks."""
    intact, damaged = [], []
    for p in RunDir(run).checkpoint_files():
        try:
            load_checkpoint(p)
            intact.append(str(p))
        except CheckpointError:
            damaged.append(str(p))
    choice = None
    if RunDir(run).has_checkpoint():
        choice = str(load_run_checkpoint(run, warn=lambda _: None).path)
    return {"intact": intact, "damaged": damaged, "choice": choice}


def compare(a: Path, b: Path) -> dict[str, Any]:
    """(In a child.) Tensors of two checkpoint files that differ, model weights and all state."""
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    differ = sorted(k for k in ta if k not in tb or ta[k].shape != tb[k].shape or not (ta[k] == tb[k]).all())
    model = [k for k in ta if k.startswith("model/")]
    return {
        "tensors": len(ta),
        "model_tensors": len(model),
        "same_keys": ta.keys() == tb.keys(),
        "differ": differ[:10],
        "model_differ": [k for k in differ if k.startswith("model/")][:10],
    }


# ---------------------------------------------------------------------------------------- the trials


class Harness:
    """One run killed ``trials`` times (see the module docstring), and the figures it gives."""

    def __init__(self, task: str, work: Path, trials: int, every: int, seed: int) -> None:
        self.task, self.work, self.trials, self.every = task, work, trials, every
        self.rng = random.Random(seed)
        data = make_data(work / "data", task)
        # Each trial moves the run on by about `every` steps: room for all of them, plus two epochs.
        self.epochs = max(3, math.ceil(trials * (every + 1) / IMAGES) + 2)
        self.total = self.epochs * IMAGES
        self.overrides = run_config(task, data, self.epochs, every)
        self.run, self.ref = work / "run", work / "reference"
        self.step_seconds = 0.05
        self.records: list[dict[str, Any]] = []

    def _new_steps(self, offset: int) -> int:
        """The largest step recorded in metrics.jsonl past byte ``offset`` (-1: none)."""
        path = RunDir(self.run).metrics_path
        try:
            with open(path, "rb") as fh:
                fh.seek(offset if offset <= path.stat().st_size else 0)
                lines = fh.read().decode(errors="replace").splitlines()
        except OSError:
            return -1
        steps = [-1]
        for line in lines:
            m = re.search(r'"type": "step", "epoch": \d+, "step": (\d+)', line)
            if m:
                steps.append(int(m.group(1)))
        return max(steps)

    def reference(self) -> None:
        t0 = time.monotonic()
        code = wait(
            fork(lambda: train_run(self.task, self.ref, self.overrides, False), self.work / "ref.log")
        )
        if code != 0:
            raise RuntimeError(f"the reference run failed ({code}); see {self.work / 'ref.log'}")
        self.step_seconds = (time.monotonic() - t0) / self.total

    def _watch(self, pid: int, kind: str, target: int, offset: int) -> int:
        """Wait for the child, killing it as ``kind`` says; its exit code (-9: SIGKILL)."""
        reached, delay, t0 = None, self.rng.uniform(0, self.step_seconds), time.monotonic()
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            if (
                kind in ("random", "harness-in-write")
                and reached is None
                and self._new_steps(offset) >= target
            ):
                reached = now
            writing = reached is not None and any(self.run.glob("checkpoints/.epoch_*.tmp-*"))
            due = reached is not None and kind == "random" and now - reached >= delay
            if due or (kind == "harness-in-write" and writing) or now - t0 > 300:
                os.kill(pid, signal.SIGKILL)
                return wait(pid)
            time.sleep(0.002)

    def _start(self, i: int, kind: str, target_span: int | None) -> dict[str, Any]:
        """Verify what is on disk, then start (or resume) the run in a child and let ``kind`` stop it."""
        t0 = time.monotonic()
        v = in_child(lambda: verify(self.run), self.work)
        t_verify = time.monotonic() - t0
        start = 0
        if v["choice"] is not None:
            epochs, step = _progress(Path(v["choice"]))
            start = epochs * IMAGES + step
        log = self.work / f"trial{i:02d}.log"
        hook = {"kill-in-write": "kill:1", "torn-in-write": "torn:2", "harness-in-write": "sleep:0.3"}
        metrics = RunDir(self.run).metrics_path
        offset = metrics.stat().st_size if v["choice"] and metrics.exists() else 0
        resume = v["choice"] is not None
        pid = fork(
            lambda: train_run(self.task, self.run, self.overrides, resume),
            log,
            {TEST_HOOK_ENV: hook.get(kind, "")},
        )
        target = min(start + self.rng.randint(1, target_span or 1), self.total - 1)
        code = self._watch(pid, kind, target, offset) if target_span else wait(pid)
        text = log.read_text()
        m = RESUME_LINE.search(text)
        logged = (int(m.group(2)) * IMAGES + int(m.group(3))) if m else None
        return {
            "trial": i,
            "kind": kind,
            "exit": code,
            "resume": resume,
            "verified_choice": v["choice"],
            "damaged_on_disk": v["damaged"],
            "resumed_from": m.group(1) if m else None,
            "start": start,
            "resume_point_matches": (not resume) or logged == start,
            "max_step": max(start, self._new_steps(offset)),
            "traceback": "Traceback" in text,
            "seconds": [round(t_verify, 2), round(time.monotonic() - t0 - t_verify, 2)],
        }

    def go(self) -> dict[str, Any]:
        t0 = time.monotonic()
        self.reference()
        for i in range(self.trials):
            kind = KINDS[i % len(KINDS)]
            rec = self._start(i, kind, 2 * self.every + 1)
            self.records.append(rec)
            if rec["exit"] == 0:  # the run finished before it was killed: no room for more trials
                break
        final = self._start(self.trials, "final", None)
        ref_ckpt = RunDir(self.ref).checkpoint_path(self.epochs)
        same = in_child(lambda: compare(ref_ckpt, RunDir(self.run).checkpoint_path(self.epochs)), self.work)
        return self.figures(final, same, time.monotonic() - t0)

    def figures(self, final: dict[str, Any], same: dict[str, Any], seconds: float) -> dict[str, Any]:
        recs = self.records
        after = recs[1:] + [final]
        lost = [r["max_step"] - nxt["start"] for r, nxt in zip(recs, after)]
        resumes = [r for r in after if r["resume"]]
        ok = [
            r
            for r in resumes
            if r["resumed_from"] == r["verified_choice"] and r["resume_point_matches"] and not r["traceback"]
            and r["exit"] in (0, -signal.SIGKILL)
        ]  # fmt: skip
        torn = [r for r in resumes if r["resumed_from"] in r["damaged_on_disk"]]
        kills = [r for r in recs if r["exit"] == -signal.SIGKILL]
        fig = {
            "task": self.task,
            "trials": len(recs),
            "kills": len(kills),
            "kills_by_kind": {k: sum(r["kind"] == k for r in kills) for k in dict.fromkeys(KINDS)},
            "resumes": len(resumes),
            "resumes_succeeded": len(ok),
            "torn_checkpoints_loaded": len(torn),
            "damaged_files_on_disk": sum(len(r["damaged_on_disk"]) for r in after),
            "cadence_steps": self.every,
            "max_work_lost_steps": max(lost, default=0),
            "mean_work_lost_steps": round(sum(lost) / len(lost), 2) if lost else 0.0,
            "total_steps": self.total,
            "final_resume_exit": final["exit"],
            "final_weights_equal": not same["model_differ"] and same["same_keys"],
            "final_state_equal": not same["differ"] and same["same_keys"],
            "tensors_compared": same["tensors"],
            "seconds": round(seconds, 1),
        }
        fig["passed"] = bool(
            fig["kills"] == self.trials
            and fig["resumes_succeeded"] == fig["resumes"]
            and fig["torn_checkpoints_loaded"] == 0
            and fig["damaged_files_on_disk"] == 0
            and fig["max_work_lost_steps"] <= self.every
            and fig["final_resume_exit"] == 0
            and fig["final_weights_equal"]
        )
        return fig


def _progress(path: Path) -> tuple[int, int]:
    p = progress_of(path)
    if p is None:
        raise RuntimeError(f"unexpected checkpoint name {path}")
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20, help="kills (default 20)")
    ap.add_argument("--task", choices=["cyclegan", "sr"], default="cyclegan")
    ap.add_argument("--every", type=int, default=2, help="train.checkpoint_every_steps (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--work", help="working folder (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.every < 1:
        ap.error("--trials and --every must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        fig = Harness(args.task, work, args.trials, args.every, args.seed).go()
    if args.json:
        print(json.dumps(fig))
    else:
        print(f"kill -9 harness, {fig['task']}: {fig['trials']} trials, {fig['seconds']} s")
        for k, v in fig.items():
            print(f"  {k}: {v}")
        print("PASSED" if fig["passed"] else "FAILED")
    return 0 if fig["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
