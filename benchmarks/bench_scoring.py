"""Benchmark: `score_nodes` per-call time on 100 / 1,000 / 5,000 nodes against 50 placed replicas.

Prints one table, all sizes in one run, with the ratio to the 100-node case (machines here are noisy, so read
the ratios). The link-cost matrix is built once per topology snapshot and candidate names are resolved to
indices once per node-set change (as the extender caches both); both are timed separately from the per-pod
`score_candidates` call. Run: `python benchmarks/bench_scoring.py [--repeat N] [--sizes 100,1000,5000]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from netaware.core.appgroup import AppGroup, Dependency, Workload
from netaware.core.costs import build_link_costs
from netaware.core.scoring import candidate_indices, score_candidates
from netaware.core.topology import DenseTopology

REPLICAS = 50
ZONES = 5


def synthetic_topology(nodes: int, seed: int = 7) -> DenseTopology:
    """Zones with ~1 ms inside and 20-60 ms across, bandwidth and loss to match, plus noise."""
    rng = np.random.default_rng(seed)
    zone = np.arange(nodes) % ZONES
    zone_rtt = rng.uniform(20, 60, size=(ZONES, ZONES))
    zone_rtt = (zone_rtt + zone_rtt.T) / 2
    np.fill_diagonal(zone_rtt, 1.0)
    rtt = zone_rtt[zone[:, None], zone[None, :]] * rng.uniform(0.9, 1.1, size=(nodes, nodes))
    same = zone[:, None] == zone[None, :]
    bandwidth = np.where(same, 1000.0, 100.0) * rng.uniform(0.8, 1.0, size=(nodes, nodes))
    loss = np.where(same, 0.0, 0.01) * rng.uniform(0, 1, size=(nodes, nodes))
    names = [f"node-{i:05d}" for i in range(nodes)]
    return DenseTopology.from_matrices(nodes=names, rtt_ms=rtt, bandwidth_mbps=bandwidth, loss_ratio=loss)


APPGROUP = AppGroup(
    name="bench",
    workloads=(
        Workload("frontend", {"app": "frontend"}, (Dependency("cart"), Dependency("catalog", weight=2.0))),
        Workload("cart", {"app": "cart"}),
        Workload("catalog", {"app": "catalog"}),
        Workload("gateway", {"app": "gateway"}, (Dependency("frontend"),)),
    ),
)


def run(sizes: list[int], repeat: int) -> list[dict[str, float]]:
    rows = []
    for size in sizes:
        topology = synthetic_topology(size)
        t0 = time.perf_counter()
        link_costs = build_link_costs(topology)
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(size)
        placed = [topology.nodes[i] for i in rng.integers(0, size, REPLICAS)]
        placements = {"cart": placed[:20], "catalog": placed[20:40], "gateway": placed[40:]}
        candidates = list(topology.nodes)
        t0 = time.perf_counter()
        index = candidate_indices(link_costs, candidates)
        resolve_s = time.perf_counter() - t0
        timings = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            score_candidates(
                link_costs=link_costs,
                appgroup=APPGROUP,
                workload="frontend",
                placements=placements,
                candidates=candidates,
                candidate_index=index,
            )
            timings.append(time.perf_counter() - t0)
        rows.append(
            {
                "nodes": size,
                "build_ms": build_s * 1e3,
                "resolve_ms": resolve_s * 1e3,
                "p50_ms": statistics.median(timings) * 1e3,
                "min_ms": min(timings) * 1e3,
                "p99_ms": float(np.percentile(timings, 99)) * 1e3,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="score calls per size (default 200)")
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated node counts")
    args = parser.parse_args()
    rows = run([int(s) for s in args.sizes.split(",")], args.repeat)
    table = Table(title=f"score_nodes: every node a candidate, {REPLICAS} placed replicas, 3 peer workloads")
    columns = ("nodes", "cost matrix (ms, once)", "resolve names (ms)", "score p50 (ms)", "min", "p99", "p50 vs 100")
    for column in columns:
        table.add_column(column, justify="right")
    base = rows[0]["p50_ms"]
    for row in rows:
        table.add_row(
            str(row["nodes"]),
            f"{row['build_ms']:.1f}",
            f"{row['resolve_ms']:.3f}",
            f"{row['p50_ms']:.3f}",
            f"{row['min_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['p50_ms'] / base:.2f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
