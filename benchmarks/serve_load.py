"""Load on `ganlab serve`: concurrent clients, status codes, p50/p95 latency and the server's memory.

    python benchmarks/serve_load.py runs/demo --clients 8 --requests 200 --size 128
    python benchmarks/serve_load.py --tiny                 # a throwaway random tiny CycleGAN run
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --endpoint upscale --model x4

Without --url it starts `python -m ganlab serve RUN... --max-concurrency C --max-queue Q` on a free
loopback port, waits for /readyz, sends a warm-up of --warmup requests, reads the server's resident memory
from /metrics, sends the rest, and prints the codes, latency percentiles (per request, 503s included and
apart) and the memory after the warm-up and after the run. Every client keeps one HTTP/1.1 connection.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image


@dataclass
class Result:
    status: int  # 0: the request failed without an HTTP answer
    seconds: float
    error: str | None = None


def sample_png(size: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def load(
    url: str, path: str, body: bytes, clients: int, total: int, token: str | None = None
) -> list[Result]:
    """``total`` POSTs of ``body`` to ``url + path`` from ``clients`` threads; one Result per request."""
    parts = urlsplit(url)
    headers = {"Content-Type": "image/png"} | ({"Authorization": f"Bearer {token}"} if token else {})
    results: list[Result] = []
    lock = threading.Lock()
    left = [total]

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                r = Result(resp.status, time.perf_counter() - t0)
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                r = Result(0, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
                conn.close()
            with lock:
                results.append(r)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(np.ceil(q / 100 * len(s))) - 1))]


def summary(results: list[Result]) -> dict:
    ok = [r.seconds for r in results if r.status == 200]
    busy = [r.seconds for r in results if r.status == 503]
    return {
        "requests": len(results),
        "codes": dict(sorted(Counter(r.status for r in results).items())),
        "errors": sorted({r.error for r in results if r.error}),
        "p50_ms": 1000 * percentile(ok, 50),
        "p95_ms": 1000 * percentile(ok, 95),
        "p50_503_ms": 1000 * percentile(busy, 50),
    }


def resident_mb(url: str, token: str | None = None) -> float | None:
    """The server's resident memory, read from its /metrics (None where it does not report it)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1]) / 2**20
    return None


def start_server(specs: list[str], concurrency: int, queue: int, log: Path) -> tuple[subprocess.Popen, str]:
    """`python -m ganlab serve` on a free loopback port; returns once /readyz answers 200."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "ganlab", "serve", *specs, "--port", str(port), "--log-level", "warning"]
    cmd += ["--max-concurrency", str(concurrency), "--max-queue", str(queue)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}:\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the server did not get ready in 120 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tiny_run(root: Path) -> Path:
    """A CycleGAN run of random tiny weights: measures the server, not a model."""
    import torch

    from ganlab.core.rundir import RunDir, progress_meta
    from ganlab.cyclegan.config import build_cyclegan_config
    from ganlab.cyclegan.step import build_models

    cfg = build_cyclegan_config("model2", overrides={"model": {"hidden": 8, "n_residual": 1}})
    torch.manual_seed(0)
    run = RunDir(root)
    run.create()
    run.save(1, 0, dict(build_models(cfg)), progress_meta("cyclegan", cfg, 1, 0, 1, 0.0), {})
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run directories (NAME=RUN_DIR) to serve")
    ap.add_argument("--url", help="load an already running server instead")
    ap.add_argument("--tiny", action="store_true", help="serve a throwaway random tiny CycleGAN run")
    ap.add_argument("--endpoint", choices=["translate", "upscale"], default="translate")
    ap.add_argument("--model", help="model= of the requests (default: the server's only one)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20, help="requests before the first memory reading")
    ap.add_argument("--size", type=int, default=64, help="side of the random test image")
    ap.add_argument("--max-concurrency", type=int, default=2)
    ap.add_argument("--max-queue", type=int, default=4)
    ap.add_argument("--token", help="bearer token of a --url server")
    args = ap.parse_args()
    if not (args.url or args.runs or args.tiny):
        ap.error("give run directories, --tiny or --url")
    path = f"/v1/{args.endpoint}" + (f"?model={args.model}" if args.model else "")
    body = sample_png(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        url = args.url
        if not url:
            specs = args.runs + ([str(tiny_run(Path(tmp) / "tiny"))] if args.tiny else [])
            proc, url = start_server(specs, args.max_concurrency, args.max_queue, Path(tmp) / "server.log")
        try:
            first = load(url, path, body, args.clients, args.warmup, args.token)
            rss_warm = resident_mb(url, args.token)
            t0 = time.perf_counter()
            rest = load(url, path, body, args.clients, args.requests - args.warmup, args.token)
            wall = time.perf_counter() - t0
            rss_end = resident_mb(url, args.token)
        finally:
            if proc:
                stop(proc)
    s = summary(first + rest)
    print(
        f"{s['requests']} requests, {args.clients} clients, {args.size}x{args.size} PNG to {path}: codes {s['codes']}"
    )
    print(f"200: p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms; 503: p50 {s['p50_503_ms']:.1f} ms")
    done = sum(r.status == 200 for r in rest)
    print(f"after the warm-up: {done / wall:.1f} images/s, {len(rest) / wall:.1f} answers/s (200 and 503)")
    if rss_warm is not None and rss_end is not None:
        print(f"server RSS: {rss_warm:.0f} MB after {args.warmup} requests, {rss_end:.0f} MB after all")
    for e in s["errors"]:
        print("error:", e)


if __name__ == "__main__":
    main()
