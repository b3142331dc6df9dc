"""Data-parallel training over several processes, on one machine or many, launched by ``torchrun``
(``torch.distributed.run``), which gives each process RANK, LOCAL_RANK, WORLD_SIZE and MASTER_ADDR/PORT.

Knows no task. The shared loop (``ganlab.core.loop``) calls it at a few points, the way torchtitan's
parallelize step wraps a model from the outside, so model files and training steps stay plain PyTorch:

- :func:`session` brings the process group up (gloo on CPUs, nccl on CUDA with one GPU per local rank)
  with a timeout, and takes it down on every way out, turning a lost peer into one clear error;
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
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganlab.core.budget import Budget, StopFlag
from ganlab.core.checkpoint import Checkpoint, rng_state_tensors
from ganlab.core.device import select_device
from ganlab.core.errors import DeviceError, DistributedError, UserError
from ganlab.core.rundir import MetricsLog, run_meta
from ganlab.core.sync_bn import convert_sync_batchnorm

TIMEOUT_ENV = "GANLAB_DIST_TIMEOUT"  # seconds a collective waits for a silent peer (default 60)
DEFAULT_TIMEOUT_S = 60.0
# Waits on rank 0's own work (per-epoch evaluation, sample grids, checkpoint writes) may take far longer
# than a training step; they use a separate group with this timeout. A peer that dies is seen at once
# there too (its connections close); only a peer that hangs waits this long.
PATIENT_TIMEOUT_S = 3600.0
FRESH_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"  # torchrun agents: a new store per rendezvous
SHARED_PREFIXES = ("model/", "optim/")  # checkpoint tensors every process holds alike


class _Groups:
    control: Any = None  # gloo group for the small CPU collectives (the default group under gloo)
    patient: Any = None  # gloo group with PATIENT_TIMEOUT_S, for waits on rank 0


_groups = _Groups()


# ------------------------------------------------------------------------------------------ the setup


def launched() -> bool:
    """Whether torchrun (or a launcher like it) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is up (inside :func:`session`)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def restart_count() -> int:
    """How often this process's torchrun agent restarted its processes after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def _job() -> str | None:
    """The torchrun job (its rendezvous id; "none" when not given) this process belongs to."""
    return os.environ.get("TORCHELASTIC_RUN_ID") if launched() else None


def restarted(run_dir: Path) -> bool:
    """Whether torchrun restarted the processes of the job that wrote ``run_dir``'s latest checkpoint
    (after a failure with ``--max-restarts``, or when a machine joined or left): then they go on from it.
    The job's rendezvous id tells; without one ("none"), this machine's restart count does."""
    job = _job()
    if job is None:
        return False
    if job == "none":
        return restart_count() > 0
    return run_meta(run_dir).get("torchrun_job") == job


def rank_zero(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on rank 0; the other ranks stay quiet."""
    return log if is_main() else (lambda line: None)


def timeout_s() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV} must be a number of seconds") from None


def _backend(device: str) -> str:
    """gloo on CPUs; nccl on CUDA, each process on the GPU of its local rank."""
    dev = select_device(device)
    if dev.type == "cpu":
        return "gloo"
    if dev.type != "cuda":
        raise DeviceError(f"data-parallel training runs on CPUs or CUDA GPUs, not on {dev.type}")
    if dev.index is not None:
        raise DeviceError(
            f"--device {device}: with several processes each one uses the GPU of its local rank; "
            "use --device auto or cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)"
        )
    local, n = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= n:
        raise DeviceError(f"local rank {local} has no GPU: {n} visible; start at most {n} per machine")
    torch.cuda.set_device(local)
    return "nccl"


