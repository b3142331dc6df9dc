"""The run directory: its layout, the checkpoint it points at, the metrics log, and the one check that
a run belongs to the task that loads it."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganlab.core.checkpoint import Checkpoint, load_checkpoint, read_meta, save_checkpoint
from ganlab.core.config import save_yaml, to_dict
from ganlab.core.errors import CheckpointError
from ganlab.core.storage import writing
from ganlab.core.version import VERSION


@dataclass
class RunDir:
    """Layout: config.yaml, metrics.jsonl, checkpoints/epoch_NNNN.safetensors + latest.json, samples/."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def create(self) -> None:
        with writing(self.root, "the run directory"):
            for p in (self.root, self.checkpoints, self.samples):
                p.mkdir(parents=True, exist_ok=True)
            for p in self.checkpoints.glob(".*tmp*"):  # left by a process killed while writing
                p.unlink(missing_ok=True)

    def write_config(self, cfg: Any) -> None:
        tmp = self.config_path.with_name(".config.yaml.tmp")
        with writing(self.config_path):
            save_yaml(cfg, tmp)
            tmp.replace(self.config_path)

    def checkpoint_path(self, epoch: int, step_in_epoch: int = 0) -> Path:
        suffix = f"_step{step_in_epoch:06d}" if step_in_epoch else ""
        return self.checkpoints / f"epoch_{epoch:04d}{suffix}.safetensors"

    def checkpoint_for(self, epoch: int, step_in_epoch: int) -> Path:
        """The file of the checkpoint after ``epoch`` complete epochs plus ``step_in_epoch`` steps."""
        label = (epoch, 0) if step_in_epoch == 0 else (epoch + 1, step_in_epoch)
        return self.checkpoint_path(*label)

    def set_latest(self, path: Path, epoch: int, step_in_epoch: int) -> None:
        tmp = self.checkpoints / ".latest.json.tmp"
        with writing(self.latest_pointer):
            tmp.write_text(json.dumps({"file": path.name, "epoch": epoch, "step_in_epoch": step_in_epoch}))
            tmp.replace(self.latest_pointer)

    @property
    def latest_pointer(self) -> Path:
        return self.checkpoints / "latest.json"

    def has_checkpoint(self) -> bool:
        """Whether a run has saved at least one checkpoint (a run to resume, not a new one)."""
        return self.latest_pointer.is_file() or bool(self.checkpoint_files())

    def checkpoint_files(self) -> list[Path]:
        """Every checkpoint file, oldest first by the progress its name records."""
        found = [(progress_of(p), p) for p in self.checkpoints.glob("epoch_*.safetensors")]
        return [p for key, p in sorted(found) if key is not None]

    def candidates(self) -> list[Path]:
        """Checkpoints to try for ``latest``: the one latest.json names, then the others newest first (the
        fallbacks when it is damaged)."""
        files = self.checkpoint_files()[::-1]
        try:
            named = self.checkpoints / json.loads(self.latest_pointer.read_text())["file"]
        except (OSError, ValueError, KeyError, TypeError):
            return files
        return [named] + [p for p in files if p != named]

    def resolve_checkpoint(self, which: str | int = "latest") -> Path:
        """``latest`` or an epoch number -> checkpoint file; errors list what exists."""
        if not self.root.is_dir():
            raise CheckpointError(f"run directory not found: {self.root}")
        if str(which) == "latest":
            found = self.candidates()
            if not found:
                raise CheckpointError(f"{self.root} has no checkpoint yet (no checkpoints/latest.json)")
            return found[0]
        try:
            epoch = int(which)
        except ValueError:
            raise CheckpointError(
                f"--checkpoint must be 'latest' or an epoch number, got {which!r}"
            ) from None
        path = self.checkpoint_path(epoch)
        if not path.is_file():
            have = sorted(p.name for p in self.checkpoints.glob("epoch_*.safetensors"))
            raise CheckpointError(
                f"no checkpoint for epoch {epoch} in {self.root}; available: {', '.join(have) or 'none'}"
            )
        return path

    def save(
        self,
        epoch: int,
        step_in_epoch: int,
        modules: dict[str, Any],
        meta: dict[str, Any],
        optimizers: dict[str, Any],
        tensors: dict[str, torch.Tensor] | None = None,
        keep_last: int = 0,
        keep_every: int = 0,
    ) -> Path:
        """Checkpoint after ``epoch`` complete epochs plus ``step_in_epoch`` steps of the next (named after
        the epoch it belongs to), point ``latest`` at it, then prune old ones."""
        path = self.checkpoint_for(epoch, step_in_epoch)
        save_checkpoint(path, modules, meta, optimizers, tensors)
        self.set_latest(path, epoch, step_in_epoch)
        self.prune(keep_last, keep_every, protect=path)
        return path

    def prune(self, keep_last: int, keep_every: int, protect: Path) -> None:
        """Delete old epoch checkpoints: keep the newest ``keep_last`` (0 keeps all) and every
        ``keep_every``-th epoch."""
        if keep_last <= 0:
            return
        for p in self.checkpoint_files()[:-keep_last]:
            epoch, step = progress_of(p) or (0, 0)
            if p == protect or (step == 0 and keep_every > 0 and epoch % keep_every == 0):
                continue
            p.unlink(missing_ok=True)


