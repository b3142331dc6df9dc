"""`ganlab translate`: apply a trained generator to files or folders."""

from __future__ import annotations

import argparse
import sys

from ganlab.cli.flags import add_precision
from ganlab.core.device import select_device
from ganlab.cyclegan.translate import translate_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="translate images with a trained run (any size)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--checkpoint", default="latest", help="'latest' or an epoch number")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--format", choices=["png", "jpg", "webp"], default="png", help="output format (default png)"
    )
    p.add_argument("--tile", type=int, help="process in overlapping tiles of this size (bounded memory)")
    p.add_argument("--tile-pad", type=int, default=32, help="overlap margin of each tile")
    p.add_argument("--device", default="auto")
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = translate_paths(
        args.run,
        args.inputs,
        args.out,
        direction=args.direction,
        checkpoint=args.checkpoint,
        device=select_device(args.device),
        tile=args.tile,
        tile_pad=args.tile_pad,
        ext="." + args.format,
        precision=args.precision,
        warn=lambda line: print(line, file=sys.stderr),
    )
    text, code = result.report(args.out)
    print(text, file=sys.stderr if code else sys.stdout)
    return code
