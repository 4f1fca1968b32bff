"""The `plan` strategy: each AppGroup planned as a whole (core/planning.py) from the watched state, shared by the
extender's prioritize and the AppGroup controller.

The plan covers the group's member pods as they exist, plus the replicas their owners ask for and have not created
yet (`expect`): pods that hold a node (running there, or narrowed to it by the controller and waiting to be bound)
stay where they are, the others are placed around them in the free CPU the nodes report, on the nodes their own
node selector and required affinity allow. It is kept while the group's members, the nodes they hold, the owners'
counts and the topology are the same, so the pods of one burst follow one plan: a replica bound on a planned node
uses up that slot, and one bound elsewhere (another scheduler, a node that filled up) only costs its own slot. When a
pod is added or removed, a node comes or goes, or the topology is rebuilt, the group is planned again around the
replicas that hold nodes by then.

Behind the dependency-order gate the controller narrows each waiting pod to a planned node (extender/releasing.py);
pods that reach the scheduler without the gate are steered by prioritize: 10 on the nodes with an open slot.

The search has a short limit, as it may run inside kube-scheduler's scheduling cycle: the integer program gets what
the heuristic leaves of it when the group is small (its best placement by then, proven or not), the heuristic alone
beyond.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netaware.core.appgroup import AppGroup
from netaware.core.costs import LinkCosts
from netaware.core.nodeselection import pod_fits_node, tolerates, widened_from_node
from netaware.core.planning import InfeasibleError, Plan, PlanningProblem, placement_network_ms, plan
from netaware.core.topology import DenseTopology
from netaware.kube.stores import ClusterStore, PodInfo

log = logging.getLogger("netaware.extender.planned")

PLAN_TIME_LIMIT_S = 1.0
"""The planner's limit inside a scheduling cycle (kube-scheduler waits for prioritize, httpTimeout 2 s); it is
spent once per change of the group's members, not per pod. With 0.3 s and the heuristic alone, Online Boutique in
the lab was planned at 127 ms of network per request against the optimum's 107."""


AVOID_FAILED_NODE_S = 300.0
"""How long a workload is not planned again on a node one of its pods could not be scheduled on."""


@dataclass(frozen=True)
class _Cached:
    signature: tuple[object, ...]
    plan: Plan | None
    """None: the group does not fit (the pods are then scored by the seed cost alone)."""


def held_node(pod: PodInfo) -> str | None:
    """The node a member pod holds in its group's plan: where it runs, or the node the AppGroup controller narrowed
    it to while it waits to be bound there."""
    if pod.placed:
        return pod.node_name
    if pod.planned_node and not pod.scheduling_gates and not pod.deleting and pod.phase == "Pending":
        return pod.planned_node
    return None


