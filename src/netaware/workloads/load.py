"""An open-loop load driver: `count` GET requests at a fixed `rate`, each sent at its scheduled time whatever the
previous ones are doing (a closed loop would slow down with the system and hide its tail). Latency is measured from
the scheduled send time, so a driver that falls behind shows up in the figures instead of vanishing from them
(no coordinated omission)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from netaware.workloads.service import Resolver

REQUEST_TIMEOUT_S = 10.0


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    """Of successful requests, from scheduled send time to the end of the response."""
    sent_s: list[float] = field(default_factory=list)
    """Each successful request's scheduled send time, in seconds after `started_at_s` (the same order)."""
    started_at_s: float = 0.0
    """Wall-clock time (time.time()) of the first scheduled send."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    calls: list[int] = field(default_factory=list)
    """Downstream calls each successful request caused (checks the whole graph ran)."""

    def summary(self) -> dict[str, Any]:
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        total = len(self.latencies_ms) + self.errors
        return {
            "requests": total,
            "ok": len(self.latencies_ms),
            "errors": self.errors,
            "errorRate": self.errors / total if total else 0.0,
            "p50Ms": float(np.percentile(latencies, 50)),
            "p95Ms": float(np.percentile(latencies, 95)),
            "p99Ms": float(np.percentile(latencies, 99)),
            "meanMs": float(np.mean(latencies)),
            "throughputPerS": len(self.latencies_ms) / self.duration_s if self.duration_s else 0.0,
            "durationS": self.duration_s,
            "callsPerRequest": float(np.median(self.calls)) if self.calls else 0.0,
            "errorSamples": self.error_samples[:5],
        }


def drive(
    host: str, port: int, resolver: Resolver, *, rate_per_s: float, count: int, concurrency: int = 64
) -> LoadResult:
    if rate_per_s <= 0 or count <= 0:
        raise ValueError("rate and count must be > 0")
    result = LoadResult()
    lock = threading.Lock()
    sessions = threading.local()

    def one(scheduled: float) -> None:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        try:
            answer = sessions.session.get(f"http://{resolver.resolve(host, port)}/", timeout=REQUEST_TIMEOUT_S)
            answer.raise_for_status()
            calls = int(answer.json().get("calls", 0))
        except (LookupError, requests.RequestException, ValueError) as error:
            with lock:
                result.errors += 1
                if len(result.error_samples) < 20:
                    result.error_samples.append(str(error)[:200])
            return
        elapsed_ms = (time.perf_counter() - scheduled) * 1e3
        with lock:
            result.latencies_ms.append(elapsed_ms)
            result.sent_s.append(scheduled - start)
            result.calls.append(calls)

    result.started_at_s = time.time()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for index in range(count):
            scheduled = start + index / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, scheduled)
    result.duration_s = time.perf_counter() - start
    return result
