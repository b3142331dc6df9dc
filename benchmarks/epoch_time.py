"""Seconds per epoch of presets on a small set (the documented "faster per epoch" claim, measured).

    python benchmarks/epoch_time.py --data data/demo --images 20 --size 128 --presets model1 model2

Trains each preset for --epochs epochs on the first --images images of each domain (batch 1, the
documented setting) in a temporary run directory, and prints the median seconds per epoch from the run's
metrics.jsonl together with parameters and GFLOPs per 256x256 image.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import torch

from ganlab.core.cost import count_params, gflops
from ganlab.core.rundir import read_metrics
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.step import build_models
from ganlab.cyclegan.trainer import train


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["model1", "model2"])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images/domain, "
        f"{args.size} px, batch {args.batch_size}"
    )
    print("| preset | generator params | GFLOPs/256px | wall s/epoch (median) | CPU s/epoch | CPU s/image |")
    print("|---|---:|---:|---:|---:|---:|")
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            overrides = {
                "data": {"root": args.data, "size": args.size, "max_images": args.images},
                "train": {
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "device": args.device,
                    "eval_images": 0,
                    "samples": 1,
                },
            }
            before = _cpu_seconds()
            train(
                preset=preset, overrides=overrides, out=Path(tmp) / "run", log=lambda s: None, progress=False
            )
            cpu = (_cpu_seconds() - before) / args.epochs
            secs = [r["seconds"] for r in read_metrics(Path(tmp) / "run", "epoch")]
        g = build_models(build_cyclegan_config(preset))["G_A2B"]
        med = statistics.median(secs)
        print(
            f"| {preset} | {count_params(g):,} | {gflops(g, 256):.1f} | {med:.1f} | {cpu:.1f} | "
            f"{cpu / args.images:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
