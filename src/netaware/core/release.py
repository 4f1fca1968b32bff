"""Dependency-ordered release of an AppGroup's pods (the rule behind the `netaware.io/dependency-order` gate).

A gated pod of workload w may be released (its scheduling gate removed) when every workload w calls has at
least one pod and all of that workload's pods are bound to nodes. Callees are thus placed first, so the cost
function sees where they run when it places their callers; that is the ReverseKahn order of the AppGroup.

Two exceptions keep this from deadlocking:
- dependencies inside the same cycle (strongly connected component) do not wait for each other;
- a dependency with no pods at all does not block (it may not be deployed; waiting would wait forever).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from netaware.core.appgroup import AppGroup

DEPENDENCY_ORDER_GATE = "netaware.io/dependency-order"


@dataclass(frozen=True, slots=True)
class MemberPod:
    key: str
    """namespace/name"""
    workload: str
    gated: bool
    """Carries the dependency-order gate."""
    bound: bool


def pods_to_release(group: AppGroup, pods: Sequence[MemberPod]) -> list[str]:
    """Keys of gated pods whose dependencies are all placed, in the order given."""
    component_of: dict[str, int] = {}
    for index, members in enumerate(nx.strongly_connected_components(group.graph())):
        for member in members:
            component_of[member] = index
    by_workload: dict[str, list[MemberPod]] = defaultdict(list)
    for pod in pods:
        by_workload[pod.workload].append(pod)

    def placed(workload: str) -> bool:
        members = by_workload.get(workload, [])
        return all(p.bound for p in members)  # no pods: does not block

    ready = {
        w.name: all(placed(d.workload) for d in w.dependencies if component_of[d.workload] != component_of[w.name])
        for w in group.workloads
    }
    return [p.key for p in pods if p.gated and ready.get(p.workload, False)]
