"""`ganlab translate`: apply a trained or published generator to files or folders."""

from __future__ import annotations

import argparse
import sys

from ganlab.cli.flags import add_precision
from ganlab.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate images with a run, reference weights or a pretrained model (any size)",
        description="Translate images. The model is one of --run, --weights or --pretrained.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory")
    src.add_argument(
        "--weights",
        metavar="FILE.pth",
        help="a generator saved by pytorch-CycleGAN-and-pix2pix (a2b), or its checkpoints folder",
    )
    src.add_argument(
        "--pretrained", metavar="NAME", help="a published reference generator (see `ganlab pretrained list`)"
    )
    p.add_argument("--checkpoint", default="latest", help="'latest' or an epoch number (with --run)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--format", choices=["png", "jpg", "webp"], default="png", help="output format (default png)"
    )
    p.add_argument("--tile", type=int, help="process in overlapping tiles of this size (bounded memory)")
    p.add_argument("--tile-pad", type=int, default=32, help="overlap margin of each tile")
    p.add_argument("--device", default="auto")
    p.add_argument("--base-url", help="mirror for --pretrained downloads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_precision(p)
    p.set_defaults(func=run)


def model_source(args: argparse.Namespace) -> str:
    """What ``ganlab.load`` is given: the run, the weights file or ``pretrained:NAME``."""
    if args.checkpoint != "latest" and not args.run:
        raise UserError("--checkpoint applies to --run only")
    if args.pretrained:
        return f"pretrained:{args.pretrained}"
    return args.run or args.weights


def run(args: argparse.Namespace) -> int:
    from ganlab.api import load  # the Python API is the one code path (and imports torch only here)

    model = load(
        model_source(args),
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
        base_url=args.base_url,
        progress=not args.quiet,
    )
    result = model.translate_paths(
        args.inputs,
        args.out,
        direction=args.direction,
        tile=args.tile,
        tile_pad=args.tile_pad,
        ext="." + args.format,
        progress=not args.quiet,
        warn=lambda line: print(line, file=sys.stderr),
    )
    text, code = result.report(args.out)
    print(text, file=sys.stderr if code else sys.stdout)
    return code
