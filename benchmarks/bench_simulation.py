"""Benchmark: the simulator at scale. A 5,000-node multi-region cluster, 2,000 pods of random microservice DAGs,
placed one by one under each heuristic policy; prints time per pod side by side (with the ratio to the default
policy, as these machines are noisy) and the placements' expected end-to-end latency.
Run: `python benchmarks/bench_simulation.py [--nodes 5000] [--pods 2000]`.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from netaware.simulation.apps import apps_for
from netaware.simulation.clusters import multi_region
from netaware.simulation.metrics import evaluate
from netaware.simulation.placing import Simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=2000)
    arguments = parser.parse_args()
    started = time.perf_counter()
    cluster = multi_region(arguments.nodes, 11)
    built = time.perf_counter() - started
    apps = apps_for("random", pods=arguments.pods, seed=11)
    pods = sum(a.pods for a in apps)
    table = Table(
        title=f"simulation: {pods} pods ({len(apps)} apps) on {arguments.nodes} nodes (built in {built:.1f} s)"
    )
    for column in (
        "policy",
        "ms per pod (p50)",
        "ms per pod (mean)",
        "x default",
        "total s",
        "latency ms",
        "network cost",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    baseline = None
    for policy in ("default", "random", "network-overhead", "netaware", "netaware-lookahead"):
        simulation = Simulation(cluster, policy, seed=11)
        run_started = time.perf_counter()
        placements = simulation.run(apps)
        total = time.perf_counter() - run_started
        metrics = evaluate(cluster, apps, placements, simulation.link_costs.cost)
        per_pod = sorted(simulation.seconds_per_pod)
        p50 = 1e3 * per_pod[len(per_pod) // 2]
        mean = 1e3 * sum(per_pod) / len(per_pod)
        baseline = baseline or mean
        table.add_row(policy, f"{p50:.2f}", f"{mean:.2f}", f"{mean / baseline:.1f}", f"{total:.1f}",
                      f"{metrics.latency_ms:.0f}", f"{metrics.network_cost:.1f}")  # fmt: skip
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