def _lost_peer(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, dist.DistError) or any(s in text for s in ("gloo", "NCCL", "Connection reset"))


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[None]:
    """The process group of a torchrun launch for the duration of the block (nothing without torchrun).

    Collectives wait at most ``GANLAB_DIST_TIMEOUT`` seconds for a peer; a peer that died or went silent
    becomes a :class:`DistributedError` naming this rank. The group is destroyed on every way out."""
    if not launched() or active():
        yield
        return
    backend = _backend(device)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    me, limit = rank(), timeout_s()
    try:
        store = _store(limit)
        dist.init_process_group(
            backend,
            store=store,
            rank=me,
            world_size=int(os.environ["WORLD_SIZE"]),
            timeout=timedelta(seconds=limit),
        )
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(f"rank {me}: cannot join the other processes at {where}: {first}") from None
    old = _on_sigterm()
    try:
        cpu = backend == "gloo"
        _groups.control = dist.group.WORLD if cpu else dist.new_group(backend="gloo")
        _groups.patient = dist.new_group(backend="gloo", timeout=timedelta(seconds=PATIENT_TIMEOUT_S))
        if cpu:  # share the cores: one process per core on this 2-core machine (train.threads overrides)
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
        yield
    except RuntimeError as e:
        if not _lost_peer(e):
            raise
        raise DistributedError(
            f"rank {me}: lost contact with the other processes (one died, or gave no answer within "
            f"{limit:.0f} s); resume from the run's latest checkpoint ({_first_line(e)})"
        ) from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        _groups.control = _groups.patient = None
        dist.destroy_process_group()


def _store(limit: float) -> dist.Store:
    """The key-value store the processes meet at: the one torchrun's agent serves at MASTER_ADDR:PORT, or
    one rank 0 serves there (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for the agents, or a manual launch).

    torchrun keeps its agent's store across restarts: each attempt's keys get a prefix of their own, or
    a restarted group would read the addresses of the processes it lost. The prefix is the restart count,
    which one agent keeps alike for all its processes; agents on several machines can count a restart
    differently, hence a fresh store per attempt there (docs/distributed.md)."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    world, timeout = int(os.environ["WORLD_SIZE"]), timedelta(seconds=limit)
    store = dist.TCPStore(addr, port, world, is_master=not agent and rank() == 0, timeout=timeout)
    return dist.PrefixStore(f"ganlab/attempt{restart_count()}/", store) if agent else store


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _on_sigterm() -> Any:
    """torchrun stops the surviving processes with SIGTERM when one fails: say so instead of vanishing."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise DistributedError(
            f"rank {rank()}: stopped by the launcher (SIGTERM): another process failed or the job was stopped"
        )

    return signal.signal(signal.SIGTERM, stop)


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


def prepare(task: Any, sync_bn: bool, seed: int | None) -> None:
    """Give this process its own random streams (``seed``: see :func:`fresh_seed`, :func:`rank_view`) and
    wrap the task's trained modules (``task.parallelize``) when several processes train."""
    if seed is not None:
        task.reseed(seed)
    if active():
        task.parallelize(wrapper(sync_bn))


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


def mean_values(values: dict[str, Any]) -> dict[str, float]:
    """Floats or 0-d tensors -> floats averaged over the processes (one small collective)."""
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if active():
        dist.all_reduce(t, group=_groups.control)
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
        dist.all_reduce(t, group=_groups.control)
        stop.requested, budget.shared = bool(t[0] > 0), float(t[1])
    return stop.requested or budget.expired()


@contextlib.contextmanager
def main_work() -> Iterator[bool]:
    """``with main_work() as main:`` rank 0 does the block's work (``main`` True: records, samples,
    checkpoint files); the others skip it and wait for it at the end (without the short timeout)."""
    yield is_main()
    if active():
        dist.barrier(group=_groups.patient)


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
    meta.update(world_size=world_size(), torchrun_job=_job())
    if not active():
        return extra
    own = {k: v.detach().cpu() for k, v in {**extra, **rng_state_tensors()}.items()}
    parts: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(own, parts, dst=0, group=_groups.patient)
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


# ---------------------------------------------------------------------------------------- launching


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m ganlab ARGV`` as ``nproc`` processes on this machine through torchrun
    (``torchrun --standalone --nproc_per_node NPROC -m ganlab ARGV``: one node, a free port)."""
    if launched():
        raise UserError("--nproc starts torchrun itself: leave it out when running under torchrun")
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "ganlab", *argv])
    os.environ.setdefault(FRESH_STORE_ENV, "1")  # a fresh store for each attempt (see _store)
    try:
        torchrun.run(args)
    except ChildFailedError as e:
        failed = ", ".join(f"rank {r} (exit code {f.exitcode})" for r, f in sorted(e.failures.items()))
        raise DistributedError(f"{len(e.failures)} of {nproc} processes failed: {failed}") from None
    except SignalException as e:
        print(f"interrupted ({e.sigval.name})")
        return 130
    return 0
