"""What a placement is worth.

- network cost: sum over call edges of the AppGroup weight x the mean link cost (core/costs.py: latency, bandwidth
  and loss terms, weighted) over the replica pairs: what netaware minimises;
- expected end-to-end latency: the planner's predicted network time of one request (core/planning.py: per call
  edge, calls per request x the mean over replica pairs of RTT + a loss term + the reply over the bandwidth), the
  network part of one request to the entry with sequential calls (ms);
- hard-limit violations: dependency edges whose mean RTT exceeds their maxLatencyMs;
- utilisation: the busiest node's CPU share and the spread (standard deviation) over nodes that run anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netaware.core.planning import MISSING_RTT_MS
from netaware.core.planning import evaluate as predicted_ms
from netaware.core.quantities import cpu_millicores
from netaware.simulation.apps import SimApp
from netaware.simulation.clusters import SimCluster
from netaware.simulation.placing import Placements, flattened, planning_problem


@dataclass(frozen=True)
class PlacementMetrics:
    network_cost: float
    latency_ms: float
    violations: int
    max_utilisation: float
    utilisation_spread: float
    pods: int


def _mean_pair(matrix: npt.NDArray[np.float32], index: dict[str, int], a: list[str], b: list[str]) -> float:
    rows = np.array([index[n] for n in a])
    columns = np.array([index[n] for n in b])
    values = matrix[np.ix_(rows, columns)].astype(np.float64)
    same = rows[:, None] == columns[None, :]
    values[same] = 0.0  # co-located: no network
    return float(values.mean())


def evaluate(
    cluster: SimCluster, apps: Sequence[SimApp], placements: Placements, link_cost: npt.NDArray[np.float32]
) -> PlacementMetrics:
    index = {n: i for i, n in enumerate(cluster.nodes)}
    rtt = np.nan_to_num(cluster.topology.rtt_ms, nan=MISSING_RTT_MS)
    cost = 0.0
    violations = 0
    used = np.zeros(cluster.size)
    pods = 0
    for app in apps:
        placed = placements.get(app.name, {})
        for service in app.graph.services:
            for node in placed.get(service.name, []):
                used[index[node]] += cpu_millicores(service.cpu)
                pods += 1
        for workload in app.appgroup.workloads:
            for dependency in workload.dependencies:
                a, b = placed.get(workload.name, []), placed.get(dependency.workload, [])
                if not a or not b:
                    continue
                cost += dependency.weight * _mean_pair(link_cost, index, a, b)
                mean_rtt = _mean_pair(rtt, index, a, b)
                if dependency.max_latency_ms is not None and mean_rtt > dependency.max_latency_ms:
                    violations += 1
    latency, _ = predicted_ms(planning_problem(cluster, apps), flattened(placements))
    share = used / cluster.cpu_m
    busy = share[used > 0]
    return PlacementMetrics(
        network_cost=cost,
        latency_ms=latency,
        violations=violations,
        max_utilisation=float(share.max()),
        utilisation_spread=float(busy.std()) if busy.size else 0.0,
        pods=pods,
    )