class GroupPlans:
    def __init__(self, store: ClusterStore) -> None:
        self._store = store
        self._plans: dict[tuple[str, str], _Cached] = {}
        self._fresh: dict[tuple[str, str], _Cached] = {}
        self._targets: dict[tuple[str, str], tuple[Plan, float]] = {}
        """Group -> (the fresh plan it moves to on drift, until when)."""
        self._expected: dict[tuple[str, str], dict[str, int]] = {}
        self._avoided: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
        """Group -> (workload, node) -> until when the workload is not planned there again."""
        self._lock = threading.Lock()

    def avoid(self, group: AppGroup, workload: str, node: str, *, for_s: float = AVOID_FAILED_NODE_S) -> None:
        """A pod of `workload` could not be scheduled on `node`, its planned node (a taint, a port, anything the plan
        does not model): plan the workload elsewhere for a while, or its replacement would be sent there again."""
        with self._lock:
            self._avoided.setdefault((group.namespace, group.name), {})[(workload, node)] = time.monotonic() + for_s

    def _avoiding(self, key: tuple[str, str]) -> dict[str, frozenset[str]]:
        now = time.monotonic()
        with self._lock:
            current = {pair: until for pair, until in self._avoided.get(key, {}).items() if until > now}
            self._avoided[key] = current
        avoided: dict[str, set[str]] = {}
        for workload, node in current:
            avoided.setdefault(workload, set()).add(node)
        return {workload: frozenset(nodes) for workload, nodes in avoided.items()}

    def expect(self, group: AppGroup, replicas: Mapping[str, int]) -> None:
        """Replica counts the group's owners (Deployments, StatefulSets) ask for: the plan keeps room for pods they
        have not created yet. Without them a workload counts the pods that exist."""
        with self._lock:
            self._expected[(group.namespace, group.name)] = dict(replicas)

    def open_slots(self, group: AppGroup, workload: str, link_costs: LinkCosts) -> Counter[str]:
        """Nodes the workload's plan has a replica on that no replica of it holds yet (with counts)."""
        members = self._store.members(group)
        current = self.plan_for(group, link_costs, members)
        if current is None:
            return Counter()
        held = Counter(node for pod, name in members if name == workload and (node := held_node(pod)))
        return Counter(current.placements.get(workload, [])) - held

    def plan_for(
        self, group: AppGroup, link_costs: LinkCosts, members: list[tuple[PodInfo, str]] | None = None
    ) -> Plan | None:
        """The group's plan around the replicas that hold a node (cached while nothing it depends on changed), or
        while the group moves on drift, the fresh plan it moves to (`move_to`)."""
        if members is None:
            members = self._store.members(group)
        return self.target(group, members) or self._cached_plan(group, link_costs, members, fresh=False)

    def move_to(self, group: AppGroup, target: Plan, *, for_s: float) -> None:
        """Steer the group's new pods to `target` (a fresh plan) rather than around the pods that run, until every
        replica is where it puts it or `for_s` has passed: pods evicted one by one then reach the fresh plan, where
        each re-planned around the others could stay in a placement no single move improves."""
        with self._lock:
            self._targets[(group.namespace, group.name)] = (target, time.monotonic() + for_s)

    def target(self, group: AppGroup, members: list[tuple[PodInfo, str]]) -> Plan | None:
        """The plan the group is moving to, None when there is none (any more)."""
        key = (group.namespace, group.name)
        with self._lock:
            target, until = self._targets.get(key, (None, 0.0))
        if target is None:
            return None
        held: dict[str, Counter[str]] = {}
        for pod, name in members:
            if node := held_node(pod):
                held.setdefault(name, Counter())[node] += 1
        reached = all(held.get(w, Counter()) == Counter(nodes) for w, nodes in target.placements.items())
        if reached or time.monotonic() > until:
            with self._lock:
                self._targets.pop(key, None)
            return None
        return target

    def fresh_plan(
        self, group: AppGroup, link_costs: LinkCosts, members: list[tuple[PodInfo, str]] | None = None
    ) -> Plan | None:
        """The group planned anew, every replica movable (its own requests given back to the nodes it runs on): what
        re-planning on drift compares the running placement with."""
        return self._cached_plan(group, link_costs, members, fresh=True)

    def _cached_plan(
        self, group: AppGroup, link_costs: LinkCosts, members: list[tuple[PodInfo, str]] | None, *, fresh: bool
    ) -> Plan | None:
        if members is None:
            members = self._store.members(group)
        topology = link_costs.topology
        key = (group.namespace, group.name)
        with self._lock:
            expected = self._expected.get(key, {})
        avoided = self._avoiding(key)
        signature = (
            id(topology),
            frozenset((pod.uid, held_node(pod)) for pod, _ in members),
            tuple(sorted(expected.items())),
            tuple(sorted(avoided.items())),
        )
        cache = self._fresh if fresh else self._plans
        with self._lock:
            cached = cache.get(key)
            if cached is not None and cached.signature == signature:
                return cached.plan
        result = self._solve(group, topology, members, expected, avoided, fresh=fresh)
        with self._lock:
            cache[key] = _Cached(signature, result)
        return result

    def _solve(
        self,
        group: AppGroup,
        topology: DenseTopology,
        members: list[tuple[PodInfo, str]],
        expected: Mapping[str, int],
        avoided: Mapping[str, frozenset[str]],
        *,
        fresh: bool,
    ) -> Plan | None:
        replicas: Counter[str] = Counter()
        cpu: dict[str, int] = {}
        placed: dict[str, list[str]] = {}
        free, free_pods = self._store.free_capacity(topology)
        constraints: dict[str, Mapping[str, Any]] = {}
        for pod, name in members:
            replicas[name] += 1
            cpu[name] = max(cpu.get(name, 0), pod.cpu_request_m)
            node = held_node(pod)
            index = topology.index.get(node or "")
            if index is not None and not fresh:
                placed.setdefault(name, []).append(node or "")
                if not pod.placed:  # narrowed, not bound yet: its request is not in the nodes' free capacity
                    free[index] -= pod.cpu_request_m
                    free_pods[index] -= 1
                continue
            if index is not None and pod.placed:  # re-planned: its request leaves the node it runs on
                free[index] += pod.cpu_request_m
                free_pods[index] += 1
            spec = pod.node_constraints
            if pod.planned_node:  # the node it was narrowed to is not a constraint of its own
                spec = {**spec, "affinity": widened_from_node(spec, pod.planned_node)}
            constraints.setdefault(name, spec)
        try:
            problem = PlanningProblem.from_appgroup(
                group,
                replicas={w: max(replicas.get(w, 0), expected.get(w, 0)) for w in group.workload_names},
                cpu_m=cpu,
                nodes=topology.nodes,
                free_cpu_m=[int(c) for c in free],
                topology=topology,
                placed=placed,
                allowed=self._allowed(constraints, avoided, topology.nodes),
                free_pods=[max(0, int(c)) for c in free_pods],
            )
            result: Plan | None = plan(problem, time_limit_s=PLAN_TIME_LIMIT_S)
        except (InfeasibleError, ValueError) as error:
            log.warning("AppGroup %s/%s cannot be planned: %s", group.namespace, group.name, error)
            result = None
        if result is not None:
            log.info(
                "planned",
                extra={
                    "appgroup": f"{group.namespace}/{group.name}",
                    "fresh": fresh,
                    "pods": sum(max(replicas.get(w, 0), expected.get(w, 0)) for w in group.workload_names),
                    "predictedNetworkMs": round(result.predicted_ms, 3),
                    "seconds": round(result.seconds, 3),
                },
            )
        return result

    def _allowed(
        self,
        constraints: Mapping[str, Mapping[str, Any]],
        avoided: Mapping[str, frozenset[str]],
        nodes: Sequence[str],
    ) -> dict[str, frozenset[str]]:
        """Per workload, the nodes its waiting pods' own node selector, required affinity and tolerations allow,
        less the nodes its pods recently failed on."""
        labels = self._store.node_labels()
        taints = self._store.node_taints()

        def allows(workload: str, node: str) -> bool:
            spec = constraints.get(workload, {})
            if node in avoided.get(workload, ()) or not tolerates(spec.get("tolerations") or [], taints.get(node, [])):
                return False
            return pod_fits_node(spec, node, labels.get(node, {}))

        workloads = {w for w, spec in constraints.items() if spec or taints} | set(avoided)
        return {workload: frozenset(n for n in nodes if allows(workload, n)) for workload in workloads}


def predicted_network_ms(
    group: AppGroup, topology: DenseTopology, placements: Mapping[str, Sequence[str]]
) -> float | None:
    """The predicted network ms per request of where the group's replicas run (the planner's measure), or None while
    a workload has no replica placed."""
    if not all(placements.get(w) for w in group.workload_names):
        return None
    return placement_network_ms(group, topology, placements)
