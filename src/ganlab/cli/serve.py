"""`ganlab serve`: trained models behind an HTTP API and a web page."""

from __future__ import annotations

import argparse

from ganlab.cli.flags import add_precision
from ganlab.serve.limits import Limits, parse_size
from ganlab.serve.run import serve

_D = Limits()


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve trained models over HTTP: JSON API, Prometheus metrics, a web page (extra: serve)",
        description="Load CycleGAN runs (both directions), reference .pth weights, pretrained:NAME models and "
        "SR runs once, then answer POST /v1/translate and POST /v1/upscale; the page at / does the same in a "
        "browser. Needs pip install 'ganlab[serve]'.",
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="RUN_DIR_OR_MODEL",
        help="a run directory, a reference .pth file or folder, or pretrained:NAME (as ganlab.load takes "
        "them), named after the folder, file or pretrained name; or NAME=SOURCE",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=_D.max_concurrency,
        help=f"images processed at once (default {_D.max_concurrency}: one inference already uses every core)",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=_D.max_queue,
        help=f"requests waiting beyond those; the next gets 503 + Retry-After (default {_D.max_queue})",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=_D.max_pixels,
        help=f"largest image, decoded or upscaled, in pixels: 413 beyond (default {_D.max_pixels:,})",
    )
    p.add_argument(
        "--max-bytes",
        type=_size,
        default=_D.max_bytes,
        help="largest request body, e.g. 20MB: 413 beyond (default 20MB)",
    )
    p.add_argument("--token-file", metavar="FILE", help="require 'Authorization: Bearer <token in FILE>'")
    p.add_argument(
        "--tile",
        type=int,
        default=512,
        help="tile images with a side over this (SR: LR tiles of half); 0: never",
    )
    p.add_argument("--checkpoint", default="latest", help="'latest' or an epoch number, for every run")
    p.add_argument("--device", default="auto")
    add_precision(p)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    limits = Limits(args.max_concurrency, args.max_queue, args.max_pixels, args.max_bytes)
    serve(
        args.models,
        host=args.host,
        port=args.port,
        limits=limits,
        token_file=args.token_file,
        device=args.device,
        precision=args.precision,
        tile=args.tile,
        checkpoint=args.checkpoint,
        log_level=args.log_level,
    )
    return 0
