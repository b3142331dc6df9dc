"""`ganlab translate`: apply a trained or published generator to files or folders."""

from __future__ import annotations

import argparse
import sys

from ganlab.cli.flags import add_precision
from ganlab.core.errors import UserError

# The library is imported inside run(): `translate --onnx` then needs neither PyTorch nor training code.

TILE_STATS_HELP = (
    "where a tiled run gets its instance-norm statistics. exact (default): the whole picture's, as an "
    "untiled run (same output within 1e-4 in fp32); one pass over the picture per norm layer, each "
    "computing about one layer: about one forward pass in all, plus scratch files of the deep "
    "activations in $TMPDIR (resnet9 on 7680x4320: 1.3x the time of untiled pieces, 2.3 GB peak RSS, "
    "3.2 GB of scratch files). approx: those of a copy downscaled to 0.5 MP; one pass with the receptive field "
    "as context rows, no scratch; no seams, tone slightly off. tile: each tile's own (the old "
    "behaviour): cheapest, but seams and tone jumps between tiles. See docs/export-and-tiles.md"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate",
        help="translate images with a run, reference weights or a pretrained model (any size)",
        description="Translate images. The model is one of --run, --weights, --pretrained or --onnx.",
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
    src.add_argument(
        "--onnx",
        metavar="FILE.onnx",
        help="a file from `ganlab export`, run by onnxruntime (no PyTorch needed; whole images, the "
        "file's own direction)",
    )
    p.add_argument("--checkpoint", default="latest", help="'latest' or an epoch number (with --run)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--format", choices=["png", "jpg", "webp"], default="png", help="output format (default png)"
    )
    p.add_argument(
        "--tile",
        type=int,
        help="bound the memory on large pictures: work in pieces of about TILE x TILE pixels "
        "(full-width bands in the exact and approx modes)",
    )
    p.add_argument("--tile-stats", choices=["exact", "approx", "tile"], default="exact", help=TILE_STATS_HELP)
    p.add_argument("--tile-pad", type=int, default=32, help="context margin of each tile (--tile-stats tile)")
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
    if args.onnx:
        return run_onnx(args)
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
        tile_stats=args.tile_stats,
    )
    text, code = result.report(args.out)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def run_onnx(args: argparse.Namespace) -> int:
    if args.tile:
        raise UserError("--tile is not available with --onnx (it translates whole images)")
    if args.checkpoint != "latest":
        raise UserError("--checkpoint applies to --run only")
    from ganlab.core.onnx_run import run_onnx_paths

    written = run_onnx_paths(args.onnx, args.inputs, args.out, ext="." + args.format)
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0
