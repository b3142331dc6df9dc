"""`ganlab sr`: SRResNet/SRGAN super-resolution: train, eval, upscale."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ganlab.cli.flags import add_config_flags


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
    t.add_argument(
        "--data", metavar="DIR", help="folder of HR images (default: built-in offline photos, train split)"
    )
    t.add_argument("--data-lr", metavar="DIR", help="folder of paired LR images, matched by file name")
    t.add_argument("--preset", help="srresnet (the paper's) or srresnet-small (CPU-sized, the default)")
    t.add_argument("--scale", type=int, choices=[2, 3, 4, 8], help="upscaling factor (model.scale)")
    t.add_argument("--stage", choices=["pixel", "gan"], help="pixel: SRResNet; gan: SRGAN fine-tuning")
    t.add_argument("--epochs", type=int, help="epochs of train.steps_per_epoch steps")
    t.add_argument("--minutes", type=float, help="wall-clock budget; stops cleanly with a checkpoint")
    t.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/sr-<preset>-x<scale>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run exactly")
    t.add_argument("--init", metavar="RUN_DIR", help="start the generator from this run (e.g. a pixel run)")
    t.add_argument(
        "--vgg-weights", metavar="FILE", help="local torchvision-layout vgg19 weights: perceptual loss"
    )
    t.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    t.add_argument("--seed", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--size", type=int, metavar="HR_CROP", help="HR crop side, a multiple of the scale")
    t.add_argument("--precision", choices=["fp32", "bf16"])
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(t)
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
    u.add_argument("--quiet", action="store_true")
    u.set_defaults(func=run_upscale)


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "data.root": args.data,
        "data.lr_root": args.data_lr,
        "data.size": args.size,
        "model.scale": args.scale,
        "train.stage": args.stage,
        "train.epochs": args.epochs,
        "train.minutes": args.minutes,
        "train.vgg_weights": args.vgg_weights,
        "train.device": args.device,
        "train.seed": args.seed,
        "train.batch_size": args.batch_size,
        "train.precision": args.precision,
    }
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        if value is not None:
            section, name = key.split(".")
            out.setdefault(section, {})[name] = value
    if args.minutes is not None and args.epochs is None and not args.resume:
        out["train"]["epochs"] = None  # --minutes alone: train until the budget is spent
    return out


def run_train(args: argparse.Namespace) -> int:
    from ganlab.core.config import merge, parse_set
    from ganlab.core.errors import UserError
    from ganlab.sr.trainer import train_sr

    if args.resume and args.init:
        raise UserError("--resume continues a run; --init starts a new one: use one of them")
    if args.resume and args.out and args.out != args.resume:
        raise UserError("--resume continues in its own directory; drop --out")
    overrides = merge(parse_set(args.overrides), flag_overrides(args))
    _check_device(args.device)
    res = train_sr(
        preset=args.preset,
        config_files=args.config,
        overrides=overrides,
        out=args.out,
        resume=args.resume,
        init=args.init,
        progress=not args.quiet,
    )
    print(
        f"{res.stopped}: {res.epoch} epoch(s), {res.global_step} steps in {res.minutes:.1f} min; run {res.run_dir}"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ganlab.sr.evaluate import evaluate_run, format_table

    _check_device(args.device)
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
    from ganlab.core.errors import UserError
    from ganlab.sr.upscale import upscale_files

    if args.tile < 0 or (args.tile_pad is not None and args.tile_pad < 0):
        raise UserError("--tile and --tile-pad must be >= 0")
    _check_device(args.device)
    written = upscale_files(
        args.run,
        args.inputs,
        args.out,
        tile=args.tile,
        pad=args.tile_pad,
        checkpoint=args.checkpoint,
        device=args.device,
        progress=not args.quiet,
    )
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0


def _check_device(name: str | None) -> None:
    from ganlab.core.errors import UserError
    from ganlab.core.rundir import select_device

    if name:
        try:
            select_device(name)
        except (ValueError, RuntimeError) as e:
            raise UserError(str(e)) from None
