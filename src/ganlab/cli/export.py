"""`ganlab export`: write a run's generator as an ONNX file (SR runs: `ganlab sr export`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's generator to ONNX (any batch, height and width)",
        description="Write one generator of a CycleGAN run as an ONNX file: input 'image' (N, 3, H, W) "
        "in [-1, 1], output the same size; the padding to a multiple of 2^n_down and the crop back are "
        "in the graph, so any size works (sides >= 4 * 2^n_down). The run's config is stored as JSON in "
        "the metadata entry ganlab.config. Run it without PyTorch: ganlab translate --onnx FILE. "
        "Needs the export extra: pip install 'ganlab[export]'.",
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--checkpoint", default="latest", help="'latest' or an epoch number")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="file format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE.onnx")
    add_export_flags(p)
    p.set_defaults(func=run)


def add_export_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared with `ganlab sr export`."""
    from ganlab.core.onnx_export import DEFAULT_OPSET

    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip running the file with onnxruntime against PyTorch on three sizes",
    )


def report(path, diff: float | None) -> None:
    print(f"wrote {path}")
    if diff is not None:
        print(f"onnxruntime vs PyTorch on three sizes (one odd): max abs difference {diff:.2e}")


def run(args: argparse.Namespace) -> int:
    from ganlab.cyclegan.export import export_run

    path, diff = export_run(
        args.run, args.out, args.direction, checkpoint=args.checkpoint, opset=args.opset, check=args.check
    )
    report(path, diff)
    return 0
