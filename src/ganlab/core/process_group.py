"""The process group of a data-parallel run: who this process is (RANK, WORLD_SIZE... as torchrun sets
them), the group's setup with a timeout and its teardown on every way out (:func:`session`), and whether
torchrun restarted the job. ``ganlab.core.distributed`` builds the training's machinery on it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ganlab.core.device import select_device
from ganlab.core.errors import DeviceError, DistributedError, UserError
from ganlab.core.rundir import run_meta

TIMEOUT_ENV = "GANLAB_DIST_TIMEOUT"  # seconds a collective waits for a silent peer (default 60)
DEFAULT_TIMEOUT_S = 60.0
# Waits on rank 0's own work (per-epoch evaluation, sample grids, checkpoint writes) may take far longer
# than a training step; they use a separate group with this timeout. A peer that dies is seen at once
# there too (its connections close); only a peer that hangs waits this long.
PATIENT_TIMEOUT_S = 3600.0
FRESH_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"  # torchrun agents: a new store per rendezvous


class Groups:
    control: Any = None  # gloo group for the small CPU collectives (the default group under gloo)
    patient: Any = None  # gloo group with PATIENT_TIMEOUT_S, for waits on rank 0


groups = Groups()


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


def job() -> str | None:
    """The torchrun job (its rendezvous id; "none" when not given) this process belongs to."""
    return os.environ.get("TORCHELASTIC_RUN_ID") if launched() else None


def restarted(run_dir: Path) -> bool:
    """Whether torchrun restarted the processes of the job that wrote ``run_dir``'s latest checkpoint
    (after a failure with ``--max-restarts``, or when a machine joined or left): then they go on from it.
    The job's rendezvous id tells; without one ("none"), this machine's restart count does."""
    this = job()
    if this is None:
        return False
    if this == "none":
        return restart_count() > 0
    return run_meta(run_dir).get("torchrun_job") == this


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
        groups.control = dist.group.WORLD if cpu else dist.new_group(backend="gloo")
        groups.patient = dist.new_group(backend="gloo", timeout=timedelta(seconds=PATIENT_TIMEOUT_S))
        if cpu:  # the machine's cores shared among its processes (train.threads overrides)
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(max(1, _cores() // per_node))
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
        groups.control = groups.patient = None
        dist.destroy_process_group()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
