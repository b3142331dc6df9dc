"""`ganlab eval`: cycle, ground-truth, artifact and tint metrics of a run, beside baselines."""

from __future__ import annotations

import argparse
import json

from ganlab.cyclegan.evaluate import evaluate_run, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="score a run on its test images (cycle/gt PSNR, SSIM, baselines, artifacts)"
    )
    p.add_argument("--run", required=True)
    p.add_argument("--data", help="data root with testA/ (testB/, testB_gt/); default: the run's own")
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("--limit", type=int, help="at most this many test images per domain")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--raw",
        action="store_true",
        help="score the raw generators instead of their moving average (runs with train.ema_decay); "
        "writes eval_raw.json",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = evaluate_run(
        args.run,
        args.data,
        args.checkpoint,
        args.device,
        args.limit,
        progress=not args.json,
        use_ema=not args.raw,
    )
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(format_table(res))
        print(f"(written to {args.run}/{'eval_raw.json' if args.raw else 'eval.json'})")
    return 0
