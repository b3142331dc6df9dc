"""Prometheus text exposition (format 0.0.4), written by hand: request counters, a latency histogram,
refusals by reason, and gauges the app supplies (queue depth, running, resident memory)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

# Seconds; the CPU models take from milliseconds (tiny) to minutes (a large image on a big model).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ENDPOINTS = ("/", "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/translate", "/v1/upscale")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Metrics:
    """Thread-safe counters; ``render`` writes the exposition text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.rejections: Counter[str] = Counter()
        self.buckets: dict[str, list[int]] = {}
        self.sums: Counter[str] = Counter()
        self.started = time.time()

    @staticmethod
    def endpoint(path: str) -> str:
        """A fixed label set: unknown paths are ``other`` (a scanner cannot grow the metrics)."""
        return path if path in ENDPOINTS else "other"

    def observe(self, path: str, status: int, seconds: float) -> None:
        ep = self.endpoint(path)
        with self._lock:
            self.requests[ep, status] += 1
            counts = self.buckets.setdefault(ep, [0] * (len(BUCKETS) + 1))
            counts[next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
            self.sums[ep] += seconds

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejections[reason] += 1

    def render(self, gauges: dict[str, tuple[str, Callable[[], Any]]]) -> str:
        """``gauges``: name -> (help, value getter); a getter returning None is left out."""
        out: list[str] = []
        with self._lock:
            out += _family(
                "ganlab_requests_total", "counter", "HTTP requests answered, by endpoint and status"
            )
            for (ep, code), n in sorted(self.requests.items()):
                out.append(f'ganlab_requests_total{{endpoint="{_label(ep)}",code="{code}"}} {n}')
            out += _family("ganlab_rejections_total", "counter", "Requests refused, by reason (error code)")
            for reason, n in sorted(self.rejections.items()):
                out.append(f'ganlab_rejections_total{{reason="{_label(reason)}"}} {n}')
            name = "ganlab_request_duration_seconds"
            out += _family(name, "histogram", "Time from request start to response start, by endpoint")
            for ep, counts in sorted(self.buckets.items()):
                running = 0
                for bound, n in zip([*map(repr, BUCKETS), "+Inf"], counts):
                    running += n
                    out.append(f'{name}_bucket{{endpoint="{_label(ep)}",le="{bound}"}} {running}')
                out.append(f'{name}_sum{{endpoint="{_label(ep)}"}} {self.sums[ep]:.6f}')
                out.append(f'{name}_count{{endpoint="{_label(ep)}"}} {running}')
        for gname, (help_, get) in gauges.items():
            value = get()
            if value is not None:
                out += _family(gname, "gauge", help_)
                out.append(f"{gname} {value}")
        return "\n".join(out) + "\n"


def _family(name: str, kind: str, help_: str) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
