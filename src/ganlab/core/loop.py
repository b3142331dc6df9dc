"""The training loop every task shares: epochs of steps under a wall-clock budget, a progress bar,
graceful Ctrl-C, checkpoints at each epoch end, on a cadence (steps, minutes) and at a mid-epoch stop,
steps with a non-finite loss skipped (``ganlab.core.nonfinite``), metric records, exact resume.

A task (CycleGAN, SR) supplies what differs as a :class:`TrainTask`: its modules and optimizers, its
batches, its step, its per-epoch evaluation and log lines. The loop owns progress (epoch, step in the
epoch, global step, training seconds, the running loss sums of an unfinished epoch) and persists it in
every checkpoint, so a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from ganlab.core import distributed as dist
from ganlab.core.budget import StopFlag
from ganlab.core.cadence import Cadence
from ganlab.core.checkpoint import Checkpoint, restore
from ganlab.core.config import Option
from ganlab.core.device import peak_memory_mb
from ganlab.core.errors import ConfigError, UserError
from ganlab.core.nonfinite import BadStepGuard
from ganlab.core.rundir import MetricsLog, RunDir, progress_meta
from ganlab.core.tensorboard import TensorBoardLogger

# Flags every task's train command has: the train.* keys the shared loop and device code read.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("minutes", "train.minutes", "wall-clock budget; stops cleanly with a checkpoint", float),
    Option("batch_size", "train.batch_size", "images per step and process (global: x processes)", int),
    Option("device", "train.device", "auto, cpu, cuda, cuda:1, mps"),
    Option("seed", "train.seed", "random seed", int),
    Option(
        "precision",
        "train.precision",
        "auto: bf16 where the hardware has it, fp16 with loss scaling on a GPU without it, else fp32",
        str,
        ("auto", "fp32", "bf16", "fp16"),
    ),
    Option(
        "tensorboard",
        "train.tensorboard",
        "also log to RUN_DIR/tb (needs the tensorboard extra)",
        flag_value=True,
    ),
    Option("sync_bn", "train.sync_bn", "several processes: batch norm of the global batch", flag_value=True),
)


def _compile_failure(e: BaseException) -> bool:
    """Whether ``e`` is torch.compile's own failure (dynamo or inductor) rather than the model's; by
    module name, so that a run without compile never imports torch._dynamo."""
    return any(c.__module__.startswith(("torch._dynamo", "torch._inductor")) for c in type(e).__mro__)


@dataclass
class LoopSettings:
    """The task-independent part of a recipe."""

    epochs: int | None  # total epochs (None: until the budget is spent)
    minutes: float | None  # wall-clock budget across resumes
    log_every: int  # steps between step records
    keep_checkpoints: int  # newest checkpoints kept (0: all)
    keep_every: int  # also keep every N-th epoch's checkpoint
    tensorboard: bool = False
    sync_bn: bool = False  # several processes: batch-norm statistics of the global batch
    checkpoint_every_steps: int | None = None  # also checkpoint mid-epoch every N global steps
    checkpoint_every_minutes: float | None = 10.0  # and after this many minutes without a checkpoint
    max_bad_steps: int = 3  # steps in a row with a non-finite loss before the run stops
    max_steps: int | None = None  # a compute budget: stop after this many steps in all
    compile: bool = False  # torch.compile the trained networks (around any DDP wrapper)

    @classmethod
    def of(cls, train: Any, epochs: int | None) -> LoopSettings:
        """From a task's ``train`` config section (the keys both tasks share) and its total epochs."""
        t = train
        return cls(
            epochs, t.minutes, t.log_every, t.keep_checkpoints, t.keep_every, t.tensorboard, t.sync_bn,
            t.checkpoint_every_steps, t.checkpoint_every_minutes, t.max_bad_steps,
            getattr(t, "max_steps", None), getattr(t, "compile", False),
        )  # fmt: skip


