"""Dependency-ordered release: which gated pods may have their gate removed.

Checks, with ReverseKahn: callees first along a chain; a star's hub waits for every spoke; pods already bound are
not "released"; a cycle does not deadlock; a dependency with no pods yet blocks for a grace period after the gated
pod's creation, then stops blocking (so pods created in any order still go callees first); ungated pods are left
alone. With KahnSort (the default): callers first; a star's spokes go together once the hub is placed; a callee
of two callers waits for both. Under a plan: waiting pods take the plan's open slots; a pod narrowed to its node
keeps every requirement it had (Kubernetes accepts only additions).
"""

from __future__ import annotations

from typing import Any

import pytest

from netaware.core.appgroup import AppGroup, Dependency, SortingAlgorithm, Workload
from netaware.core.nodeselection import narrowed_to_node, pod_fits_node, tolerates, widened_from_node
from netaware.core.release import MemberPod, assign_planned_nodes, pods_to_release


def group(edges: dict[str, list[str]], algorithm: SortingAlgorithm = SortingAlgorithm.REVERSE_KAHN) -> AppGroup:
    return AppGroup(
        name="g",
        workloads=tuple(Workload(n, {"app": n}, tuple(Dependency(d) for d in ds)) for n, ds in edges.items()),
        sorting_algorithm=algorithm,
    )


