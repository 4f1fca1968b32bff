"""Whole-workload placements to compare the schedulers against: the optimum (integer programming) and random.

The problem: place one pod per service on nodes with CPU capacity, so that the traffic-weighted network latency

    cost(placement) = sum over call edges (a, b):  calls(a, b) * rtt(node(a), node(b))      (rtt(n, n) = 0)

is smallest. With one sequential call per edge use, this is the network part of one request's end-to-end latency, so
the optimum is the placement a perfect scheduler would find for the experiments' figure of merit.

The optimum is the planner's integer program (core/planning.py), solved by HiGHS through pulp.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from netaware.core.planning import InfeasibleError, PlanEdge, PlanningProblem, PlanWorkload, plan
from netaware.core.topology import DenseTopology

Placement = dict[str, str]
"""service -> node"""


@dataclass(frozen=True)
class PlacementProblem:
    services: Sequence[str]
    cpu_m: Mapping[str, int]
    """CPU request of each service's pod, millicores."""
    edges: Mapping[tuple[str, str], float]
    """(caller, callee) -> calls per request."""
    nodes: Sequence[str]
    capacity_m: Mapping[str, int]
    """Free CPU of each node, millicores."""
    rtt_ms: Mapping[tuple[str, str], float]
    """Measured RTT per directed node pair (missing pairs cost `missing_rtt_ms`)."""
    missing_rtt_ms: float = 1000.0
    allowed: Mapping[str, Sequence[str]] | None = None
    """Optional service -> nodes it may run on (a nodeSelector); others may run anywhere."""

    def rtt(self, origin: str, destination: str) -> float:
        if origin == destination:
            return 0.0
        return self.rtt_ms.get((origin, destination), self.missing_rtt_ms)

    def candidates(self, service: str) -> Sequence[str]:
        if self.allowed and service in self.allowed:
            return [n for n in self.nodes if n in set(self.allowed[service])]
        return self.nodes


def network_cost(problem: PlacementProblem, placement: Mapping[str, str]) -> float:
    """Traffic-weighted RTT of a placement (ms per request)."""
    return sum(calls * problem.rtt(placement[a], placement[b]) for (a, b), calls in problem.edges.items())


def optimal_placement(problem: PlacementProblem, *, time_limit_s: float = 60.0) -> Placement:
    """The proven optimum, by the planner's integer program (core/planning.py) with `rtt` as the pair price."""
    services = list(problem.services)
    nodes = list(problem.nodes)
    rtt = np.array([[problem.rtt(n, m) for m in nodes] for n in nodes], dtype=np.float32)
    known = np.zeros_like(rtt)  # loss 0 and bandwidth unknown: the price is the RTT alone
    topology = DenseTopology.from_matrices(nodes=nodes, rtt_ms=rtt, bandwidth_mbps=known * np.nan, loss_ratio=known)
    planning = PlanningProblem(
        workloads=tuple(
            PlanWorkload(s, 1, problem.cpu_m[s], nodes=frozenset(problem.candidates(s)) if problem.allowed else None)
            for s in services
        ),
        edges=tuple(PlanEdge(a, b, calls=calls) for (a, b), calls in problem.edges.items()),
        nodes=tuple(nodes),
        free_cpu_m=tuple(problem.capacity_m[n] for n in nodes),
        topology=topology,
    )
    try:
        result = plan(planning, time_limit_s=time_limit_s, exact=True)
    except InfeasibleError as error:
        raise InfeasibleError(f"no optimal placement: {error}") from None
    return {s: result.placements[s][0] for s in services}


def random_placement(problem: PlacementProblem, rng: random.Random) -> Placement:
    """Each service on a uniformly random node that still has room for it (services in random order)."""
    free = dict(problem.capacity_m)
    placement: Placement = {}
    for service in rng.sample(list(problem.services), len(problem.services)):
        fitting = [n for n in problem.candidates(service) if free[n] >= problem.cpu_m[service]]
        if not fitting:
            raise InfeasibleError(f"{service} fits on no node")
        node = rng.choice(fitting)
        free[node] -= problem.cpu_m[service]
        placement[service] = node
    return placement
