"""`ganlab train`: train a CycleGAN on two folders of pictures."""

from __future__ import annotations

import argparse
from typing import Any

from ganlab.cli.flags import add_config_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CycleGAN on two folders of images",
        description="Train a CycleGAN. Config: defaults < preset < --config FILE < --set/flags.",
    )
    p.add_argument("--data", help="data root with trainA/ and trainB/ (optional testA/, testB/, testB_gt/)")
    p.add_argument("--data-a", help="folder of domain A images (instead of --data)")
    p.add_argument("--data-b", help="folder of domain B images (instead of --data)")
    p.add_argument("--preset", help="architecture preset (model1, model2, resnet9, resnet6)")
    add_config_flags(p)
    p.add_argument("--epochs", type=int, help="epochs at constant learning rate (train.epochs)")
    p.add_argument("--epochs-decay", type=int, help="then linear lr decay over this many epochs")
    p.add_argument("--minutes", type=float, help="wall-clock budget; stops cleanly with a checkpoint")
    p.add_argument("--size", type=int, help="random crop size (data.size)")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--out", help="run directory (default: runs/<preset>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly; --set may change the recipe")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["fp32", "bf16"])
    p.add_argument(
        "--tensorboard", action="store_true", help="also log to RUN_DIR/tb (needs the tensorboard extra)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a nested override dict (they sit on top of --set)."""
    pairs = {
        "data.root": args.data,
        "data.a": args.data_a,
        "data.b": args.data_b,
        "train.epochs": args.epochs,
        "train.epochs_decay": args.epochs_decay,
        "train.minutes": args.minutes,
        "data.size": args.size,
        "train.batch_size": args.batch_size,
        "train.device": args.device,
        "train.seed": args.seed,
        "train.precision": args.precision,
        "train.tensorboard": True if args.tensorboard else None,
    }
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if value is None:
            continue
        section, name = key.split(".")
        out.setdefault(section, {})[name] = value
    if args.data_a or args.data_b:
        out.setdefault("data", {})["root"] = args.data
    return out


def run(args: argparse.Namespace) -> int:
    from ganlab.core.config import merge, parse_set
    from ganlab.cyclegan.api import train

    overrides = merge(parse_set(args.overrides), flag_overrides(args))
    result = train(
        preset=args.preset,
        config_files=args.config,
        overrides=overrides,
        out=args.out,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(
        f"{result.stopped}: {result.epoch} epoch(s), {result.global_step} steps; run directory {result.run_dir}"
    )
    return 0
