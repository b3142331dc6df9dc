"""Images per second of the CycleGAN training step with 1, 2, ... data-parallel processes at one global batch.

    python benchmarks/ddp_scaling.py --config configs/demo/cyclegan.yaml --global-batch 4 --procs 1 2

Each process count runs the step the trainer runs (precision, layout and batch-norm handling as the
trainer chooses them; DDP and, with ``--sync-bn``, synchronous batch norm from ganlab.core.distributed) on
random data, global batch / processes images per process, the machine's cores shared evenly (one process:
all of them). Reported: the median seconds per step of rank 0 after warm-up steps, images/s of the whole
group, and the load average around the measurement (the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import time
from typing import Any

import torch
import torch.multiprocessing as mp
from torch import nn

from ganlab.core import distributed
from ganlab.core.device import autocast, resolve_precision, select_device
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.step import build_models, build_optimizers, fast_settings, train_step


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _config(args: argparse.Namespace, batch: int) -> Any:
    # The loss-weight schedule does not change a step's cost; epochs keeps a budget-scheduled recipe valid.
    train = {"batch_size": batch, "schedule_by": "epochs", "device": args.device}
    return build_cyclegan_config(files=args.config, overrides={"train": train})


def _steps(args: argparse.Namespace, per_process: int, repeats: int) -> list[float]:
    """Seconds of each timed step in this process (after two warm-up steps)."""
    cfg = _config(args, per_process)
    dev = select_device(args.device)
    prec = resolve_precision(cfg.train.precision, dev, lambda s: None)
    fast = fast_settings(cfg, dev)
    torch.manual_seed(cfg.train.seed)
    models = build_models(cfg).to(dev)
    opts = build_optimizers(models, cfg.train)
    wrap = distributed.wrapper(args.sync_bn) if distributed.active() else (lambda m: m)
    nets = nn.ModuleDict({k: wrap(m) for k, m in models.items()})
    pools = {k: ImagePool(cfg.train.pool_size, seed=i) for i, k in enumerate(("D_A", "D_B"))}
    shape = (per_process, 3, cfg.data.size, cfg.data.size)
    a, b = torch.rand(shape, device=dev) * 2 - 1, torch.rand(shape, device=dev) * 2 - 1
    w, t = cfg.train.schedule[0], cfg.train
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        losses = train_step(
            nets, opts, a, b, w, t.gan_loss, pools, lambda: autocast(dev, prec), None, t.cycle_blur,
            fast["batch_g"], fast["batch_d"], huber_beta=t.huber_beta,
        )  # fmt: skip
        float(losses["G_total"])  # wait for the device
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: Any) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    os.environ.update(LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with distributed.session(args.device):  # threads: the cores shared among the processes
        times = _steps(args, args.global_batch // world, args.repeats)
    if rank == 0:
        out.put(times)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args: argparse.Namespace, procs: int, threads: int) -> float:
    """Median seconds per step with ``procs`` processes (one process: ``threads`` threads)."""
    if procs == 1:
        torch.set_num_threads(threads)
        return statistics.median(_steps(args, args.global_batch, args.repeats))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    ps = [ctx.Process(target=_worker, args=(r, procs, port, args, q)) for r in range(procs)]
    for p in ps:
        p.start()
    times = q.get()
    for p in ps:
        p.join()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", action="append", default=[], help="recipe YAML (repeatable)")
    ap.add_argument("--global-batch", type=int, default=4)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--sync-bn", action="store_true", help="synchronous batch norm with several processes")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    cfg = _config(args, args.global_batch)
    print(
        f"CycleGAN step, {cfg.preset} width {cfg.model.hidden}, {cfg.data.size} px, global batch "
        f"{args.global_batch}, {resolve_precision(cfg.train.precision, select_device(args.device))}, {args.repeats} timed steps, {_cores()} cores, "
        f"torch {torch.__version__}"
    )
    print("| processes | threads each | batch each | s/step (median) | images/s | vs 1 process | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    base = None
    # One process with all cores, then with one thread (on a busy machine a thread that waits for a
    # descheduled sibling slows a multi-threaded step far more than a single-threaded one).
    runs = [(n, max(1, _cores() // n)) for n in args.procs]
    runs[1:1] = [(1, 1)] if args.procs[0] == 1 and _cores() > 1 else []
    for n, threads in runs:
        before = os.getloadavg()[0]
        seconds = measure(args, n, threads)
        ips = args.global_batch / seconds
        base = base or ips
        load = f"{before:.1f} -> {os.getloadavg()[0]:.1f}"
        row = [n, threads, args.global_batch // n, f"{seconds:.3f}", f"{ips:.2f}", f"{ips / base:.2f}x", load]
        print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
