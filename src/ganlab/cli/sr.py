"""`ganlab sr`: SRResNet/SRGAN super-resolution: train, eval, upscale."""

from __future__ import annotations

import argparse
import json
import sys

from ganlab.cli.export import add_export_flags, report
from ganlab.cli.flags import add_config_flags, add_nproc, add_options, add_precision, overrides_from, relaunch
from ganlab.core import distributed
from ganlab.core.device import select_device
from ganlab.core.errors import UserError
from ganlab.models.registry import preset_names
from ganlab.sr.config import OPTIONS
from ganlab.sr.evaluate import evaluate_run, format_table
from ganlab.sr.trainer import train_sr
from ganlab.sr.upscale import upscale_files


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sr",
        help="super-resolution (SRResNet / SRGAN): train, eval, upscale",
        description="Single-image super-resolution after Ledig et al. 2017 (SRResNet, SRGAN).",
    )
    ssub = p.add_subparsers(dest="sr_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    t = ssub.add_parser(
        "train",
        help="train SRResNet (stage pixel) or fine-tune SRGAN (stage gan)",
        description="Config: defaults < preset < --config FILE < --set < flags.",
    )
    t.add_argument("--preset", help=f"SR preset ({', '.join(preset_names('sr'))}; default srresnet-small)")
    add_config_flags(t)
    add_options(t, OPTIONS)
    t.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/sr-<preset>-x<scale>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly")
    t.add_argument("--init", metavar="RUN_DIR", help="start the generator from this run (e.g. a pixel run)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_nproc(t)
    t.set_defaults(func=run_train)

    e = ssub.add_parser("eval", help="Y-PSNR/SSIM of a run vs bicubic on held-out images")
    e.add_argument("--run", required=True, metavar="RUN_DIR")
    e.add_argument("--data", metavar="DIR", help="HR test images (default: built-in held-out test photos)")
    e.add_argument("--checkpoint", default="latest", help="latest or an epoch number")
    e.add_argument("--max-side", type=int, default=512, help="HR centre-crop bound per side (default 512)")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print the JSON result instead of a table")
    e.set_defaults(func=run_eval)

    u = ssub.add_parser("upscale", help="super-resolve image files or folders")
    u.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    u.add_argument("--run", required=True, metavar="RUN_DIR")
    u.add_argument("--out", required=True, metavar="DIR")
    u.add_argument("--tile", type=int, default=256, help="LR tile side (0: whole image at once)")
    u.add_argument(
        "--tile-pad",
        type=int,
        default=None,
        help="LR context pixels around each tile (default: the model's receptive-field radius: exact)",
    )
    u.add_argument("--checkpoint", default="latest", help="latest or an epoch number")
    u.add_argument("--device", default="auto")
    add_precision(u)
    u.add_argument("--quiet", action="store_true")
    u.set_defaults(func=run_upscale)

    x = ssub.add_parser(
        "export",
        help="export an SR run's generator to ONNX (any batch, height and width)",
        description="Input 'image' (N, 3, h, w) in [0, 1] (sides >= 5), output (N, 3, scale*h, scale*w); "
        "the run's config is stored as JSON in the metadata entry ganlab.config. "
        "Needs the export extra: pip install 'ganlab[export]'.",
    )
    x.add_argument("--run", required=True, metavar="RUN_DIR")
    x.add_argument("--checkpoint", default="latest", help="latest or an epoch number")
    x.add_argument("--out", required=True, metavar="FILE.onnx")
    add_export_flags(x)
    x.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    rc = relaunch(args)
    if rc is not None:
        return rc
    if args.resume and args.init:
        raise UserError("--resume continues a run; --init starts a new one: use one of them")
    if args.resume and args.out and args.out != args.resume:
        raise UserError("--resume continues in its own directory; drop --out")
    overrides = overrides_from(args, OPTIONS)
    if args.minutes is not None and args.epochs is None and not args.resume:
        overrides["train"]["epochs"] = None  # --minutes alone: train until the budget is spent
    if args.device:
        select_device(args.device)
    res = train_sr(
        preset=args.preset,
        config_files=args.config,
        overrides=overrides,
        out=args.out,
        resume=args.resume,
        init=args.init,
        progress=not args.quiet,
    )
    if distributed.is_main():
        print(res.summary())
    return 0


def run_eval(args: argparse.Namespace) -> int:
    if args.device:
        select_device(args.device)
    res = evaluate_run(
        args.run, data=args.data, checkpoint=args.checkpoint, max_side=args.max_side, device=args.device
    )
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"{res['preset']} x{res['scale']}, {res['checkpoint']} (epoch {res['epoch']}, step {res['global_step']}), "
            f"{res['data']}, HR crops <= {res['max_side']}px, Y channel, {res['scale']}px border cropped"
        )
        print(format_table(res))
        print(f"written to {args.run}/sr_eval.json")
    return 0


def run_upscale(args: argparse.Namespace) -> int:
    if args.tile < 0 or (args.tile_pad is not None and args.tile_pad < 0):
        raise UserError("--tile and --tile-pad must be >= 0")
    if args.device:
        select_device(args.device)
    result = upscale_files(
        args.run,
        args.inputs,
        args.out,
        tile=args.tile,
        pad=args.tile_pad,
        checkpoint=args.checkpoint,
        device=args.device,
        progress=not args.quiet,
        precision=args.precision,
    )
    text, code = result.report(args.out)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def run_export(args: argparse.Namespace) -> int:
    from ganlab.sr.export import export_sr_run

    path, diff = export_sr_run(
        args.run, args.out, checkpoint=args.checkpoint, opset=args.opset, check=args.check
    )
    report(path, diff)
    return 0
