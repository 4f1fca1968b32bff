"""A discrete-event model of the router benchmark's heterogeneous and uniform scenarios, for questions the noisy
two-core benchmark cannot settle: one client, 8 one-slot FIFO replicas (2 at twice the work time, or all equal),
Poisson arrivals, probes answered after `--probe-ms` with the replica's state at that moment. The balancers and the
probe pool are netaware's own (core/balancing.py, core/selection.py); only the replicas and the clock are modelled.

Replica pricing (`--pricing`, both by default, side by side):
- `line`: netaware's ProbeMiddleware (a line through the median latency at each RIF; its value at the replica's RIF
  and its slope as `perRequestMs`);
- `median`: Prequal's replicas (the median latency of samples at a similar RIF, the band widened until 5 samples;
  no slope).

Prints p50 / p99 per scenario, load, pricing and policy, and prequal's p99 against round-robin's and P2C +
peak-EWMA's. Run: `python benchmarks/model_router.py [--seconds 20] [--probe-ms 1]`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from netaware.core.balancing import make_balancer
from netaware.core.selection import ProbeAnswer, latency_line

console = Console()
POLICIES = ("round-robin", "p2c-peak-ewma", "prequal")
LOADS = (0.5, 0.7, 0.9, 1.1, 1.3, 1.5)
WORK_S = 0.04
SCENARIOS = {"heterogeneous": [2 * WORK_S] * 2 + [WORK_S] * 6, "uniform": [WORK_S] * 8}
Pricing = Callable[[Sequence[tuple[int, float]], int], tuple[float, float]]


def line_pricing(samples: Sequence[tuple[int, float]], rif: int) -> tuple[float, float]:
    at_idle, per_request = latency_line(samples)
    return max(0.0, at_idle + per_request * rif), per_request


def median_pricing(samples: Sequence[tuple[int, float]], rif: int, min_samples: int = 5) -> tuple[float, float]:
    if not samples:
        return 0.0, 0.0
    band = 0
    while True:
        similar = [latency for r, latency in samples if abs(r - rif) <= band]
        if len(similar) >= min(min_samples, len(samples)):
            return float(np.median(similar)), 0.0
        band = band * 2 + 1


PRICINGS: dict[str, Pricing] = {"line": line_pricing, "median": median_pricing}


def simulate(policy: str, load: float, work_s: list[float], pricing: Pricing, *, seconds: float, probe_s: float,
             seed: int) -> tuple[float, float]:  # fmt: skip
    """p50 and p99 latency (ms) of requests sent after the first 2 s."""
    rng = random.Random(seed)
    names = [f"replica-{i}" for i in range(len(work_s))]
    work = dict(zip(names, work_s, strict=True))
    balancer = make_balancer(policy, seed=seed)
    queues: dict[str, deque[tuple[float, int]]] = {n: deque() for n in names}  # (arrival, RIF found); head served
    samples: dict[str, deque[tuple[int, float]]] = {n: deque(maxlen=256) for n in names}
    events: list[tuple[float, int, str, Any]] = []
    order = itertools.count()

    def at(time_s: float, kind: str, data: Any) -> None:
        heapq.heappush(events, (time_s, next(order), kind, data))

    rate = load * sum(1 / w for w in work_s)
    arrival = 0.0
    while (arrival := arrival + rng.expovariate(rate)) < seconds:
        at(arrival, "arrive", None)
    latencies: list[float] = []
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            replica = balancer.choose(names, now_s=now)
            for target in balancer.probe_targets(names, now_s=now, query=True):
                at(now + probe_s / 2, "probe", (target, now))
            balancer.on_start(replica)
            queues[replica].append((now, len(queues[replica])))
            if len(queues[replica]) == 1:
                at(now + work[replica], "done", replica)
        elif kind == "done":
            arrived, found = queues[data].popleft()
            latency_ms = (now - arrived) * 1e3
            samples[data].append((found, latency_ms))
            if queues[data]:
                at(now + work[data], "done", data)
            balancer.on_finish(data, ok=True, now_s=now, latency_ms=latency_ms)
            if arrived > 2.0:
                latencies.append(latency_ms)
        elif kind == "probe":  # the replica answers with its state now; the answer arrives half a round trip later
            target, sent = data
            rif = len(queues[target])
            latency_ms, per_request_ms = pricing(list(samples[target]), rif)
            at(now + probe_s / 2, "answer", (target, sent, rif, latency_ms, per_request_ms))
        else:
            target, sent, rif, latency_ms, per_request_ms = data
            answer = ProbeAnswer(rif, latency_ms, rtt_ms=(now - sent) * 1e3, yours=rif, per_request_ms=per_request_ms)
            balancer.on_probe(target, answer, now_s=now)
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds per run")
    parser.add_argument("--probe-ms", type=float, default=1.0, help="a probe's round trip")
    parser.add_argument("--pricing", action="append", choices=PRICINGS, default=None)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    for scenario, work_s in SCENARIOS.items():
        table = Table(title=f"model: {scenario} ({', '.join(f'{w * 1e3:.0f}' for w in work_s)} ms), p50 / p99 ms")
        for column in ("load", "pricing", *POLICIES, "prequal/round-robin p99", "prequal/p2c-peak-ewma p99"):
            table.add_column(column, justify="left" if column == "pricing" else "right")
        for load in LOADS:
            for name in arguments.pricing or PRICINGS:
                row = {policy: simulate(policy, load, work_s, PRICINGS[name], seconds=arguments.seconds,
                                        probe_s=arguments.probe_ms / 1e3, seed=arguments.seed)
                       for policy in POLICIES}  # fmt: skip
                prequal = row["prequal"][1]
                ratios = (f"{prequal / row[baseline][1]:.2f}" for baseline in ("round-robin", "p2c-peak-ewma"))
                table.add_row(f"{load:.0%}", name, *(f"{row[p][0]:.0f} / {row[p][1]:.0f}" for p in POLICIES), *ratios)
            table.add_section()
        console.print(table)


if __name__ == "__main__":
    main()
