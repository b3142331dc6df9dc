"""`ganlab data`: build the offline demo dataset, or download a reference CycleGAN dataset."""

from __future__ import annotations

import argparse

from ganlab.cyclegan.datasets import DATASETS, DEFAULT_BASE_URL, download_dataset
from ganlab.cyclegan.demo.data import build_demo_dataset, ensure_demo_dataset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build the offline demo dataset or download reference datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = dsub.add_parser("demo", help="unpaired photo -> cartoon dataset from photos available offline")
    d.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--force", action="store_true", help="rebuild even if a complete dataset is there")
    d.set_defaults(func=run_demo)
    g = dsub.add_parser(
        "download",
        help="download a reference CycleGAN dataset by name",
        description="Known datasets: " + ", ".join(DATASETS),
    )
    g.add_argument("name", help="dataset name, e.g. horse2zebra")
    g.add_argument("--out", default="data", help="parent folder (the dataset lands in OUT/NAME)")
    g.add_argument("--base-url", default=DEFAULT_BASE_URL, help="mirror to download from")
    g.set_defaults(func=run_download)


def run_demo(args: argparse.Namespace) -> int:
    if args.force:
        build_demo_dataset(args.out, seed=args.seed)
    else:
        ensure_demo_dataset(args.out, seed=args.seed)
    print(f"demo dataset ready in {args.out}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    path = download_dataset(args.name, args.out, base_url=args.base_url)
    print(f"dataset {args.name} ready in {path}")
    return 0
