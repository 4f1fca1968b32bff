"""The cost function of DESIGN.md, checked against values computed by hand.

Checks: link-cost normalisation (maxima, zero maxima, unknown metrics), co-location, replica averaging,
dependencies vs dependants (link direction), unplaced workloads, missing links and nodes (never cheaper than
measured), a one-node cluster, custom weights, the extender score spread, and the hard-limit filter.

Reference topology TRIANGLE (symmetric), maxRtt 40, maxBw 200, maxLoss 0.1, weights 0.5/0.3/0.2:
    linkCost(a,b) = 0.5*10/40 + 0.3*(1-100/200) + 0.2*0/0.1    = 0.125 + 0.15  + 0   = 0.275
    linkCost(a,c) = 0.5*40/40 + 0.3*(1-50/200)  + 0.2*0.1/0.1  = 0.5   + 0.225 + 0.2 = 0.925
    linkCost(b,c) = 0.5*20/40 + 0.3*(1-200/200) + 0.2*0.05/0.1 = 0.25  + 0     + 0.1 = 0.35
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from netaware.core.appgroup import AppGroup, CostWeights, Dependency, Workload
from netaware.core.costs import build_link_costs
from netaware.core.scoring import score_nodes, spread_extender_scores
from netaware.core.topology import LinkMetrics, Topology


def symmetric(pairs: dict[tuple[str, str], tuple[float, float | None, float]], nodes: tuple[str, ...] = ()) -> Topology:
    links = {}
    for (a, b), (rtt, bandwidth, loss) in pairs.items():
        links[(a, b)] = LinkMetrics(rtt_ms=rtt, bandwidth_mbps=bandwidth, loss_ratio=loss)
        links[(b, a)] = LinkMetrics(rtt_ms=rtt, bandwidth_mbps=bandwidth, loss_ratio=loss)
    return Topology.from_links(links, nodes=nodes)


TRIANGLE = symmetric({("a", "b"): (10, 100, 0.0), ("a", "c"): (40, 50, 0.1), ("b", "c"): (20, 200, 0.05)})
# a->b is fast, b->a is slow: dependency costs must read n->m and dependant costs m->n.
ASYMMETRIC = Topology.from_links(
    {
        ("a", "b"): LinkMetrics(rtt_ms=10, bandwidth_mbps=100, loss_ratio=0.0),
        ("b", "a"): LinkMetrics(rtt_ms=40, bandwidth_mbps=100, loss_ratio=0.0),
    }
)
# Same as TRIANGLE but the a<->b link was never measured.
MISSING_AB = Topology.from_links({k: v for k, v in TRIANGLE.links.items() if set(k) != {"a", "b"}}, nodes="abc")


def shop(**dependency: float) -> AppGroup:
    return AppGroup(
        name="shop",
        workloads=(
            Workload("frontend", {"app": "frontend"}, (Dependency("cart", **dependency),)),
            Workload("cart", {"app": "cart"}),
        ),
    )


@dataclass
class Case:
    name: str
    topology: Topology
    workload: str
    placements: dict[str, list[str]]
    expected_total: dict[str, float]
    candidates: tuple[str, ...] = ("a", "b", "c")
    appgroup: AppGroup = field(default_factory=shop)
    weights: CostWeights = field(default_factory=CostWeights)
    expected_dependency: dict[str, float] | None = None
    expected_dependant: dict[str, float] | None = None


CASES = [
    Case(
        "co-location costs nothing, other nodes pay linkCost to the one cart replica",
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"a": 0.275, "b": 0.0, "c": 0.35},
    ),
    Case(
        "several replicas are averaged, each replica counted once",
        TRIANGLE,
        "frontend",
        {"cart": ["b", "c"]},
        {"a": (0.275 + 0.925) / 2, "b": 0.35 / 2, "c": 0.35 / 2},
    ),
    Case(
        "two replicas on one node weigh twice",
        TRIANGLE,
        "frontend",
        {"cart": ["b", "b", "c"]},
        {"a": (0.275 * 2 + 0.925) / 3, "b": 0.35 / 3, "c": 0.35 * 2 / 3},
    ),
    Case(
        "dependency cost reads links from the candidate to the callee (b->a is the slow one)",
        ASYMMETRIC,
        "frontend",
        {"cart": ["a"]},
        # maxRtt 40, maxBw 100 (bandwidth term 0), maxLoss 0 (term 0): linkCost(b,a) = 0.5*40/40
        {"a": 0.0, "b": 0.5},
        candidates=("a", "b"),
        expected_dependency={"a": 0.0, "b": 0.5},
        expected_dependant={"a": 0.0, "b": 0.0},
    ),
    Case(
        "dependant cost reads links from the caller to the candidate (a->b is the fast one)",
        ASYMMETRIC,
        "cart",
        {"frontend": ["a"]},
        {"a": 0.0, "b": 0.125},  # linkCost(a,b) = 0.5*10/40
        candidates=("a", "b"),
        expected_dependency={"a": 0.0, "b": 0.0},
        expected_dependant={"a": 0.0, "b": 0.125},
    ),
    Case(
        "dependency weight multiplies its cost",
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"a": 2.5 * 0.275, "b": 0.0, "c": 2.5 * 0.35},
        appgroup=shop(weight=2.5),
    ),
    Case(
        "a missing link costs the worst (sum of weights), never less than any measured link",
        MISSING_AB,
        "frontend",
        {"cart": ["b"]},
        # maxima from the remaining pairs: maxRtt 40, maxBw 200, maxLoss 0.1; linkCost(c,b) is still 0.35
        {"a": 1.0, "b": 0.0, "c": 0.35},
    ),
    Case(
        "no topology at all: every non-co-located candidate pays the worst cost",
        Topology(nodes=("a", "b", "c")),
        "frontend",
        {"cart": ["b"]},
        {"a": 1.0, "b": 0.0, "c": 1.0},
    ),
    Case(
        "a candidate the topology does not know pays the worst cost",
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"a": 0.275, "x": 1.0},
        candidates=("a", "x"),
    ),
    Case(
        "a replica on a node the topology does not know costs the worst, unless co-located",
        TRIANGLE,
        "frontend",
        {"cart": ["b", "x"]},
        {"a": (0.275 + 1.0) / 2, "b": (0.0 + 1.0) / 2, "x": (1.0 + 0.0) / 2},
        candidates=("a", "b", "x"),
    ),
    Case(
        "zero maxima make their terms 0 (all links equal, nothing to tell apart)",
        symmetric({("a", "b"): (0.0, 0.0, 0.0), ("a", "c"): (0.0, 0.0, 0.0), ("b", "c"): (0.0, 0.0, 0.0)}),
        "frontend",
        {"cart": ["b"]},
        {"a": 0.0, "b": 0.0, "c": 0.0},
    ),
    Case(
        "bandwidth never measured: its term is the worst for every remote pair, 0 when co-located",
        symmetric({("a", "b"): (10, None, 0.0), ("a", "c"): (40, None, 0.0), ("b", "c"): (20, None, 0.0)}),
        "frontend",
        {"cart": ["b"]},
        # maxRtt 40, loss max 0 -> term 0; bandwidth unknown -> 0.3*1
        {"a": 0.5 * 10 / 40 + 0.3, "b": 0.0, "c": 0.5 * 20 / 40 + 0.3},
    ),
    Case(
        "one node: co-located with everything, cost 0",
        Topology(nodes=("a",)),
        "frontend",
        {"cart": ["a"]},
        {"a": 0.0},
        candidates=("a",),
    ),
    Case(
        "custom weights: latency only",
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"a": 10 / 40, "b": 0.0, "c": 20 / 40},
        weights=CostWeights(latency=1.0, bandwidth=0.0, loss=0.0),
    ),
    Case(
        "dependency and dependant costs add up (middle of a chain)",
        TRIANGLE,
        "b-svc",
        {"a-svc": ["a"], "c-svc": ["c"]},
        # b-svc calls c-svc (links n->c) and is called by a-svc (links a->n)
        {"a": 0.925 + 0.0, "b": 0.35 + 0.275, "c": 0.0 + 0.925},
        appgroup=AppGroup(
            name="chain",
            workloads=(
                Workload("a-svc", {"app": "a"}, (Dependency("b-svc"),)),
                Workload("b-svc", {"app": "b"}, (Dependency("c-svc"),)),
                Workload("c-svc", {"app": "c"}),
            ),
        ),
        expected_dependency={"a": 0.925, "b": 0.35, "c": 0.0},
        expected_dependant={"a": 0.0, "b": 0.275, "c": 0.925},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cost_function_matches_hand_computed_values(case: Case) -> None:
    link_costs = build_link_costs(case.topology.dense(), case.weights)
    scores = score_nodes(
        link_costs=link_costs,
        appgroup=case.appgroup,
        workload=case.workload,
        placements=case.placements,
        candidates=list(case.candidates),
    )
    by_node = {s.node: s for s in scores}
    assert set(by_node) == set(case.candidates)
    for node, expected in case.expected_total.items():
        assert by_node[node].total_cost == pytest.approx(expected, abs=1e-6), node
        assert by_node[node].score == pytest.approx(100 / (1 + expected), abs=1e-4), node
    for node, expected in (case.expected_dependency or {}).items():
        assert by_node[node].dependency_cost == pytest.approx(expected, abs=1e-6), node
    for node, expected in (case.expected_dependant or {}).items():
        assert by_node[node].dependant_cost == pytest.approx(expected, abs=1e-6), node


def test_link_cost_matrix_maxima_and_diagonal() -> None:
    costs = build_link_costs(TRIANGLE.dense())
    assert (costs.max_rtt_ms, costs.max_bandwidth_mbps, costs.max_loss_ratio) == pytest.approx((40, 200, 0.1))
    index = costs.topology.index
    assert costs.cost[index["a"], index["b"]] == pytest.approx(0.275, abs=1e-6)
    assert costs.cost[index["a"], index["c"]] == pytest.approx(0.925, abs=1e-6)
    assert np.all(np.diag(costs.cost) == 0)
    assert np.array_equal(costs.cost.T, costs.cost_by_destination)


def test_results_are_sorted_best_first_and_extender_scores_spread_over_0_to_10() -> None:
    scores = score_nodes(
        link_costs=build_link_costs(TRIANGLE.dense()),
        appgroup=shop(),
        workload="frontend",
        placements={"cart": ["b"]},
        candidates=["a", "b", "c"],
    )
    assert [s.node for s in scores] == ["b", "a", "c"]
    # scores 100, 78.43, 74.07: spread (78.43-74.07)/(100-74.07)*10 = 1.68 -> 2
    assert [s.extender_score for s in scores] == [10, 2, 0]


@pytest.mark.parametrize(
    ("scores", "eligible", "expected"),
    [
        pytest.param([50.0, 50.0, 50.0], None, [0, 0, 0], id="equal scores add nothing (all 0)"),
        pytest.param([100.0, 75.0, 50.0], None, [10, 5, 0], id="linear between worst and best"),
        pytest.param([100.0, 75.0, 50.0], [True, True, False], [10, 0, 0], id="filtered nodes get 0, spread over rest"),
        pytest.param([90.0, 89.0], None, [10, 0], id="a small difference still decides"),
        pytest.param([], None, [], id="no candidates"),
    ],
)
def test_spread_extender_scores(scores: list[float], eligible: list[bool] | None, expected: list[int]) -> None:
    mask = None if eligible is None else np.array(eligible)
    assert spread_extender_scores(np.array(scores), mask).tolist() == expected


@dataclass
class LimitCase:
    name: str
    dependency: dict[str, float]
    topology: Topology
    workload: str
    placements: dict[str, list[str]]
    expected_failed: dict[str, str]  # node -> substring of the reason


LIMIT_CASES = [
    LimitCase(
        "maxLatencyMs keeps the far node out, co-location always passes",
        {"max_latency_ms": 15},
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"c": "RTT 20.0 ms > maxLatencyMs 15"},
    ),
    LimitCase(
        "minBandwidthMbps keeps the thin link out",
        {"min_bandwidth_mbps": 150},
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"a": "bandwidth 100.0 Mbit/s < minBandwidthMbps 150"},
    ),
    LimitCase(
        "an unmeasured link cannot prove a limit, so it fails",
        {"max_latency_ms": 100},
        MISSING_AB,
        "frontend",
        {"cart": ["b"]},
        {"a": "no RTT measurement"},
    ),
    LimitCase(
        "the caller's limit also holds when the callee is scheduled (link caller->candidate)",
        {"max_latency_ms": 15},
        TRIANGLE,
        "cart",
        {"frontend": ["a"]},
        {"c": "link a->c RTT 40.0 ms"},
    ),
    LimitCase(
        "nothing placed, nothing to break",
        {"max_latency_ms": 1},
        TRIANGLE,
        "frontend",
        {},
        {},
    ),
    LimitCase(
        "maxNetworkCost bounds linkCost",
        {"max_network_cost": 0.3},
        TRIANGLE,
        "frontend",
        {"cart": ["b"]},
        {"c": "network cost 0.350 > maxNetworkCost 0.3"},
    ),
]


@pytest.mark.parametrize("case", LIMIT_CASES, ids=[c.name for c in LIMIT_CASES])
def test_hard_limits_filter_with_a_reason(case: LimitCase) -> None:
    scores = score_nodes(
        link_costs=build_link_costs(case.topology.dense()),
        appgroup=shop(**case.dependency),
        workload=case.workload,
        placements=case.placements,
        candidates=list(case.topology.nodes),
    )
    failed = {s.node: s.filtered for s in scores if s.filtered}
    assert set(failed) == set(case.expected_failed)
    for node, reason in case.expected_failed.items():
        assert reason in (failed[node] or ""), failed[node]
    # filtered nodes come last and get extender score 0
    assert all(s.extender_score == 0 for s in scores if s.filtered)
    assert [s.filtered is not None for s in scores] == sorted(s.filtered is not None for s in scores)


def test_a_small_candidate_subset_scores_the_same_as_within_all_nodes() -> None:
    """Two code paths (column gather for small subsets, whole rows otherwise) must agree."""
    rng = np.random.default_rng(4)
    names = [f"n{i}" for i in range(60)]
    from netaware.core.topology import DenseTopology

    dense = DenseTopology.from_matrices(
        nodes=names,
        rtt_ms=rng.uniform(1, 50, (60, 60)),
        bandwidth_mbps=rng.uniform(10, 1000, (60, 60)),
        loss_ratio=rng.uniform(0, 0.05, (60, 60)),
    )
    costs = build_link_costs(dense)
    placements = {"cart": ["n3", "n3", "n17", "n40"]}
    everything = {s.node: s.total_cost for s in score_nodes(
        link_costs=costs, appgroup=shop(), workload="frontend", placements=placements, candidates=names
    )}  # fmt: skip
    subset = ["n5", "n3", "n59", "ghost"]
    few = {s.node: s.total_cost for s in score_nodes(
        link_costs=costs, appgroup=shop(), workload="frontend", placements=placements, candidates=subset
    )}  # fmt: skip
    for node in ("n5", "n3", "n59"):
        assert few[node] == pytest.approx(everything[node], abs=1e-6)
    assert few["ghost"] == pytest.approx(1.0)


def test_with_no_neighbour_placed_the_most_central_node_wins() -> None:
    """Nothing of the pod's neighbourhood is placed: the formula rates every node 0, so the start cost takes over:
    each node's mean link cost to and from the others (computed here by hand from the cost matrix)."""
    link_costs = build_link_costs(TRIANGLE.dense())
    cost = link_costs.cost
    nodes = list(TRIANGLE.nodes)
    expected = {
        n: sum(float(cost[i, j]) + float(cost[j, i]) for j in range(len(nodes)) if j != i) / (2 * (len(nodes) - 1))
        for i, n in enumerate(nodes)
    }
    scores = {
        s.node: s
        for s in score_nodes(
            link_costs=link_costs, appgroup=shop(), workload="frontend", placements={}, candidates=nodes
        )
    }
    for node, value in expected.items():
        assert scores[node].dependency_cost == scores[node].dependant_cost == 0.0
        assert scores[node].total_cost == pytest.approx(value, abs=1e-6)
    central = min(expected, key=expected.__getitem__)
    assert scores[central].extender_score == 10
    assert len(set(expected.values())) > 1, "the triangle should not be symmetric, or this test proves nothing"


