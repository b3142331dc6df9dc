"""`ganlab train`: train a CycleGAN on two folders of pictures."""

from __future__ import annotations

import argparse

from ganlab.cli.flags import add_config_flags, add_nproc, add_options, overrides_from, relaunch
from ganlab.core import distributed
from ganlab.cyclegan.config import OPTIONS
from ganlab.cyclegan.trainer import train
from ganlab.models.registry import preset_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CycleGAN on two folders of images",
        description="Train a CycleGAN. Config: defaults < preset < --config FILE < --set < flags.",
    )
    p.add_argument("--preset", help=f"architecture preset ({', '.join(preset_names('cyclegan'))})")
    add_config_flags(p)
    add_options(p, OPTIONS)
    p.add_argument("--out", help="run directory (default: runs/<preset>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly; --set may change the recipe")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_nproc(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rc = relaunch(args)
    if rc is not None:
        return rc
    overrides = overrides_from(args, OPTIONS)
    if args.data_a or args.data_b:  # explicit folders replace a data root set in a config file
        overrides.setdefault("data", {})["root"] = args.data
    result = train(
        preset=args.preset,
        config_files=args.config,
        overrides=overrides,
        out=args.out,
        resume=args.resume,
        progress=not args.quiet,
    )
    if distributed.is_main():
        print(result.summary())
    return 0