def write_weights_run(root: str | Path, task: str, cfg: Any, modules: dict[str, Any]) -> Path:
    """A run directory holding just ``modules`` as epoch 1 of a ``task`` run with config ``cfg`` (no
    optimizer state): what inference commands need, for weights trained elsewhere or made up in tests."""
    run = RunDir(root)
    run.create()
    run.write_config(cfg)
    path = run.checkpoint_path(1)
    meta = {"task": task, "config": to_dict(cfg), "epoch": 1, "step_in_epoch": 0, "global_step": 1}
    save_checkpoint(path, modules, meta)
    run.set_latest(path, 1, 0)
    return run.root


def progress_of(path: Path) -> tuple[int, int] | None:
    """(complete epochs, steps into the next) that a checkpoint's name records: epoch_0003 -> (3, 0),
    epoch_0003_step000050 -> (2, 50); None for another name."""
    parts = path.name.removesuffix(".safetensors").split("_")
    try:
        if len(parts) == 2:
            return int(parts[1]), 0
        if len(parts) == 3 and parts[2].startswith("step"):
            return int(parts[1]) - 1, int(parts[2][4:])
    except ValueError:
        pass
    return None


class MetricsLog:
    """Append-only JSON lines; each record is flushed at once so a crash loses nothing logged."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        with writing(self.path), open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=_json_default) + "\n")

    def config_change(self, epoch: int, step: int, changes: dict[str, list[Any]], log: Any = print) -> None:
        """Record (and say) a recipe change made at resume; it takes effect from ``epoch``."""
        self.write({"type": "config_change", "epoch": epoch, "step": step, "changes": changes})
        log(
            f"config changed at resume (from epoch {epoch}): "
            + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items())
        )


def progress_meta(
    task: str, cfg: Any, epoch: int, step_in_epoch: int, global_step: int, train_seconds: float
) -> dict[str, Any]:
    """The checkpoint metadata every trainer writes: what the run is and how far it got."""
    return {
        "task": task,
        "ganlab_version": VERSION,
        "config": to_dict(cfg),
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "global_step": global_step,
        "train_seconds": train_seconds,
        "time": time.time(),
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def read_metrics(path: str | Path, type_: str | None = None) -> list[dict[str, Any]]:
    """Records of metrics.jsonl (optionally only those of one ``type``); skips a torn last line."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if type_ is None or rec.get("type") == type_:
            out.append(rec)
    return out


def _check_task(meta: dict[str, Any], path: Path, task: str | None) -> None:
    if task is not None and meta.get("task") != task:
        names = {"cyclegan": "CycleGAN", "sr": "super-resolution"}
        raise CheckpointError(
            f"{path} is a {names.get(meta.get('task'), repr(meta.get('task')))} run, "
            f"not a {names.get(task, task)} run"
        )


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _first_intact(
    run_dir: str | Path, which: str | int, read: Callable[[Path], Any], warn: Callable[[str], None]
) -> Any:
    """``read`` of checkpoint ``which``; for ``latest``, a damaged file is reported and the next older
    one tried, so a run whose newest checkpoint is torn or altered still loads (saying which file)."""
    run = RunDir(Path(run_dir))
    if str(which) != "latest":
        return read(run.resolve_checkpoint(which))
    run.resolve_checkpoint("latest")  # a clear error when the run has none
    damaged: list[str] = []
    for path in run.candidates():
        try:
            item = read(path)
        except CheckpointError as e:
            damaged.append(str(e))
            warn(f"warning: {e}")
            continue
        if damaged:
            warn(f"warning: falling back to {path}, the newest intact checkpoint")
        return item
    raise CheckpointError(
        f"{run.root}: no intact checkpoint ({len(damaged)} damaged; the first: {damaged[0] if damaged else '-'})"
    )


def load_run_checkpoint(
    run_dir: str | Path,
    which: str | int = "latest",
    task: str | None = None,
    warn: Callable[[str], None] = _warn,
) -> Checkpoint:
    """The checkpoint ``which`` (latest or an epoch number) of a run, checked to be of ``task``; a damaged
    latest one falls back to the newest intact one (see :func:`_first_intact`)."""
    ckpt = _first_intact(run_dir, which, load_checkpoint, warn)
    _check_task(ckpt.meta, Path(run_dir), task)
    return ckpt


def run_meta(
    run_dir: str | Path,
    which: str | int = "latest",
    task: str | None = None,
    warn: Callable[[str], None] = _warn,
) -> dict[str, Any]:
    """The metadata of a run's checkpoint without reading its tensors, checked to be of ``task``."""
    meta = _first_intact(run_dir, which, read_meta, warn)
    _check_task(meta, Path(run_dir), task)
    return meta