NOW = 1000.0
PIN = {"key": "metadata.name", "operator": "In", "values": ["n1"]}
ZONE_A = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
NOT_N9 = {"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}


def pod(
    workload: str, *, gated: bool = True, bound: bool = False, index: int = 0, created: float | None = NOW
) -> MemberPod:
    return MemberPod(
        key=f"default/{workload}-{index}", workload=workload, gated=gated, bound=bound, created_at_s=created
    )


CHAIN = {"a": ["b"], "b": ["c"], "c": []}


@pytest.mark.parametrize(
    ("edges", "pods", "expected"),
    [
        pytest.param(CHAIN, [pod("a"), pod("b"), pod("c")], ["default/c-0"], id="chain: only the leaf goes first"),
        pytest.param(
            CHAIN, [pod("a"), pod("b"), pod("c", gated=False, bound=True)], ["default/b-0"], id="chain: then the middle"
        ),
        pytest.param(
            CHAIN,
            [pod("a"), pod("b"), pod("c", gated=False, bound=True), pod("c", gated=False, index=1)],
            [],
            id="chain: a dependency with an unbound pod still blocks",
        ),
        pytest.param(
            {"hub": ["s1", "s2"], "s1": [], "s2": []},
            [pod("hub"), pod("s1", gated=False, bound=True), pod("s2")],
            ["default/s2-0"],
            id="star: the hub waits for every spoke",
        ),
        pytest.param(
            {"x": ["y"], "y": ["x", "z"], "z": []},
            [pod("x"), pod("y"), pod("z", gated=False, bound=True)],
            ["default/y-0", "default/x-0"],  # y first: it has traffic to the placed z
            id="cycle: members do not wait for each other",
        ),
        pytest.param(
            CHAIN, [pod("a"), pod("b")], [], id="a dependency with no pods yet blocks within the grace period"
        ),
        pytest.param(
            CHAIN,
            [pod("a", created=NOW - 60), pod("b", created=NOW - 60)],
            ["default/b-0"],
            id="a dependency still without pods after the grace period stops blocking",
        ),
        pytest.param(
            CHAIN, [pod("b", created=None)], [], id="unknown creation time: an absent dependency keeps blocking"
        ),
        pytest.param(CHAIN, [pod("c", gated=False)], [], id="ungated pods are left alone"),
    ],
)
def test_pods_to_release(edges: dict[str, list[str]], pods: list[MemberPod], expected: list[str]) -> None:
    assert pods_to_release(group(edges), pods, now_s=NOW, absent_grace_s=10) == expected


STAR = {"hub": ["s1", "s2"], "s1": [], "s2": []}
CROSS = {"a": ["b"], "c": ["b"], "b": []}


@pytest.mark.parametrize(
    ("edges", "pods", "expected"),
    [
        pytest.param(CHAIN, [pod("a"), pod("b"), pod("c")], ["default/a-0"], id="chain: the entry goes first"),
        pytest.param(
            CHAIN, [pod("a", gated=False, bound=True), pod("b"), pod("c")], ["default/b-0"], id="chain: then its callee"
        ),
        pytest.param(
            STAR,
            [pod("hub", gated=False, bound=True), pod("s1"), pod("s2")],
            ["default/s2-0", "default/s1-0"],  # in KahnSort's order: the last readied first
            id="star: the spokes go together once the hub is placed",
        ),
        pytest.param(
            CROSS,
            [pod("a", gated=False, bound=True), pod("c"), pod("b")],
            ["default/c-0"],
            id="cross: a callee waits for both callers",
        ),
    ],
)
def test_kahn_order_releases_callers_first(
    edges: dict[str, list[str]], pods: list[MemberPod], expected: list[str]
) -> None:
    assert pods_to_release(group(edges, SortingAlgorithm.KAHN), pods, now_s=NOW, absent_grace_s=10) == expected


def test_kahn_sort_is_the_default_order() -> None:
    default = AppGroup(
        name="g", workloads=tuple(Workload(n, {"app": n}, tuple(Dependency(d) for d in ds)) for n, ds in CHAIN.items())
    )
    assert pods_to_release(default, [pod("a"), pod("b"), pod("c")], now_s=NOW) == ["default/a-0"]


def test_heavier_traffic_to_placed_neighbours_goes_first() -> None:
    weighted = AppGroup(
        name="g",
        workloads=(
            Workload(
                "hub", {"app": "hub"}, (Dependency("light", 1.0), Dependency("heavy", 5.0), Dependency("mid", 2.0))
            ),
            Workload("light", {"app": "light"}),
            Workload("heavy", {"app": "heavy"}),
            Workload("mid", {"app": "mid"}),
        ),
    )
    pods = [pod("hub", gated=False, bound=True), pod("light"), pod("heavy"), pod("mid")]
    assert pods_to_release(weighted, pods, now_s=NOW) == ["default/heavy-0", "default/mid-0", "default/light-0"]


def test_one_replica_at_a_time_releases_a_workload_pod_by_pod_and_an_unbound_sibling_holds_the_rest_for_a_while() -> (
    None
):
    """For a strategy that prices a replica by where its siblings run: one pod of each workload per pass, the next
    once the released one is bound, or once it has been unbound for the sibling grace (it may never fit)."""
    hub = group({"front": ["back"], "back": []}, SortingAlgorithm.KAHN)
    front = pod("front", gated=False, bound=True)
    backs = [pod("back", index=i) for i in range(3)]
    together = pods_to_release(hub, [front, *backs], now_s=NOW)
    assert together == ["default/back-0", "default/back-1", "default/back-2"]  # by default: all at once
    assert pods_to_release(hub, [front, *backs], now_s=NOW, one_replica_at_a_time=True) == ["default/back-0"]
    released = MemberPod("default/back-0", "back", gated=False, bound=False, created_at_s=NOW, released_at_s=NOW)
    waiting = [front, released, *backs[1:]]
    assert pods_to_release(hub, waiting, now_s=NOW + 1, one_replica_at_a_time=True) == []
    bound = MemberPod("default/back-0", "back", gated=False, bound=True, created_at_s=NOW, released_at_s=NOW)
    assert pods_to_release(hub, [front, bound, *backs[1:]], now_s=NOW + 1, one_replica_at_a_time=True) == [
        "default/back-1"
    ]
    # An unbound sibling past the grace (unschedulable, say) holds nobody; nor does one this controller did not release.
    assert pods_to_release(hub, waiting, now_s=NOW + 6, one_replica_at_a_time=True) == ["default/back-1"]
    unknown = MemberPod("default/back-0", "back", gated=False, bound=False, created_at_s=NOW)
    assert pods_to_release(hub, [front, unknown, *backs[1:]], now_s=NOW + 1, one_replica_at_a_time=True) == [
        "default/back-1"
    ]


def test_planned_nodes_go_to_waiting_pods_around_the_replicas_that_hold_one() -> None:
    """A node planned twice takes two pods; a slot a running replica holds is not handed out again; a pod the plan
    has no room for is left out (the controller then releases it without a node)."""
    planned = {"web": ["n1", "n1", "n2"], "db": ["n3"]}
    held = {"web": ["n1"], "db": ["n3"]}
    waiting = [("ns/web-a", "web"), ("ns/web-b", "web"), ("ns/web-c", "web"), ("ns/db-a", "db")]
    assert assign_planned_nodes(planned, held, waiting) == {"ns/web-a": "n1", "ns/web-b": "n2"}


@pytest.mark.parametrize(
    ("affinity", "expected_terms"),
    [
        (None, [{"matchFields": [PIN]}]),
        (
            {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [ZONE_A]}, {"matchExpressions": [ZONE_A], "matchFields": [NOT_N9]}, {}]}}},
            [{"matchExpressions": [ZONE_A], "matchFields": [PIN]},
             {"matchExpressions": [ZONE_A], "matchFields": [NOT_N9, PIN]}, {}],
        ),
    ],
)  # fmt: skip
def test_narrowing_a_gated_pod_to_its_node_only_adds_requirements(
    affinity: dict[str, Any] | None, expected_terms: list[dict[str, Any]]
) -> None:
    """Kubernetes accepts a gated pod's node affinity change only as additions to each existing term (KEP-3838); the
    narrowed pod fits its planned node and no other, and its preferred terms and pod affinity stay."""
    spec: dict[str, Any] = {"nodeSelector": {"disk": "ssd"}}
    if affinity:
        spec["affinity"] = {**affinity, "podAffinity": {"x": 1}}
    narrowed = narrowed_to_node(spec, "n1")
    terms = narrowed["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == expected_terms
    if affinity:
        assert narrowed["podAffinity"] == {"x": 1}
    pinned = {**spec, "affinity": narrowed}
    labels = {"topology.kubernetes.io/zone": "a", "disk": "ssd"}
    assert pod_fits_node(pinned, "n1", labels)
    assert not pod_fits_node(pinned, "n2", labels)
    assert spec.get("affinity") == ({**affinity, "podAffinity": {"x": 1}} if affinity else None)  # not mutated


@pytest.mark.parametrize(
    ("tolerations", "taints", "expected"),
    [
        ([], [], True),
        ([], [{"key": "k", "value": "v", "effect": "NoSchedule"}], False),
        ([], [{"key": "k", "effect": "PreferNoSchedule"}], True),  # only lowers a node's score
        (
            [{"key": "k", "value": "v", "effect": "NoSchedule"}],
            [{"key": "k", "value": "v", "effect": "NoSchedule"}],
            True,
        ),
        ([{"key": "k", "value": "w"}], [{"key": "k", "value": "v", "effect": "NoSchedule"}], False),
        ([{"key": "k", "operator": "Exists"}], [{"key": "k", "value": "v", "effect": "NoExecute"}], True),
        ([{"operator": "Exists"}], [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}], True),
        ([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], [{"key": "k", "effect": "NoSchedule"}], False),
    ],
)
def test_tolerations_as_kube_scheduler_reads_them(
    tolerations: list[dict[str, str]], taints: list[dict[str, str]], expected: bool
) -> None:
    assert tolerates(tolerations, taints) is expected


@pytest.mark.parametrize(
    "affinity",
    [
        None,
        {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [ZONE_A]}, {"matchExpressions": [ZONE_A], "matchFields": [NOT_N9]}]}},
         "podAffinity": {"x": 1}},
    ],
)  # fmt: skip
def test_widening_undoes_the_narrowing_to_a_planned_node(affinity: dict[str, Any] | None) -> None:
    """Re-planning a narrowed pod on drift starts from what its own spec allows."""
    spec: dict[str, Any] = {"affinity": affinity} if affinity else {}
    narrowed = {**spec, "affinity": narrowed_to_node(spec, "n1")}
    widened = widened_from_node(narrowed, "n1")
    labels = {"topology.kubernetes.io/zone": "a"}
    for node in ("n1", "n2", "n9"):
        assert pod_fits_node({**spec, "affinity": widened}, node, labels) == pod_fits_node(spec, node, labels), node
    if affinity:
        assert widened == affinity
