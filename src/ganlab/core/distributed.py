"""Data-parallel training over several processes, on one machine or many, launched by ``torchrun``
(``torch.distributed.run``), which gives each process RANK, LOCAL_RANK, WORLD_SIZE and MASTER_ADDR/PORT.

Knows no task. The shared loop (``ganlab.core.loop``) calls it at a few points, the way torchtitan's
parallelize step wraps a model from the outside, so model files and training steps stay plain PyTorch:

- :func:`session` (from ``ganlab.core.process_group``) brings the process group up (gloo on CPUs, nccl
  on CUDA with one GPU per local rank) with a timeout, and takes it down on every way out, turning a lost
  peer into one clear error;
- :func:`wrapper` wraps each trained module: batch norm made synchronous on request, then
  DistributedDataParallel, which averages the gradients over the processes during backward;
- :func:`shard` splits an epoch's global plan, so the global batch is per-process batch x processes;
- rank 0 alone writes (:func:`main_work`); logged losses are the processes' mean (:func:`mean_values`);
  rank 0's clock and any process's Ctrl-C stop every process after the same step (:func:`agree_stop`);
- each process's own state (image pools, random streams) is saved per rank (:func:`gather_rank_state`)
  and restored per rank, or re-seeded when the number of processes changed (:func:`rank_view`).

In a single process (no torchrun) every helper is the identity and nothing here starts.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganlab.core.budget import Budget, StopFlag
from ganlab.core.checkpoint import Checkpoint, rng_state_tensors
from ganlab.core.process_group import (
    active,
    groups,
    is_main,
    job,
    launched,
    rank,
    rank_zero,
    restarted,
    session,
    world_size,
)
from ganlab.core.rundir import MetricsLog
from ganlab.core.sync_bn import convert_sync_batchnorm

# What the loop and the tasks use, from here or from ganlab.core.process_group.
__all__ = [
    "active", "agree_stop", "batch_note", "fresh_seed", "gather_rank_state", "is_main", "launched",
    "main_work", "make_budget", "mean_values", "metrics_log", "prepare", "rank", "rank_view", "rank_zero",
    "restarted", "session", "shard", "world_size", "wrapper", "QuietLog", "SharedBudget",
]  # fmt: skip

SHARED_PREFIXES = ("model/", "optim/")  # checkpoint tensors every process holds alike


# ---------------------------------------------------------------------------------- modules and data


def wrapper(sync_bn: bool) -> Callable[[nn.Module], nn.Module]:
    """The wrap a task applies to each module it trains: synchronous batch norm if ``sync_bn`` (statistics
    of the global batch, as one process with the whole batch has), then DistributedDataParallel.

    DDP averages gradients during backward, as a single process's mean over the whole batch does. It fits
    GAN steps that call a network several times before one backward (all calls land in one graph) and
    steps that freeze a discriminator while the generators learn (no gradient, nothing to reduce)."""

    def wrap(module: nn.Module) -> nn.Module:
        if sync_bn:
            module = convert_sync_batchnorm(module)
        param = next(module.parameters())
        ids = [param.device.index] if param.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    return wrap


def prepare(
    task: Any, sync_bn: bool, seed: int | None, outer: Callable[[nn.Module], nn.Module] | None = None
) -> None:
    """Give this process its own random streams (``seed``: see :func:`fresh_seed`, :func:`rank_view`) and
    wrap the task's trained modules (``task.parallelize``): in DDP when several processes train, then in
    ``outer`` (e.g. torch.compile, which goes around DDP) when given."""
    if seed is not None:
        task.reseed(seed)
    ddp = wrapper(sync_bn) if active() else None
    if ddp is not None or outer is not None:
        task.parallelize(lambda m: _chain(m, ddp, outer))


def _chain(m: nn.Module, *wraps: Callable[[nn.Module], nn.Module] | None) -> nn.Module:
    for wrap in wraps:
        if wrap is not None:
            m = wrap(m)
    return m


def shard(n: int, batch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Item indices of process ``rank`` for each global step of an epoch plan of ``n`` items.

    Global step s covers the next ``batch * world`` items of the plan; each process takes its contiguous
    share. The plan is padded (from its start) to a multiple of ``world`` so every process has the same
    number of items in every step, the last one included; with one process this is plain batching."""
    padded = -(-n // world) * world
    out = []
    for start in range(0, padded, batch * world):
        m = min(batch * world, padded - start) // world
        out.append([(start + rank * m + i) % n for i in range(m)])
    return out


def batch_note(batch: int) -> str:
    """How large a step's batch is, for the line a run starts with."""
    n = world_size()
    if n == 1:
        return f"batch {batch}"
    return f"batch {batch} per process x {n} processes = global batch {batch * n}"


# --------------------------------------------------------------------------- agreeing on the run's course


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every process (one small collective; the flag itself alone)."""
    if not active():
        return flag
    t = torch.tensor([0.0 if flag else 1.0], dtype=torch.float64)
    dist.all_reduce(t, group=groups.control)
    return bool(t.item() == 0.0)


def mean_values(values: dict[str, Any]) -> dict[str, float]:
    """Floats or 0-d tensors -> floats averaged over the processes (one small collective)."""
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if active():
        dist.all_reduce(t, group=groups.control)
        t /= world_size()
    return dict(zip(keys, t.tolist()))


class SharedBudget(Budget):
    """The run's budget as rank 0's clock reads it, the same on every process: :func:`agree_stop` updates
    it after each step, so a budget-driven schedule (lr, loss weights) and the stop agree everywhere."""

    def __init__(self, minutes: float | None, already: float = 0.0) -> None:
        super().__init__(minutes, already)
        self.shared = already

    def elapsed(self) -> float:
        return self.shared

    def own_clock(self) -> float:
        return super().elapsed()


def make_budget(minutes: float | None, already: float = 0.0) -> Budget:
    return SharedBudget(minutes, already) if active() else Budget(minutes, already)


def agree_stop(stop: StopFlag, budget: Budget) -> bool:
    """After a step: whether to stop now. Every process takes rank 0's clock and any process's Ctrl-C
    (torchrun hands it to all), so all stop after the same step and save the same checkpoint."""
    if isinstance(budget, SharedBudget):
        t = torch.tensor(
            [float(stop.requested), budget.own_clock() if is_main() else 0.0], dtype=torch.float64
        )
        dist.all_reduce(t, group=groups.control)
        stop.requested, budget.shared = bool(t[0] > 0), float(t[1])
    return stop.requested or budget.expired()


@contextlib.contextmanager
def main_work() -> Iterator[bool]:
    """``with main_work() as main:`` rank 0 does the block's work (``main`` True: records, samples,
    checkpoint files); the others skip it and wait for it at the end (without the short timeout)."""
    yield is_main()
    if active():
        dist.barrier(group=groups.patient)


class QuietLog(MetricsLog):
    """The metrics log of ranks other than 0: records are written by rank 0 only."""

    def write(self, record: dict[str, Any]) -> None:
        pass


def metrics_log(path: Path) -> MetricsLog:
    return MetricsLog(path) if is_main() else QuietLog(path)


# --------------------------------------------------------------------------------- per-process state


def gather_rank_state(extra: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """Each process's own state (its extra tensors and random streams) for the checkpoint rank 0 writes:
    rank 0's under their own names (the checkpoint writer adds its random streams), rank r's under
    ``rank{r}/``; ``meta`` notes how many processes saved. None on the other ranks (they write nothing)."""
    meta.update(world_size=world_size(), torchrun_job=job())
    if not active():
        return extra
    own = {k: v.detach().cpu() for k, v in {**extra, **rng_state_tensors()}.items()}
    parts: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(own, parts, dst=0, group=groups.patient)
    if parts is None:
        return None
    out = dict(extra)
    for r, part in enumerate(parts[1:], 1):
        out.update({f"rank{r}/{k}": v for k, v in part.items()})
    return out


def _own_state(tensors: dict[str, torch.Tensor], r: int) -> dict[str, torch.Tensor]:
    if r == 0:
        return {k: v for k, v in tensors.items() if not (k.startswith(SHARED_PREFIXES) or _ranked(k))}
    prefix = f"rank{r}/"
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _ranked(key: str) -> bool:
    head = key.split("/", 1)[0]
    return head.startswith("rank") and head[4:].isdigit()


def _derived_seed(ckpt: Checkpoint, *salt: int) -> int:
    state = ckpt.tensors.get("rng/torch", torch.zeros(1, dtype=torch.uint8))
    digest = hashlib.sha256(state.numpy().tobytes() + repr(salt).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def fresh_seed() -> int | None:
    """A new run: rank 0 keeps the single-process random streams, rank r > 0 gets its own."""
    if not active() or is_main():
        return None
    return (torch.initial_seed() * 1_000_003 + rank()) % 2**63


def rank_view(
    ckpt: Checkpoint | None, log: Callable[[str], None] = print
) -> tuple[Checkpoint | None, int | None]:
    """The checkpoint as this process restores it, and a seed when its random streams must restart
    (a new run, ``ckpt`` None: :func:`fresh_seed`).

    Shared tensors (weights, optimizer moments) as saved; per-process ones (random streams, a task's
    extras such as image pools) of this rank. Saved by the same number of processes: restored exactly.
    Otherwise every process's random streams are re-seeded from the checkpoint (deterministically, per
    rank), ranks that were not saved start their extras afresh, and a mid-epoch position is carried
    over in samples (rounded down to a whole global step of the new size)."""
    if ckpt is None:
        return None, fresh_seed()
    saved, n, r = int(ckpt.meta.get("world_size", 1)), world_size(), rank()
    own = _own_state(ckpt.tensors, r) if r < saved else {}
    shared = {k: v for k, v in ckpt.tensors.items() if k.startswith(SHARED_PREFIXES)}
    view = Checkpoint({**shared, **own}, dict(ckpt.meta), ckpt.path, ckpt.extra)
    if saved == n:
        return view, None
    m, step = view.meta, int(ckpt.meta.get("step_in_epoch", 0))
    if step:
        new = step * saved // n
        sums = {k: v * new / step for k, v in m.get("epoch_sums", {}).items()}
        m.update(step_in_epoch=new, epoch_sums=sums if new else {})
    rank_zero(log)(
        f"resuming a {saved}-process checkpoint with {n} process(es): random streams re-seeded per rank "
        f"from the checkpoint; per-process state (image pools) kept for ranks below {min(saved, n)}"
        + (f"; mid-epoch step {step} becomes step {m['step_in_epoch']}" if step else "")
    )
    return view, _derived_seed(ckpt, r, n)
