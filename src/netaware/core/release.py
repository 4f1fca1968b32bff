"""Dependency-ordered release of an AppGroup's pods (the rule behind the `netaware.io/dependency-order` gate).

The AppGroup's `topologySortingAlgorithm` orders its workloads; a gated pod of workload w may be released (its
scheduling gate removed) when every graph neighbour of w (a workload w calls or that calls w) that comes before w in
that order has at least one pod and all of that workload's pods are bound to nodes. So with KahnSort (the default,
as in scheduler-plugins) callers go first: the entry service is placed, then what it calls next to it, and so on
outwards, so the services with the most traffic are placed while there is still room near their peers and the
leaves are the ones that spill over. With ReverseKahn callees go first (useful when the leaves are pinned, say a
database on its storage nodes). Either way the cost function sees where a pod's already-placed neighbours run.

Under a strategy that prices a replica by where its siblings run (`routed`), a workload's pods go one at a time: a
pod waits while a sibling released less than `sibling_grace_s` ago is not bound yet. Released together, the
replicas were scored at once, none saw where the others went, and they packed where one replica was best.

Under `plan` the group is not released in this order: the AppGroup controller plans it whole and narrows each
gated pod to a node of the plan (`assign_planned_nodes`; extender/releasing.py).

Two exceptions keep this from deadlocking:
- dependencies inside the same cycle (strongly connected component) do not wait for each other;
- a dependency with no pods at all blocks only for `absent_grace_s` after the gated pod was created: long enough
  for pods created together (a Deployment, `kubectl apply` of a whole app) to appear in any order, short enough
  that a dependency that is not deployed cannot hold its callers forever.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from netaware.core.appgroup import AppGroup, topological_order

DEPENDENCY_ORDER_GATE = "netaware.io/dependency-order"
# How long a gated pod waits for a dependency that has no pods yet (pods created together appear within seconds).
ABSENT_DEPENDENCY_GRACE_S = 10.0
# How long a pod released one at a time waits for its released sibling to be bound (binding takes well under a
# second; an unschedulable sibling must not hold the rest).
SIBLING_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class MemberPod:
    key: str
    """namespace/name"""
    workload: str
    gated: bool
    """Carries the dependency-order gate."""
    bound: bool
    created_at_s: float | None = None
    """Unix time the pod was created; None: unknown (then an absent dependency blocks until it appears)."""
    released_at_s: float | None = None
    """Unix time its gate was removed by the controller that asks; None: not by it, or not yet."""


def pods_to_release(
    group: AppGroup,
    pods: Sequence[MemberPod],
    *,
    now_s: float,
    absent_grace_s: float = ABSENT_DEPENDENCY_GRACE_S,
    one_replica_at_a_time: bool = False,
    sibling_grace_s: float = SIBLING_GRACE_S,
) -> list[str]:
    """Keys of gated pods whose earlier neighbours are all placed (or absent past the grace period): heaviest traffic
    to those neighbours first, then in the AppGroup's order, then in the order given. `one_replica_at_a_time`: at
    most one pod per workload, and none while a sibling released within `sibling_grace_s` is unbound."""
    graph = group.graph()
    component_of: dict[str, int] = {}
    for index, members in enumerate(nx.strongly_connected_components(graph)):
        for member in members:
            component_of[member] = index
    by_workload: dict[str, list[MemberPod]] = defaultdict(list)
    for pod in pods:
        by_workload[pod.workload].append(pod)
    position = {name: i for i, name in enumerate(topological_order(group))}
    dependencies = {
        name: sorted(
            (neighbour for neighbour in set(graph.predecessors(name)) | set(graph.successors(name))
             if component_of[neighbour] != component_of[name] and position[neighbour] < position[name]),
            key=position.__getitem__,
        )
        for name in group.workload_names
    }  # fmt: skip

    def satisfied(dependency: str, waiting: MemberPod) -> bool:
        members = by_workload.get(dependency, [])
        if members:
            return all(p.bound for p in members)
        return waiting.created_at_s is not None and now_s - waiting.created_at_s >= absent_grace_s

    releasable = [
        p for p in pods
        if p.gated and p.workload in dependencies and all(satisfied(d, p) for d in dependencies[p.workload])
    ]  # fmt: skip

    if one_replica_at_a_time:

        def scheduling(workload: str) -> bool:
            return any(
                not p.gated
                and not p.bound
                and p.released_at_s is not None
                and now_s - p.released_at_s < sibling_grace_s
                for p in by_workload[workload]
            )

        first = {}
        for p in releasable:
            if p.workload not in first and not scheduling(p.workload):
                first[p.workload] = p
        releasable = list(first.values())

    def pull(workload: str) -> float:
        """Traffic weight between the workload and the placed neighbours it waited for."""
        return sum(
            float(graph.edges[a, b]["weight"])
            for neighbour in dependencies[workload]
            for a, b in ((workload, neighbour), (neighbour, workload))
            if graph.has_edge(a, b)
        )

    # Heaviest traffic first: kube-scheduler takes released pods in the order their gates went, so the pods with the
    # most traffic to what is placed get the room next to it, and the light ones are what spills over.
    return [p.key for p in sorted(releasable, key=lambda p: (-pull(p.workload), position[p.workload]))]


def assign_planned_nodes(
    planned: Mapping[str, Sequence[str]], held: Mapping[str, Sequence[str]], waiting: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """Pod key -> node for waiting pods (key, workload), in the order given: each takes a node of its workload's plan
    that no replica holds yet (a node planned twice holds two). A pod left without a slot is not in the result."""
    open_slots = {w: Counter(nodes) - Counter(held.get(w, ())) for w, nodes in planned.items()}
    assigned: dict[str, str] = {}
    for key, workload in waiting:
        slots = open_slots.get(workload)
        if slots:
            node = min(slots)  # any open slot will do; the smallest name keeps the choice reproducible
            assigned[key] = node
            slots[node] -= 1
            if not slots[node]:
                del slots[node]
    return assigned
