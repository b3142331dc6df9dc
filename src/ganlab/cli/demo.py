"""`ganlab demo`: the main job on built-in data, no setup: train, evaluate, report."""

from __future__ import annotations

import argparse

from ganlab.cli.flags import add_config_flags
from ganlab.core.config import load_yaml, merge, parse_set
from ganlab.cyclegan.demo.report import verdict
from ganlab.cyclegan.demo.run import run_demo
from ganlab.cyclegan.evaluate import format_table
from ganlab.sr.demo import run_sr_demo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train on built-in offline data for a time budget and write a report")
    p.add_argument("--task", choices=["cyclegan", "sr"], default="cyclegan")
    p.add_argument("--minutes", type=float, default=10.0, help="total budget (default 10)")
    p.add_argument("--data", default=None, help="demo data folder (built if missing; default data/demo)")
    p.add_argument("--out", default=None, help="run directory (default runs/demo or runs/demo-sr)")
    add_config_flags(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The demo's recipe (configs/demo/TASK.yaml) is the bottom layer; --config files and --set go on top.
    overrides: dict = {}
    for f in args.config:
        overrides = merge(overrides, load_yaml(f))
    overrides = merge(overrides, parse_set(args.overrides))
    if args.task == "sr":
        res = run_sr_demo(
            out=args.out or "runs/demo-sr", minutes=args.minutes, progress=not args.quiet, overrides=overrides
        )
        print(f"report: {res.get('report')}")
        return 0
    res = run_demo(
        data=args.data or "data/demo",
        out=args.out or "runs/demo",
        minutes=args.minutes,
        overrides=overrides,
        progress=not args.quiet,
    )
    print(format_table(res))
    print(verdict(res))  # the sentence the report leads with: a gain counts when its interval excludes zero
    print(f"report: {res['report']}")
    return 0
