"""AppGroup validation and topological orders.

Checks: every validation error names the workload and the problem (unknown workload, duplicate names,
self-dependency, negative weights and limits, empty group); the four sorting algorithms on chain, star and
diamond graphs; cycles are ordered (each workload exactly once) instead of crashing; label matching.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netaware.core.appgroup import (
    AppGroup,
    AppGroupError,
    Dependency,
    SortingAlgorithm,
    Workload,
    topological_order,
)


def group(edges: dict[str, list[str]], algorithm: SortingAlgorithm = SortingAlgorithm.KAHN) -> AppGroup:
    return AppGroup(
        name="g",
        workloads=tuple(Workload(n, {"app": n}, tuple(Dependency(d) for d in ds)) for n, ds in edges.items()),
        sorting_algorithm=algorithm,
    )


@pytest.mark.parametrize(
    ("workloads", "message"),
    [
        pytest.param((), "needs at least one workload", id="an empty group is rejected"),
        pytest.param(
            (Workload("a", {}, (Dependency("ghost"),)),), "dependency 'ghost': unknown workload", id="unknown workload"
        ),
        pytest.param((Workload("a"), Workload("a")), "duplicate workload name 'a'", id="duplicate names"),
        pytest.param((Workload("a", {}, (Dependency("a"),)),), "cannot depend on itself", id="self-dependency"),
        pytest.param(
            (Workload("a", {}, (Dependency("b", weight=-1),)), Workload("b")),
            "weight must be a finite number >= 0",
            id="negative weight",
        ),
        pytest.param(
            (Workload("a", {}, (Dependency("b", max_latency_ms=-5),)), Workload("b")),
            "maxLatencyMs must be a finite number >= 0",
            id="negative latency limit",
        ),
        pytest.param(
            (Workload("a", {}, (Dependency("b"), Dependency("b"))), Workload("b")),
            "listed twice",
            id="a dependency listed twice",
        ),
    ],
)
def test_invalid_appgroups_are_rejected_with_a_reason(workloads: tuple[Workload, ...], message: str) -> None:
    with pytest.raises(AppGroupError, match=message):
        AppGroup(name="g", workloads=workloads)


CHAIN = {"a": ["b"], "b": ["c"], "c": ["d"], "d": []}
STAR = {"a": ["b1", "b2", "b3"], "b1": [], "b2": [], "b3": []}
DIAMOND = {"top": ["left", "right"], "left": ["bottom"], "right": ["bottom"], "bottom": []}


@pytest.mark.parametrize(
    ("edges", "algorithm", "expected"),
    [
        pytest.param(CHAIN, SortingAlgorithm.KAHN, ["a", "b", "c", "d"], id="chain, KahnSort: callers first"),
        pytest.param(
            CHAIN, SortingAlgorithm.REVERSE_KAHN, ["d", "c", "b", "a"], id="chain, ReverseKahn: callees first"
        ),
        pytest.param(CHAIN, SortingAlgorithm.TARJAN, ["a", "b", "c", "d"], id="chain, TarjanSort"),
        pytest.param(CHAIN, SortingAlgorithm.ALTERNATE_KAHN, ["a", "d", "b", "c"], id="chain, AlternateKahn"),
        # Upstream's KahnSort pops from a stack: of the spokes readied together, the last readied goes first.
        pytest.param(STAR, SortingAlgorithm.KAHN, ["a", "b3", "b2", "b1"], id="star, KahnSort"),
        pytest.param(STAR, SortingAlgorithm.REVERSE_KAHN, ["b1", "b2", "b3", "a"], id="star, ReverseKahn"),
        pytest.param(STAR, SortingAlgorithm.TARJAN, ["a", "b3", "b2", "b1"], id="star, TarjanSort"),
        pytest.param(STAR, SortingAlgorithm.REVERSE_TARJAN, ["b1", "b2", "b3", "a"], id="star, ReverseTarjan"),
        pytest.param(STAR, SortingAlgorithm.ALTERNATE_TARJAN, ["a", "b1", "b3", "b2"], id="star, AlternateTarjan"),
        pytest.param(DIAMOND, SortingAlgorithm.KAHN, ["top", "right", "left", "bottom"], id="diamond, KahnSort"),
        pytest.param(DIAMOND, SortingAlgorithm.TARJAN, ["top", "right", "left", "bottom"], id="diamond, TarjanSort"),
    ],
)
def test_topological_orders(edges: dict[str, list[str]], algorithm: SortingAlgorithm, expected: list[str]) -> None:
    assert topological_order(group(edges), algorithm) == expected


def test_the_groups_own_algorithm_is_the_default() -> None:
    assert topological_order(group(CHAIN, SortingAlgorithm.REVERSE_KAHN)) == ["d", "c", "b", "a"]


def test_a_cycle_is_ordered_as_one_unit_instead_of_crashing() -> None:
    # DeathStarBench: user <-> social-graph; frontend calls user; social-graph calls store
    edges = {"frontend": ["user"], "user": ["social-graph"], "social-graph": ["user", "store"], "store": []}
    for algorithm in SortingAlgorithm:
        order = topological_order(group(edges), algorithm)
        assert sorted(order) == sorted(edges), algorithm
    assert topological_order(group(edges)) == ["frontend", "user", "social-graph", "store"]


@given(
    st.integers(min_value=1, max_value=12).flatmap(
        lambda n: st.tuples(
            st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n)
        )
    ),
    st.sampled_from(list(SortingAlgorithm)),
)
def test_every_algorithm_returns_each_workload_once_on_any_graph(
    graph: tuple[int, list[tuple[int, int]]], algorithm: SortingAlgorithm
) -> None:
    n, raw_edges = graph
    edges: dict[str, list[str]] = {f"w{i}": [] for i in range(n)}
    for a, b in raw_edges:
        if a != b and f"w{b}" not in edges[f"w{a}"]:
            edges[f"w{a}"].append(f"w{b}")
    order = topological_order(group(edges), algorithm)
    assert sorted(order) == sorted(edges)
    if algorithm is SortingAlgorithm.KAHN:
        position = {w: i for i, w in enumerate(order)}
        g = group(edges).graph()
        import networkx as nx

        for a, b in g.edges:
            if not nx.has_path(g, b, a):  # outside cycles callers precede callees
                assert position[a] < position[b]


def test_label_selector_matching() -> None:
    g = group(CHAIN)
    assert g.workload_for_labels({"app": "b", "tier": "x"}) == "b"
    assert g.workload_for_labels({"app": "zzz"}) is None
    assert not Workload("empty").matches({"app": "a"})


def test_neighbour_weights_cover_callers_and_callees_summed_both_ways() -> None:
    group = AppGroup(
        name="g",
        workloads=(
            Workload("a", {"app": "a"}, (Dependency("b", 2.0),)),
            Workload("b", {"app": "b"}, (Dependency("c", 1.0), Dependency("a", 0.5))),
            Workload("c", {"app": "c"}),
        ),
    )
    assert group.neighbour_weights("b") == {"c": 1.0, "a": 2.5}
    assert group.neighbour_weights("c") == {"b": 1.0}
