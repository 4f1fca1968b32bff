"""Benchmark: the simulator at scale. A 5,000-node multi-region cluster, 2,000 pods of random microservice DAGs,
placed one by one under each heuristic policy and all at once by the planner; prints time per pod side by side
(with the ratio to the default policy, as these machines are noisy), the placements' expected end-to-end latency
(with the ratio to netaware's pod-by-pod placement), then the planner's whole time for 200 pods on 1,000 nodes and
for the large instance.
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
from netaware.simulation.placing import PlacementError, Simulation


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
        "x netaware",
        "network cost",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    rows: list[tuple[str, tuple[float, float, float, float, float] | None, str]] = []
    planning_s: dict[str, float] = {}
    for policy in ("default", "random", "network-overhead", "hierarchy", "netaware", "netaware-lookahead", "plan"):
        simulation = Simulation(cluster, policy, seed=11)
        run_started = time.perf_counter()
        try:
            placements = simulation.run(apps)
        except PlacementError as error:
            rows.append((policy, None, str(error)))
            continue
        total = time.perf_counter() - run_started
        metrics = evaluate(cluster, apps, placements, simulation.link_costs.cost)
        per_pod = sorted(simulation.seconds_per_pod)
        # The planner places every pod in one call: its time per pod is that call over the pods.
        mean = 1e3 * (total / pods if policy == "plan" else sum(per_pod) / len(per_pod))
        p50 = mean if policy == "plan" else 1e3 * per_pod[len(per_pod) // 2]
        if policy == "plan":
            planning_s[f"{pods} pods on {arguments.nodes} nodes"] = total
        rows.append((policy, (p50, mean, total, metrics.latency_ms, metrics.network_cost), ""))
    default = next(r[1] for r in rows if r[0] == "default" and r[1])
    netaware = next(r[1] for r in rows if r[0] == "netaware" and r[1])
    for policy, figures, failure in rows:
        if figures is None:
            table.add_row(policy, "-", "-", "-", "-", "-", "-", f"left pods Pending: {failure}"[:60])
            continue
        p50, mean, total, latency, cost = figures
        table.add_row(policy, f"{p50:.2f}", f"{mean:.2f}", f"{mean / default[1]:.1f}", f"{total:.1f}",
                      f"{latency:.0f}", f"{latency / netaware[3]:.2f}", f"{cost:.1f}")  # fmt: skip
    console = Console(width=150)
    console.print(table)
    small = multi_region(1000, 12)
    small_apps = apps_for("random", pods=200, seed=12)
    small_started = time.perf_counter()
    Simulation(small, "plan", seed=12).run(small_apps)
    planning_s[f"{sum(a.pods for a in small_apps)} pods on 1000 nodes"] = time.perf_counter() - small_started
    console.print(
        "planner, whole time (targets: 200 pods on 1,000 nodes under 2 s, 2,000 on 5,000 under 30 s): "
        + "; ".join(f"{what} {seconds:.1f} s" for what, seconds in planning_s.items())
    )


if __name__ == "__main__":
    main()
