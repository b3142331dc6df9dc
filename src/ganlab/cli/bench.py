"""`ganlab bench`: the speed of a training step or of inference on this machine."""

from __future__ import annotations

import argparse
import json

from ganlab.cli.flags import add_config_flags, add_precision
from ganlab.core.config import parse_set
from ganlab.experiments.bench import format_bench, run_bench


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time a training step or inference: s/step, images/s, GFLOP/s, share of the conv peak",
        description=(
            "Benchmark the step the trainer runs (precision, memory layout and pass batching as it would "
            "choose them here) on random data; --baseline times the plain fp32 path interleaved with it."
        ),
    )
    p.add_argument("--task", choices=["cyclegan", "sr"], default="cyclegan")
    p.add_argument("--preset", help="architecture preset (default: the config's)")
    p.add_argument("--size", type=int, help="crop size in px (SR: the HR side)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--mode", choices=["train", "infer"], default="train")
    add_config_flags(p)
    add_precision(p, default=None)  # None: the config's (auto)
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: as the trainer"
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the networks (first step reports it)"
    )
    p.add_argument("--baseline", action="store_true", help="also time the plain path and print the speedup")
    p.add_argument("--repeats", type=int, default=5, help="timed steps (median reported)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--ops",
        type=int,
        default=0,
        metavar="N",
        help="also list the step's N slowest aten ops (each timed alone, as torch.profiler does not)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = run_bench(
        task=args.task,
        preset=args.preset,
        size=args.size,
        batch_size=args.batch_size,
        mode=args.mode,
        config_files=args.config,
        overrides=parse_set(args.overrides),
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        baseline=args.baseline,
        repeats=args.repeats,
        device=args.device,
        ops=args.ops,
    )
    print(json.dumps(res, indent=2) if args.json else format_bench(res))
    return 0
