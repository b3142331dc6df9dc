"""Command line: parsing only. Each subcommand lives in ``ganlab.cli.<name>`` and exposes
``register(subparsers)``; the parser it adds sets ``func`` to one call into the library.

Every error a user can cause is a ``GanlabError``: it is printed as one line ``ganlab CMD: error: ...``
with exit code 2. ``--debug`` (or ``GANLAB_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ganlab.core.errors import GanlabError
from ganlab.core.version import VERSION

# Order here is the order in `ganlab --help`.
COMMANDS = [
    "train",
    "translate",
    "import",
    "pretrained",
    "info",
    "eval",
    "demo",
    "data",
    "sr",
    "compare",
    "sweep",
    "bench",
    "serve",
    "export",
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command ``only`` alone (importing just that command's code)."""
    parser = argparse.ArgumentParser(
        prog="ganlab",
        description="GAN experiments on images: CycleGAN translation and SRGAN super-resolution.",
    )
    parser.add_argument("--version", action="version", version=f"ganlab {VERSION}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (or set GANLAB_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f"ganlab.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Progress lines must show up promptly when output goes to a file or a pipe (logs, CI, nohup).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: `--nproc` relaunches it
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("GANLAB_DEBUG", "") not in ("", "0")
    try:
        rc = args.func(args)
    except (GanlabError, FileNotFoundError) as e:
        if debug:
            raise
        print(f"ganlab {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def _command_in(argv: list[str]) -> str | None:
    """The command named on the line, when it is a known one (then only its module is imported: a
    command starts faster and `translate --onnx` runs without PyTorch)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    if first not in COMMANDS or {"-h", "--help"} & set(argv[: argv.index(first)]):
        return None
    return first


def _one_line(e: BaseException) -> str:
    """The message on one line (a multi-line message keeps its first line and says how many more)."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return lines[0] + (f" (and {len(lines) - 1} more lines; rerun with --debug)" if len(lines) > 1 else "")
