"""An asyncio open-loop load generator for the router's benchmark and fault tests.

Requests arrive as a Poisson process at `rate_per_s` for `duration_s`, each sent at its scheduled time whatever
the earlier ones are doing; latency is measured from the scheduled time, so a generator that falls behind shows
up in the figures (no coordinated omission). A request that fails or exceeds `timeout_s` counts as an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np


@dataclass
class LoadReport:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50Ms": self.percentile(50),
            "p99Ms": self.percentile(99),
            "p999Ms": self.percentile(99.9),
            "throughputPerS": len(self.latencies_ms) / self.duration_s if self.duration_s else 0.0,
            "errorSamples": self.error_samples[:5],
        }


async def open_loop(
    url: str,
    *,
    rate_per_s: float,
    duration_s: float,
    timeout_s: float = 10.0,
    seed: int = 0,
    session: aiohttp.ClientSession | None = None,
) -> LoadReport:
    """GET `url` at Poisson arrivals; the report holds every successful latency and every error."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be > 0")
    rng = random.Random(seed)
    report = LoadReport()
    own_session = session is None
    client = session or aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30))
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def one(scheduled: float) -> None:
        try:
            async with client.get(url, timeout=timeout) as answer:
                await answer.read()
                if answer.status >= 400:
                    raise aiohttp.ClientResponseError(
                        answer.request_info, (), status=answer.status, message=answer.reason or ""
                    )
            report.latencies_ms.append((time.perf_counter() - scheduled) * 1e3)
        except (aiohttp.ClientError, TimeoutError) as error:
            report.errors += 1
            if len(report.error_samples) < 20:
                report.error_samples.append(f"{type(error).__name__}: {error}")

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    scheduled = started
    try:
        while True:
            scheduled += rng.expovariate(rate_per_s)
            if scheduled - started > duration_s:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    finally:
        report.duration_s = time.perf_counter() - started
        if own_session:
            await client.close()
    return report
