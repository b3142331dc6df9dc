"""Command line: parsing only. Each subcommand lives in ``ganlab.cli.<name>`` and exposes
``register(subparsers)``; the parser it adds sets ``func`` to one call into the library."""

from __future__ import annotations

import argparse
import importlib
import sys

from ganlab.core.errors import GanlabError

# Order here is the order in `ganlab --help`.
COMMANDS = ["train", "translate", "info", "eval", "demo", "data", "sr", "compare", "sweep"]


def build_parser() -> argparse.ArgumentParser:
    from ganlab import __version__

    parser = argparse.ArgumentParser(
        prog="ganlab",
        description="GAN experiments on images: CycleGAN translation and SRGAN super-resolution.",
    )
    parser.add_argument("--version", action="version", version=f"ganlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ganlab.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"ganlab.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Progress lines must show up promptly when output goes to a file or a pipe (logs, CI, nohup).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (GanlabError, FileNotFoundError) as e:
        print(f"ganlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
