"""Whole-workload placements to compare the schedulers against: the optimum (integer programming) and random.

The problem: place one pod per service on nodes with CPU capacity, so that the traffic-weighted network latency

    cost(placement) = sum over call edges (a, b):  calls(a, b) * rtt(node(a), node(b))      (rtt(n, n) = 0)

is smallest. With one sequential call per edge use, this is the network part of one request's end-to-end latency, so
the optimum is the placement a perfect scheduler would find for the experiments' figure of merit.

The integer program linearises the product of two assignments per edge and node pair (y >= x_an + x_bm - 1), which
is exact because y has a positive cost; it is solved by HiGHS (highspy) through pulp.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pulp

Placement = dict[str, str]
"""service -> node"""


class InfeasibleError(ValueError):
    """The services do not fit on the nodes."""


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


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:  # noqa: PTH123 - a raw descriptor is needed for dup2
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def optimal_placement(problem: PlacementProblem, *, time_limit_s: float = 60.0) -> Placement:
    model = pulp.LpProblem("placement", pulp.LpMinimize)
    x = {
        (s, n): model.add_variable(f"x_{i}_{j}", cat="Binary")
        for i, s in enumerate(problem.services)
        for j, n in enumerate(problem.nodes)
        if n in problem.candidates(s)
    }
    y = {}
    for e, (a, b) in enumerate(problem.edges):
        for n in problem.candidates(a):
            for m in problem.candidates(b):
                if n != m:
                    y[(a, b, n, m)] = model.add_variable(f"y_{e}_{problem.nodes.index(n)}_{problem.nodes.index(m)}", 0)
    model += pulp.lpSum(problem.edges[(a, b)] * problem.rtt(n, m) * var for (a, b, n, m), var in y.items())
    for s in problem.services:
        model += pulp.lpSum(x[(s, n)] for n in problem.candidates(s)) == 1
    for n in problem.nodes:
        model += (
            pulp.lpSum(problem.cpu_m[s] * x[(s, n)] for s in problem.services if (s, n) in x) <= problem.capacity_m[n]
        )
    for (a, b, n, m), var in y.items():
        model += var >= x[(a, n)] + x[(b, m)] - 1
    with _quiet_stdout():  # highspy prints its banner to fd 1 even with msg=False, into the user's table
        status = model.solve(pulp.HiGHS(msg=False, timeLimit=time_limit_s))
    if pulp.LpStatus[status] != "Optimal":
        raise InfeasibleError(f"no optimal placement: solver status {pulp.LpStatus[status]}")
    return {s: n for (s, n), var in x.items() if var.value() is not None and var.value() > 0.5}


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
