"""Dependency-ordered release: which gated pods may have their gate removed.

Checks, with ReverseKahn: callees first along a chain; a star's hub waits for every spoke; pods already bound are
not "released"; a cycle does not deadlock; a dependency with no pods yet blocks for a grace period after the gated
pod's creation, then stops blocking (so pods created in any order still go callees first); ungated pods are left
alone. With KahnSort (the default): callers first; a star's spokes go together once the hub is placed; a callee
of two callers waits for both.
"""

from __future__ import annotations

import pytest

from netaware.core.appgroup import AppGroup, Dependency, SortingAlgorithm, Workload
from netaware.core.release import MemberPod, pods_to_release


def group(edges: dict[str, list[str]], algorithm: SortingAlgorithm = SortingAlgorithm.REVERSE_KAHN) -> AppGroup:
    return AppGroup(
        name="g",
        workloads=tuple(Workload(n, {"app": n}, tuple(Dependency(d) for d in ds)) for n, ds in edges.items()),
        sorting_algorithm=algorithm,
    )


NOW = 1000.0


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
