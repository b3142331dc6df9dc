"""`ganlab sweep`: train a grid of CycleGAN configs (restartable), then compare them."""

from __future__ import annotations

import argparse

from ganlab.experiments.sweep import load_sweep, run_sweep


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every combination of a config grid, restartably, and compare the runs",
        description=(
            "SWEEP.yaml holds base: (options every run shares: preset, data, size, batch_size, epochs or "
            "minutes, any config key) and grid: (config key -> list of values), optionally seeds: (every "
            "configuration runs once per seed) and budget: ({minutes: M} or {gflops: G}, the same for every "
            "run). Every config is validated before training. Runs go one at a time; rerunning the command "
            "skips finished runs and resumes unfinished ones; the comparison (report.html, tables with "
            "intervals over seeds and test tiles, grid) goes to OUT/compare/."
        ),
    )
    p.add_argument("sweep", metavar="SWEEP.yaml")
    p.add_argument("--out", required=True, help="sweep folder: one run directory per combination")
    p.add_argument(
        "--sort",
        metavar="METRIC",
        help="order of the comparison (default cycle_psnr, best first; METRIC:asc or :desc to choose)",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs; train nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep)
    print(f"sweep {args.sweep}: {len(sweep.runs)} run(s)")
    for key, values in sweep.grid.items():
        print(f"  {key}: {', '.join(map(str, values))}")
    if sweep.seeds:
        print(f"  seeds: {', '.join(map(str, sweep.seeds))} ({sweep.n_configs} configuration(s) each)")
    if sweep.budget:
        (kind, amount), *_ = sweep.budget.items()
        print(f"  budget per run: {amount:g} {'min' if kind == 'minutes' else 'GFLOPs'}")
    result = run_sweep(sweep, args.out, sort=args.sort, dry_run=args.dry_run, progress=not args.quiet)
    if result.interrupted:
        return 130
    if not args.dry_run:
        print(f"sweep done; report: {result.out / 'compare' / 'report.html'}")
    return 0
