"""A bounded load test of `ganlab serve` as users start it (`python -m ganlab serve`, a real socket):
8 clients, 200 requests, concurrency 2, queue 4. Every request is answered 200 or 503 and the server's
memory does not grow with the number of requests. Latency is printed, not asserted (no timed tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="ganlab serve needs the serve extra (fastapi)")
pytest.importorskip("uvicorn", reason="ganlab serve needs the serve extra (uvicorn)")

from .serve_util import load_script, make_cyclegan_run  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


def bench():
    return load_script(BENCH, "serve_load")


def test_load_answers_200_or_503_and_memory_stays_flat(tmp_path: Path) -> None:
    b = bench()
    run = make_cyclegan_run(tmp_path / "tiny")
    proc, url = b.start_server([str(run)], concurrency=2, queue=4, log=tmp_path / "server.log")
    try:
        body = b.sample_png(48)
        first = b.load(url, "/v1/translate", body, clients=8, total=20)
        rss_first = b.resident_mb(url)
        rest = b.load(url, "/v1/translate", body, clients=8, total=180)
        rss_end = b.resident_mb(url)
    finally:
        b.stop(proc)
    s = b.summary(first + rest)
    print(
        f"\nserve load: codes {s['codes']}, p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, RSS {rss_first} -> {rss_end} MB"
    )
    assert s["requests"] == 200 and not s["errors"], s["errors"][:3]
    assert set(s["codes"]) <= {200, 503} and s["codes"].get(200, 0) > 0, s["codes"]
    if rss_first is None:
        pytest.skip("the server reports no resident memory here (no /proc); codes checked")
    assert rss_end - rss_first < 150, f"server RSS grew from {rss_first:.0f} MB to {rss_end:.0f} MB"