ZONES = symmetric({("a", "b"): (20, 200, 0.0), ("a", "c"): (40, 100, 0.0), ("b", "c"): (30, 200, 0.0)})
"""One node per zone, as three-zones' RTTs: b is the centre."""


def test_routed_spreads_a_callee_to_where_its_callers_lack_a_near_replica_where_the_mean_packs_it() -> None:
    """Frontends in every zone, one catalog replica already in the central zone b. The replica mean prices the
    second replica by its mean link to all frontends and packs it in b again; `routed` prices what each frontend's
    router will pay (mostly its nearest replica), so the second goes where a frontend has none near: c, whose
    nearest is 30 ms away (a's is 20)."""
    group = shop()
    placements = {"frontend": ["a", "b", "c"], "cart": ["b"]}
    scores = {strategy: score_nodes(link_costs=build_link_costs(ZONES.dense()), appgroup=group, workload="cart",
                                    placements=placements, candidates=["a", "b", "c"], strategy=strategy)
              for strategy in ("seed", "routed")}  # fmt: skip
    assert scores["seed"][0].node == "b"
    assert scores["routed"][0].node == "c" and scores["routed"][-1].node == "b"

    # Nothing placed of its own: `routed` prices a first replica as the mean does (it would be every call's target).
    def first_replica(strategy: str) -> dict[str, float]:
        rows = score_nodes(link_costs=build_link_costs(ZONES.dense()), appgroup=group, workload="cart",
                           placements={"frontend": ["a", "b", "c"]}, candidates="abc", strategy=strategy)  # fmt: skip
        return {s.node: s.total_cost for s in rows}

    assert first_replica("routed") == pytest.approx(first_replica("seed"))


