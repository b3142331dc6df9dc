"""Tiled translation with instance norm: exactness, the approximate mode's error, and an 8K picture.

    python benchmarks/tiles.py exact  [--size 1024x768] [--tile 512]
    python benchmarks/tiles.py approx [--size 2048x1152] [--run RUN_DIR] [--image PHOTO]
    python benchmarks/tiles.py big    [--size 7680x4320] [--tile 1024] [--pieces 1920x1080]

exact: resnet9 (random weights, PyTorch's default init), fp32: max abs difference between `--tile-stats
exact` and the untiled output, with wall and CPU seconds of both (in this process, one after the other).
approx: error of the approx and the per-tile modes against exact on a photo (default: a wallpaper photo
from /usr/share/backgrounds, else a synthetic picture) scaled to --size; --run uses a trained run's a2b
generator (default: resnet9 with random weights).
big: `ganlab translate --tile` of one picture of --size, and `ganlab translate` of the same pixels cut
into --pieces untiled pictures, each in its own process (precision auto, as the CLI's default): wall and
CPU seconds, peak RSS of each process, and the load average around each run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganlab.core.rundir import write_weights_run
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.seamless import translate_seamless
from ganlab.cyclegan.step import build_models
from ganlab.cyclegan.translate import load_run_models
from ganlab.models.generator import ResnetGenerator
from ganlab.models.registry import preset_config

PHOTO_DIRS = (Path("/usr/share/backgrounds"),)


def size(s: str) -> tuple[int, int]:
    w, h = s.lower().split("x")
    return int(w), int(h)


def photo(w: int, h: int, path: str | None) -> Image.Image:
    """A photo resized and centre-cropped to w x h (synthetic smooth picture when none is installed)."""
    files = [Path(path)] if path else sorted(p for d in PHOTO_DIRS for p in d.glob("*.jpg"))
    if not files:
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        a = np.stack([0.5 + 0.4 * np.sin(9 * xx + k) * np.cos(7 * yy - k) for k in range(3)], -1)
        return Image.fromarray((a * 255).astype(np.uint8))
    im = Image.open(files[0]).convert("RGB")
    f = max(w / im.width, h / im.height)
    im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
    x0, y0 = (im.width - w) // 2, (im.height - h) // 2
    print(f"picture: {files[0].name} -> {w}x{h}")
    return im.crop((x0, y0, x0 + w, y0 + h))


def to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None].contiguous()


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def resnet9() -> ResnetGenerator:
    torch.manual_seed(0)
    return ResnetGenerator(preset_config("resnet9")).eval()


@torch.no_grad()
def bench_exact(args: argparse.Namespace) -> None:
    w, h = args.size
    g = resnet9()
    x = to_tensor(photo(w, h, args.image))
    g(x[..., :64, :64])  # warm up
    print(f"resnet9, fp32, {w}x{h}, --tile {args.tile}, {torch.get_num_threads()} threads, load {load()}")
    for _ in range(args.repeat):
        ref, w0, c0 = timed(lambda: g(x))
        y, w1, c1 = timed(
            lambda: translate_seamless(g, x, args.tile, "exact", memory_bytes=args.memory << 20)
        )
        d = (y - ref).abs().max().item()
        print(
            f"untiled {w0:.1f} s wall {c0:.1f} s CPU | tiled exact {w1:.1f} s wall {c1:.1f} s CPU | "
            f"ratio wall {w1 / w0:.2f} CPU {c1 / c0:.2f} | max abs diff {d:.1e} | load {load()}"
        )


@torch.no_grad()
def bench_approx(args: argparse.Namespace) -> None:
    w, h = args.size
    if args.run:
        g = load_run_models(args.run)[0]["G_A2B"]
        what = f"run {args.run} (a2b)"
    else:
        g, what = resnet9(), "resnet9, random weights"
    x = to_tensor(photo(w, h, args.image))
    print(f"{what}, fp32, {w}x{h}, --tile {args.tile}")
    exact = translate_seamless(g, x, args.tile, "exact", memory_bytes=args.memory << 20)
    approx, wa, ca = timed(lambda: translate_seamless(g, x, args.tile, "approx"))
    from ganlab.core.tiling import tiled_apply

    per_tile = tiled_apply(g, x, tile=args.tile, pad=32)
    print("| mode | max abs diff | mean abs diff | PSNR vs exact (8-bit) |")
    print("|---|---:|---:|---:|")
    for name, y in (("approx (0.5 MP copy)", approx), ("tile (per-tile stats, pad 32)", per_tile)):
        d = (y.clamp(-1, 1) - exact.clamp(-1, 1)).abs()
        mse = (((y.clamp(-1, 1) - exact.clamp(-1, 1)) * 127.5) ** 2).mean().item()
        psnr = 10 * np.log10(255**2 / mse) if mse > 0 else float("inf")
        print(f"| {name} | {d.max().item():.3f} | {d.mean().item():.4f} | {psnr:.1f} dB |")
    print(f"approx mode: {wa:.1f} s wall, {ca:.1f} s CPU")


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


CHILD = (
    "import json, resource, sys, time; from ganlab.cli import main; t = time.perf_counter(); "
    "rc = main(sys.argv[1:]); r = resource.getrusage(resource.RUSAGE_SELF); "
    "print('BENCH ' + json.dumps({'rc': rc, 'wall': time.perf_counter() - t, 'cpu': r.ru_utime + r.ru_stime, "
    "'maxrss_mb': r.ru_maxrss / 1024}), file=sys.stderr)"
)


def run_child(argv: list[str]) -> dict:
    before = load()
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("BENCH ")]
    if res.returncode or not line:
        raise SystemExit(f"child failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    out = json.loads(line[-1][6:])
    out.update(total_wall=time.perf_counter() - t, load_before=before, load_after=load())
    return out


def make_run(root: Path) -> Path:
    cfg = build_cyclegan_config("resnet9")
    torch.manual_seed(0)
    return write_weights_run(root, "cyclegan", cfg, dict(build_models(cfg).items()))


def bench_big(args: argparse.Namespace) -> None:
    (w, h), (pw, ph) = args.size, args.pieces
    if w % pw or h % ph:
        raise SystemExit("--pieces must divide --size")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tiles-", dir=args.tmp)))
        run = make_run(tmp / "run")
        im = photo(w, h, args.image)
        im.save(tmp / "big.png")
        pieces = tmp / "pieces"
        pieces.mkdir()
        for j in range(h // ph):
            for i in range(w // pw):
                im.crop((i * pw, j * ph, (i + 1) * pw, (j + 1) * ph)).save(pieces / f"{j:02d}_{i:02d}.png")
        del im
        common = ["translate", "--run", str(run), "--precision", args.precision]
        print(f"resnet9 (random weights), precision {args.precision}, {os.cpu_count()} CPUs")
        results = {}
        order = ["tiled", "pieces"] if not args.pieces_first else ["pieces", "tiled"]
        for name in order:
            if name == "tiled":
                argv = [*common, str(tmp / "big.png"), "--out", str(tmp / "o1"), "--tile", str(args.tile)]
            else:
                argv = [*common, str(pieces), "--out", str(tmp / "o2")]
            results[name] = r = run_child(argv)
            print(
                f"{name}: {r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, peak RSS {r['maxrss_mb']:.0f} MB, "
                f"load {r['load_before']} -> {r['load_after']}",
                flush=True,
            )
        a, b = results["tiled"], results["pieces"]
        print(
            f"tiled {w}x{h} (--tile {args.tile} --tile-stats exact) / {w // pw * (h // ph)} untiled "
            f"{pw}x{ph} pieces: wall {a['wall'] / b['wall']:.2f}x, CPU {a['cpu'] / b['cpu']:.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["exact", "approx", "big"])
    ap.add_argument("--size", type=size, help="W x H (default 1024x768, 2048x1152, 7680x4320)")
    ap.add_argument("--tile", type=int, help="default 512 (exact, approx) or 1024 (big)")
    ap.add_argument("--pieces", type=size, default=(1920, 1080))
    ap.add_argument("--image", help="picture to use (default: an installed wallpaper photo)")
    ap.add_argument("--run", help="approx: a trained CycleGAN run to use instead of random resnet9")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--memory", type=int, default=1536, help="exact/approx: in-memory scratch budget, MB")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tmp", help="big: folder for the pictures and outputs (default: system temp)")
    ap.add_argument("--pieces-first", action="store_true", help="big: run the untiled pieces first")
    args = ap.parse_args()
    default = {"exact": ((1024, 768), 512), "approx": ((2048, 1152), 512), "big": ((7680, 4320), 1024)}
    args.size = args.size or default[args.what][0]
    args.tile = args.tile or default[args.what][1]
    {"exact": bench_exact, "approx": bench_approx, "big": bench_big}[args.what](args)


if __name__ == "__main__":
    main()
