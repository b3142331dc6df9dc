"""`ganlab compare`: several runs side by side (translations, cost, metrics, loss curves, HTML report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganlab.experiments.aggregate import DEFAULT_METRIC, IDENTITY
from ganlab.experiments.compare import compare_runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare runs: image grid, cost/metric table, loss curves, report.html",
        description=(
            "Translate the same images with every run's latest checkpoint and tabulate parameters, GFLOPs, "
            "time per epoch, memory, steps, images and training GFLOPs spent, cycle/ground-truth PSNR and "
            "SSIM, checkerboard index and tint. Runs that differ only in the seed form one configuration: "
            "a second table gives each configuration's mean with 95% intervals over seeds and over test "
            "tiles, and marks which differences to the best configuration and to the identity baseline "
            "cannot be told from noise. A run's eval.json is reused when it is newer than its latest "
            "checkpoint. Everything also goes to OUT/report.html."
        ),
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument(
        "--images",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="images to translate (default: up to 4 test images of the data root)",
    )
    p.add_argument("--out", required=True, help="output folder (report.html, grid.png, table.*, losses.png)")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b")
    p.add_argument("--data", help="data root to evaluate on (default: each run's own)")
    p.add_argument(
        "--sort",
        metavar="METRIC",
        help="sort by a table column, better first (e.g. cycle_psnr, gt_ssim, checkerboard_flat); "
        "append :asc or :desc to choose the order",
    )
    p.add_argument(
        "--metric",
        choices=list(IDENTITY),
        default=DEFAULT_METRIC,
        help="per-tile score the configuration table aggregates and tests (default %(default)s)",
    )
    p.add_argument("--no-eval", action="store_true", help="do not evaluate; reuse up-to-date eval.json only")
    p.add_argument("--limit", type=int, help="at most this many test images per domain when evaluating")
    p.add_argument("--device", default="auto")
    p.add_argument("--cell", type=int, default=192, help="grid cell height in pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    compare_runs(
        args.runs,
        args.images,
        args.out,
        direction=args.direction,
        data=args.data,
        sort=args.sort,
        evaluate=not args.no_eval,
        device=args.device,
        limit=args.limit,
        cell=args.cell,
        progress=not args.quiet,
        metric=args.metric,
    )
    print((Path(args.out) / "table.md").read_text(), end="")
    return 0