def test_routed_prices_a_caller_at_mostly_its_nearest_replica() -> None:
    """A frontend candidate over cart replicas on a and c: 0.8 x the cheaper link + 0.2 x their mean, by hand."""
    from netaware.core.scoring import ROUTED_NEAR_SHARE

    link_costs = build_link_costs(ZONES.dense())
    index = {n: i for i, n in enumerate(ZONES.dense().nodes)}
    rows = {s.node: s for s in score_nodes(link_costs=link_costs, appgroup=shop(), workload="frontend",
            placements={"cart": ["a", "c"]}, candidates=["a", "b", "c", "ghost"], strategy="routed")}  # fmt: skip
    for node in ("a", "b", "c"):
        to_replicas = [float(link_costs.cost[index[node], index[m]]) if m != node else 0.0 for m in ("a", "c")]
        expected = ROUTED_NEAR_SHARE * min(to_replicas) + (1 - ROUTED_NEAR_SHARE) * sum(to_replicas) / 2
        assert rows[node].dependency_cost == pytest.approx(expected, abs=1e-6)
    # A node the topology does not know is as far as the worst link from every replica: never cheaper than measured.
    assert rows["ghost"].dependency_cost == pytest.approx(link_costs.worst_link_cost)
    assert all(rows["ghost"].dependency_cost > rows[n].dependency_cost for n in "abc")
