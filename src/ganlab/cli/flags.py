"""Flag helpers shared by subcommands: config files, ``--set``, and a task's option table."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ganlab.core.config import Option, load_yaml, merge, option_overrides, parse_set
from ganlab.core.errors import DistributedError, UserError


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config file (repeatable; later files win)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.lr=1e-4 (repeatable; wins over files)",
    )


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def add_precision(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """``--precision`` for inference commands (training takes it from its option table)."""
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default,
        help="auto: bf16 where the hardware has it, fp16 on a GPU without bf16, else fp32",
    )


def add_nproc(p: argparse.ArgumentParser) -> None:
    """``--nproc N``: the command again as N data-parallel processes on this machine, through torchrun."""
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (torchrun --standalone --nproc-per-node N -m ganlab "
        "...): gradients averaged, --batch-size per process; for several machines run torchrun itself",
    )


def relaunch(args: argparse.Namespace) -> int | None:
    """Run the command as ``args.nproc`` processes through torchrun (its exit code), or None when
    ``--nproc`` is not given (or is 1): then the caller trains in this process."""
    if not args.nproc or args.nproc == 1:
        return None
    argv, out, skip = list(args.argv), [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return launch(args.nproc, out)


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m ganlab ARGV`` as ``nproc`` processes on this machine through torchrun
    (``torchrun --standalone --nproc_per_node NPROC -m ganlab ARGV``: one node, a free port)."""
    from ganlab.core import process_group  # here: `translate --onnx` must not import torch

    if process_group.launched():
        raise UserError("--nproc starts torchrun itself: leave it out when running under torchrun")
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "ganlab", *argv])
    os.environ.setdefault(
        process_group.FRESH_STORE_ENV, "1"
    )  # a fresh store per attempt (process_group._store)
    try:
        torchrun.run(args)
    except ChildFailedError as e:
        failed = ", ".join(f"rank {r} (exit code {f.exitcode})" for r, f in sorted(e.failures.items()))
        raise DistributedError(f"{len(e.failures)} of {nproc} processes failed: {failed}") from None
    except SignalException as e:
        print(f"interrupted ({e.sigval.name})")
        return 130
    return 0


def add_options(p: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """One flag per option of a task's table (``ganlab.cyclegan.config.OPTIONS``...)."""
    for o in options:
        help_text = f"{o.help} ({o.key})"
        if o.flag_value is not None:
            p.add_argument(o.flag, dest=o.name, action="store_const", const=o.flag_value, help=help_text)
        else:
            metavar = None if o.choices else o.name.upper()
            p.add_argument(
                o.flag, dest=o.name, type=o.type, choices=o.choices, metavar=metavar, help=help_text
            )


def overrides_from(args: argparse.Namespace, options: tuple[Option, ...]) -> dict[str, Any]:
    """``--set`` values, then the task's flags on top (flags win)."""
    return merge(parse_set(args.overrides), option_overrides(vars(args), options))


def config_layers(args: argparse.Namespace) -> dict[str, Any]:
    """``--config`` files then ``--set``, merged into one override dict (for commands that layer them on
    a recipe of their own, like ``ganlab demo``)."""
    out: dict[str, Any] = {}
    for f in args.config:
        out = merge(out, load_yaml(f))
    return merge(out, parse_set(args.overrides))