@dataclass
class TrainResult:
    run_dir: Path
    epoch: int  # completed epochs
    global_step: int
    stopped: str  # "done", "budget", "interrupted"
    checkpoint: Path | None
    minutes: float  # training minutes of the whole run, earlier invocations included

    def summary(self) -> str:
        """The line the train commands print when a run stops."""
        return (
            f"{self.stopped}: {self.epoch} epoch(s), {self.global_step} steps in {self.minutes:.1f} min; "
            f"run directory {self.run_dir}"
        )


class TrainTask:
    """What a task supplies to :class:`TrainLoop`. Subclasses set ``name`` and ``cfg``."""

    name: str
    cfg: Any
    device: torch.device

    def modules(self) -> dict[str, nn.Module]:
        """Every module saved in a checkpoint, by name."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Further state saved in a checkpoint (e.g. image pools), per process when several train."""
        return {}

    def parallelize(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Several processes: train through ``wrap(m)`` (DDP) for each trained module m (modules() stay)."""
        raise ConfigError(f"{self.name} training does not support several processes")

    def reseed(self, seed: int) -> None:
        """Restart this process's own random streams (a data-parallel rank's) from ``seed``."""
        torch.manual_seed(seed)

    def restore(self, ckpt: Checkpoint) -> None:
        """Load modules, optimizers (and extras) from a checkpoint; the RNG state comes last."""
        restore(ckpt, self.modules(), self.optimizers())

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        """The line logged when training starts."""
        return f"training {self.name}"

    def begin_epoch(
        self, epoch: int, total: int | None, metrics: MetricsLog, log: Callable[[str], None]
    ) -> None:
        """Set the schedule for ``epoch`` (lr, loss weights); may write records."""

    def batches(self, epoch: int, start: int) -> Iterable[Any]:
        """The batches of ``epoch`` from step ``start`` on (a pure function of seed and epoch)."""
        raise NotImplementedError

    def step(self, batch: Any, progress: float, global_step: int) -> dict[str, Any]:
        """One update; ``progress`` in [0, 1] is how much of the run is done. Returns every loss term
        (floats, or 0-d tensors that the loop reads only when it writes a record); raises
        ``NonFiniteLoss`` instead of applying an update whose loss is NaN or Inf."""
        raise NotImplementedError

    def record_fields(self) -> dict[str, Any]:
        """Schedule values in force (lr, loss weights), added to step and epoch records."""
        return {}

    def postfix(self, losses: dict[str, float]) -> dict[str, float]:
        """The few losses the progress bar shows."""
        return {}

    def evaluate(self) -> dict[str, float]:
        """Cheap per-epoch evaluation, merged into the epoch record."""
        return {}

    def end_epoch(self, epoch: int, record: dict[str, Any], run: RunDir) -> dict[str, Image.Image]:
        """Per-epoch outputs (sample grids); returns images for TensorBoard."""
        return {}

    def summary(self, record: dict[str, Any]) -> str:
        """The line logged after each epoch."""
        return f"epoch {record['epoch']} {record['seconds']:.1f}s"


class TrainLoop:
    """Runs a task's epochs into a run directory; see the module docstring."""

    def __init__(
        self,
        task: TrainTask,
        settings: LoopSettings,
        out: str | Path,
        resume: Checkpoint | None = None,
        config_changes: dict[str, list[Any]] | None = None,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ) -> None:
        self.task, self.settings, self.log = task, settings, dist.rank_zero(log)
        self.progress = progress and dist.is_main()  # rank 0 alone writes the run directory and the bar
        self.run = RunDir(Path(out))
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.train_seconds = 0.0  # training time of earlier invocations (the budget spans them)
        self.sums: dict[str, Any] = {}  # loss sums of the epoch in progress (kept across resume)
        self.epoch_seconds = 0.0  # time spent in the epoch in progress by earlier invocations
        if dist.is_main():
            self.run.create()
            if resume is None and self.run.metrics_path.exists():
                # Left by an earlier attempt that never saved a checkpoint: its records describe no weights.
                self.run.metrics_path.unlink()
        self.metrics = dist.metrics_log(self.run.metrics_path)
        resume, seed = dist.rank_view(resume, self.log)  # this process's own state; a seed for new streams
        if resume is not None:
            task.restore(resume)
            m = resume.meta
            self.epoch, self.step_in_epoch, self.global_step = (
                m["epoch"],
                m["step_in_epoch"],
                m["global_step"],
            )
            self.train_seconds = float(m.get("train_seconds", 0.0))
            if self.step_in_epoch:
                self.sums = dict(m.get("epoch_sums", {}))
                self.epoch_seconds = float(m.get("epoch_seconds", 0.0))
            self.log(f"resuming from {resume.path}: epoch {self.epoch} + {self.step_in_epoch} step(s)")
            if config_changes:
                # The new recipe takes effect from the next step; logged so curves can be read correctly.
                self.metrics.config_change(self.epoch + 1, self.global_step, config_changes, self.log)
        dist.prepare(task, settings.sync_bn, seed, torch.compile if settings.compile else None)
        if settings.compile:
            self.log("train.compile: the first steps include torch.compile's compilation")
        self.tb = None
        if dist.is_main():
            self.run.write_config(task.cfg)
            self.tb = TensorBoardLogger(self.run.root) if settings.tensorboard else None

    def save(self, epoch: int, step_in_epoch: int, epoch_seconds: float = 0.0) -> Path:
        """Checkpoint after ``epoch`` complete epochs plus ``step_in_epoch`` steps of the next."""
        self.cadence.saved()
        meta = progress_meta(
            self.task.name, self.task.cfg, epoch, step_in_epoch, self.global_step, self.budget.elapsed()
        )
        if step_in_epoch:
            meta.update(epoch_sums=dist.mean_values(self.sums), epoch_seconds=epoch_seconds)
        s, tensors = self.settings, dist.gather_rank_state(self.task.extra_tensors(), meta)
        with dist.main_work():  # rank 0 writes; the others (tensors None) wait for the file
            if tensors is None:
                return self.run.checkpoint_for(epoch, step_in_epoch)
            return self.run.save(
                epoch,
                step_in_epoch,
                self.task.modules(),
                meta,
                self.task.optimizers(),
                tensors,
                s.keep_checkpoints,
                s.keep_every,
            )

    def run_progress(self) -> float:
        """Share of the run done: the larger of the step share and the budget share."""
        s, p = self.settings, 0.0
        if s.epochs is not None:
            p = self.global_step / max(1, s.epochs * self.task.steps_per_epoch())
        if s.minutes is not None:
            p = max(p, self.budget.elapsed() / (s.minutes * 60))
        if s.max_steps is not None:
            p = max(p, self.global_step / s.max_steps)
        return min(p, 1.0)

    def out_of_budget(self) -> bool:
        """The wall-clock or the step budget is spent (the step count is the same on every process)."""
        s = self.settings
        return self.budget.expired() or (s.max_steps is not None and self.global_step >= s.max_steps)

    def fit(self) -> TrainResult:
        s = self.settings
        self.budget = dist.make_budget(s.minutes, self.train_seconds)
        # The budget's clock (rank 0's under torchrun, the same on every process): saving is collective,
        # so every process must find a checkpoint due at the same step.
        self.cadence = Cadence(
            s.checkpoint_every_steps, s.checkpoint_every_minutes, clock=self.budget.elapsed
        )
        self.guard = BadStepGuard(s.max_bad_steps, self.log, self.metrics.write, self.run)
        total = s.epochs if s.epochs is not None else math.inf
        if self.out_of_budget() and self.epoch < total:
            spent = f"{s.minutes}-minute" if self.budget.expired() else f"{s.max_steps}-step"
            self.log(f"the run's {spent} budget is already spent; raise it to go on")
            return self._result("budget", None)
        self.log(
            self.task.describe()
            + f" | epochs {self.epoch + 1}..{s.epochs or 'budget'} | out: {self.run.root}"
        )
        stopped, last = "done", None
        with StopFlag() as stop:
            while self.epoch < total:
                finished, last = self._epoch(self.epoch + 1, stop)
                if not finished or stop.requested or self.out_of_budget():
                    stopped = "interrupted" if stop.requested else "budget"
                    if finished and self.epoch < total:
                        self.log(f"stopped ({stopped}) after epoch {self.epoch}; checkpoint {last}")
                    break
        if self.tb is not None:
            self.tb.close()
        if self.epoch >= total:
            stopped = "done"
        return self._result(stopped, last)

    def _result(self, stopped: str, ckpt: Path | None) -> TrainResult:
        return TrainResult(
            self.run.root, self.epoch, self.global_step, stopped, ckpt, self.budget.elapsed() / 60
        )

    def _epoch(self, epoch: int, stop: StopFlag) -> tuple[bool, Path]:
        """Train one epoch (or its rest); returns (finished, checkpoint written)."""
        task, s = self.task, self.settings
        task.begin_epoch(epoch, s.epochs, self.metrics, self.log)
        steps = task.steps_per_epoch()
        t0 = time.monotonic() - self.epoch_seconds
        bar = tqdm(
            total=steps,
            initial=self.step_in_epoch,
            desc=f"epoch {epoch}" + (f"/{s.epochs}" if s.epochs else ""),
            unit="step",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in task.batches(epoch, self.step_in_epoch):
            if self.step_in_epoch >= steps:
                break
            where = (epoch, self.step_in_epoch + 1, self.global_step + 1)
            try:
                losses = self.guard.call(where, task.step, batch, self.run_progress(), self.global_step)
            except Exception as e:
                if s.compile and _compile_failure(e):
                    first = (str(e).strip().splitlines() or [""])[0]
                    raise UserError(
                        f"train.compile: torch.compile failed on this model ({type(e).__name__}: {first}); "
                        "train without it (--set train.compile=false)"
                    ) from e
                raise
            self.step_in_epoch += 1
            self.global_step += 1
            # Losses stay on the device (0-d tensors) and are summed there: reading them every step
            # would wait for the device each time. They are read when a record is written.
            for k, v in losses.items():
                self.sums[k] = self.sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v)
            if losses and (self.global_step % s.log_every == 0 or self.step_in_epoch == 1):
                values = dist.mean_values(losses)  # every process's losses, averaged
                if self.global_step % s.log_every == 0:
                    rec = {"type": "step", "epoch": epoch, "step": self.global_step, **values}
                    self.metrics.write({**rec, **task.record_fields()})
                postfix = {k: f"{v:.4g}" for k, v in task.postfix(values).items()}
                if s.minutes is not None:
                    postfix["left"] = f"{max(0.0, self.budget.left()) / 60:.1f}m"
                bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if dist.agree_stop(stop, self.budget) or self.out_of_budget():
                break
            if self.step_in_epoch < steps and self.cadence.due(self.global_step):
                self.save(self.epoch, self.step_in_epoch, time.monotonic() - t0)
        bar.close()
        seconds = time.monotonic() - t0
        if self.step_in_epoch < steps:  # stopped inside the epoch
            path = self.save(self.epoch, self.step_in_epoch, seconds)
            why = "interrupted" if stop.requested else "budget"
            self.log(f"stopped ({why}) at epoch {epoch} step {self.step_in_epoch}/{steps}; checkpoint {path}")
            return False, path
        return True, self._end_epoch(epoch, steps, seconds)

    def _end_epoch(self, epoch: int, steps: int, seconds: float) -> Path:
        task = self.task
        means = {k: v / max(1, self.step_in_epoch) for k, v in dist.mean_values(self.sums).items()}
        self.epoch, self.step_in_epoch, self.sums, self.epoch_seconds = epoch, 0, {}, 0.0
        record = {
            "type": "epoch",
            "epoch": epoch,
            "step": self.global_step,
            "seconds": seconds,
            "steps": steps,
            **means,
            **task.record_fields(),
            "peak_mem_mb": peak_memory_mb(task.device),
        }
        with dist.main_work() as main:  # evaluation, records and samples: rank 0's
            if main:
                record.update(task.evaluate())
                self.metrics.write(record)
                images = task.end_epoch(epoch, record, self.run)
                if self.tb is not None:
                    self.tb.log_epoch(record)
                    for tag, image in images.items():
                        self.tb.log_image(tag, image, epoch)
        path = self.save(epoch, 0)
        self.log(task.summary(record))
        return path
