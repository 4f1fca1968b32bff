"""The reference placements the experiments compare against.

Checks: the integer program finds the same cost as exhaustive search on small random instances with capacities;
it respects capacity and allowed nodes; random placements fit and follow the seed; an instance that cannot fit is
refused.
"""

from __future__ import annotations

import itertools
import random

import pytest

from netaware.core.placement import (
    InfeasibleError,
    PlacementProblem,
    network_cost,
    optimal_placement,
    random_placement,
)


def instance(seed: int) -> PlacementProblem:
    rng = random.Random(seed)
    services = [f"s{i}" for i in range(5)]
    nodes = ["n0", "n1", "n2"]
    edges = {(a, b): float(rng.randint(1, 3)) for a, b in itertools.combinations(services, 2) if rng.random() < 0.6}
    rtt = {(n, m): float(rng.randint(1, 40)) for n in nodes for m in nodes if n != m}
    return PlacementProblem(
        services=services,
        cpu_m={s: rng.choice([250, 500]) for s in services},
        edges=edges,
        nodes=nodes,
        capacity_m={n: 1000 for n in nodes},
        rtt_ms=rtt,
    )


def brute_force(problem: PlacementProblem) -> float:
    best = float("inf")
    for assignment in itertools.product(problem.nodes, repeat=len(problem.services)):
        placement = dict(zip(problem.services, assignment, strict=True))
        used = {n: sum(problem.cpu_m[s] for s, m in placement.items() if m == n) for n in problem.nodes}
        if all(used[n] <= problem.capacity_m[n] for n in problem.nodes):
            best = min(best, network_cost(problem, placement))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_integer_program_matches_exhaustive_search(seed: int) -> None:
    problem = instance(seed)
    placement = optimal_placement(problem)
    assert network_cost(problem, placement) == pytest.approx(brute_force(problem))
    for node in problem.nodes:
        assert sum(problem.cpu_m[s] for s, n in placement.items() if n == node) <= problem.capacity_m[node]


def test_allowed_nodes_are_respected() -> None:
    problem = instance(1)
    pinned = PlacementProblem(**{**problem.__dict__, "allowed": {"s0": ["n2"]}})
    assert optimal_placement(pinned)["s0"] == "n2"
    assert all(random_placement(pinned, random.Random(s))["s0"] == "n2" for s in range(5))


def test_random_placements_fit_and_follow_the_seed() -> None:
    problem = instance(2)
    first = random_placement(problem, random.Random(7))
    assert first == random_placement(problem, random.Random(7))
    for node in problem.nodes:
        assert sum(problem.cpu_m[s] for s, n in first.items() if n == node) <= problem.capacity_m[node]


def test_an_instance_that_cannot_fit_is_refused() -> None:
    problem = instance(3)
    tiny = PlacementProblem(**{**problem.__dict__, "capacity_m": {n: 100 for n in problem.nodes}})
    with pytest.raises(InfeasibleError):
        optimal_placement(tiny)
    with pytest.raises(InfeasibleError):
        random_placement(tiny, random.Random(0))
