"""Benchmark the aggregator at 1,000 nodes, side by side in one run.

1. Reports per second the aggregator accepts over HTTP (gunicorn, as deployed), from 1,000 simulated agents:
   each agent's report names its 50 rendezvous-hashed peers (`--peer-limit`, the agents' default) with RTT,
   jitter and loss; 16 connections post as fast as they are answered. Three configurations: no journal, the
   journal with one fsync per report (`max_batch=1`, what the aggregator did before group commit) and the group-
   committed journal (every accepted report fsync'd before its 202 in both), each as a ratio to the first.
2. Validating one report: the Python jsonschema validator against the compiled one the aggregator now asks first.
3. Publishing at 1,000 and 10,000 nodes under the default probe budget, per NetworkTopology form: building the
   resources from the aggregator's state, the largest object against etcd's 1.5 MiB request limit, and the
   extender's dense read of them. The full form (every pair written) at 1,000 only: its n^2 objects do not fit at
   10,000, where the compact form (measured links, offsets, zone pairs) is what runs.

Run: `python benchmarks/bench_aggregator.py [--nodes 1000] [--reports 4000] [--topology-nodes 1000,10000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import requests
from rich.console import Console
from rich.table import Table

from netaware.aggregator.app import create_app
from netaware.aggregator.journal import ReportJournal
from netaware.aggregator.publishing import Publisher
from netaware.aggregator.reading import SharedTopology
from netaware.core import telemetry
from netaware.core.peers import ProbePlanner, select_peers
from netaware.core.telemetry import LinkAggregator, parse_report
from netaware.kube.converters import dense_topology_from_resources
from netaware.serving import WsgiServer

console = Console()
PORT = 30900
TOKEN = "bench"
ETCD_LIMIT_BYTES = 1.5 * 1024 * 1024


def reports_for(nodes: list[str], count: int, peer_limit: int, now_s: float) -> list[dict[str, Any]]:
    rng = random.Random(3)
    rounds = -(-count // len(nodes))
    reports = []
    for index in range(count):
        node = nodes[index % len(nodes)]
        peers = select_peers(node, nodes, limit=peer_limit, round_index=index // len(nodes))
        reports.append({
            "node": node, "measuredAt": now_s - 10 * (rounds - 1 - index // len(nodes)),  # a round every 10 s
            "peers": [{"peer": p, "sent": 20, "received": 20 - (rng.random() < 0.05), "rttMs": rng.uniform(0.2, 80),
                       "jitterMs": rng.uniform(0, 2)} for p in peers],
        })  # fmt: skip
    return reports


def serve(factory: Callable[[], Any], port: int) -> int:
    pid = os.fork()
    if pid == 0:
        WsgiServer(factory, host="127.0.0.1", port=port, threads=8).run()
        os._exit(0)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return pid
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError("the aggregator did not start")


def post_all(port: int, reports: list[dict[str, Any]], connections: int = 16) -> tuple[float, int]:
    """Post every report over `connections` kept-alive connections at once (aiohttp on one event loop: a load
    generator that leaves the two cores to the aggregator, as agents on other machines would), in a process of its
    own. Returns reports per second and how many were not answered 202."""
    bodies = [json.dumps(r).encode() for r in reports]

    async def run() -> tuple[float, int]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            queue = list(reversed(bodies))
            failures = 0

            async def worker() -> None:
                nonlocal failures
                while queue:
                    body = queue.pop()
                    async with session.post(f"http://127.0.0.1:{port}/v1/reports", data=body) as answer:
                        await answer.read()
                        failures += answer.status != 202

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return len(bodies) / (time.perf_counter() - started), failures

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=4000)
    parser.add_argument("--peer-limit", type=int, default=50)
    parser.add_argument(
        "--topology-nodes", type=lambda v: [int(n) for n in v.split(",")], default=[1000, 10000],
        help="cluster sizes of the NetworkTopology table (comma-separated; the full form at the first only)",
    )  # fmt: skip
    arguments = parser.parse_args()
    nodes = [f"node-{i:04d}.zone-{i % 10}.example-region.internal" for i in range(arguments.nodes)]
    now = time.time()
    reports = reports_for(nodes, arguments.reports, arguments.peer_limit, now)
    table = Table(
        title=f"aggregator: {len(reports)} reports from {len(nodes)} agents, {arguments.peer_limit} peers each"
    )
    for column in ("configuration", "reports/s", "links/s", "refused", "x without journal"):
        table.add_column(column, justify="right" if column != "configuration" else "left")
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        configurations = [
            ("no journal", None),
            ("journal, fsync per report", 1),
            ("journal, group commit", 1024),
        ]
        for name, max_batch in configurations:

            def factory(max_batch: int | None = max_batch, path: Path = Path(folder) / f"{max_batch}.jsonl") -> Any:
                journal = ReportJournal(path, max_batch=max_batch) if max_batch else None
                return create_app(token=TOKEN, nodes=lambda: nodes, journal=journal, ttl_s=600)

            pid = serve(factory, PORT)
            try:
                rate, refused = post_all(PORT, reports)
            finally:
                os.kill(pid, 15)
                os.waitpid(pid, 0)
            rates[name] = rate
            table.add_row(name, f"{rate:,.0f}", f"{rate * arguments.peer_limit:,.0f}", str(refused),
                          f"{rate / rates['no journal']:.2f}")  # fmt: skip
    console.print(table)
    target = "met" if rates["journal, group commit"] >= 1000 else "NOT met"
    console.print(f"  {len(nodes)} agents reporting every 10 s need {len(nodes) / 10:,.0f} reports/s; "
                  f"1,000 reports/s with the journal fsync'd: {target}")  # fmt: skip

    sample = reports[:200]
    timings = {}
    for name, check in [
        ("python jsonschema", telemetry._validator.is_valid),
        ("compiled", telemetry._compiled.is_valid),
    ]:
        started = time.perf_counter()
        assert all(check(report) for report in sample)
        timings[name] = (time.perf_counter() - started) / len(sample) * 1e3
    console.print(
        f"[bold]validating a report of {arguments.peer_limit} peers[/]: python jsonschema "
        f"{timings['python jsonschema']:.2f} ms, compiled {timings['compiled']:.3f} ms "
        f"({timings['python jsonschema'] / timings['compiled']:.0f}x)"
    )

    publishing_table(arguments.topology_nodes)


def budget_aggregator(nodes: list[str], zones: dict[str, str], now: float, rounds: int) -> LinkAggregator:
    """The aggregator after `rounds` rounds of every agent under the default probe budget (1 probe/s, 10-s rounds:
    5 peers a round, chosen by core.peers.ProbePlanner)."""
    planner = ProbePlanner(zones, probes_per_round=10)
    rng = random.Random(4)
    aggregator = LinkAggregator(ttl_s=60)
    for round_index in range(rounds):
        at = now - 10 * (rounds - 1 - round_index)
        for node in nodes:
            peers = planner.peers(node, round_index)
            aggregator.ingest(parse_report({"node": node, "measuredAt": at, "peers": [
                {"peer": p, "sent": 2, "received": 2, "rttMs": rng.uniform(0.2, 80), "jitterMs": 0.1} for p in peers
            ]}))  # fmt: skip
    return aggregator


def publishing_table(sizes: list[int]) -> None:
    """What publishing costs and weighs per form: the resources built from the aggregator's state (snapshot, zone
    model, objects; no API calls), their largest object against etcd's limit, and the extender's dense read of
    them. The full form needs every pair as an object, so it runs at the smallest size only."""
    table = Table(title="NetworkTopology per form (default probe budget, 6 rounds of reports, TTL 60 s)")
    for column in ("nodes", "form", "objects", "links written", "build s", "largest KiB", "total MiB",
                   "under 1.5 MiB", "extender read s"):  # fmt: skip
        table.add_column(column, justify="left" if column == "form" else "right")
    for count in sizes:
        nodes = [f"node-{i:05d}.zone-{i % 20}.example-region.internal" for i in range(count)]
        zones = {n: n.split(".")[1] for n in nodes}
        now = time.time()
        aggregator = budget_aggregator(nodes, zones, now, rounds=6)
        shared = SharedTopology(aggregator, threading.Lock(), nodes=lambda nodes=nodes: nodes,
                                zones=lambda zones=zones: zones, clock=lambda now=now: now)  # fmt: skip
        for form in ("full", "compact") if count == min(sizes) else ("compact",):
            publisher = Publisher(None, shared, form=form)  # type: ignore[arg-type]  # resources() calls no API
            started = time.perf_counter()
            resources = publisher.resources()
            built = time.perf_counter() - started
            sizes_bytes = sorted(len(json.dumps(r)) for r in resources)
            links = sum(len(r["spec"].get("links") or []) for r in resources)
            started = time.perf_counter()
            dense, problems = dense_topology_from_resources(resources, nodes=nodes, now_s=now, ttl_s=60)
            read = time.perf_counter() - started
            assert not problems, problems[:3]
            known = np.count_nonzero(~np.isnan(dense.rtt_ms))
            del dense
            table.add_row(
                f"{count:,}", form, f"{len(resources):,}", f"{links:,}", f"{built:.1f}",
                f"{sizes_bytes[-1] / 1024:.0f}",
                f"{sum(sizes_bytes) / 1024 / 1024:.1f}", "yes" if sizes_bytes[-1] < ETCD_LIMIT_BYTES else "NO",
                f"{read:.1f} ({known / max(1, count * (count - 1)):.0%} of pairs known)",
            )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
