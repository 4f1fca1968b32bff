"""The `plan` strategy in the extender: each AppGroup planned as a whole (core/planning.py) from the watched state,
and each pod steered to a node its workload's plan still has a slot on.

The plan covers the group's member pods as they exist: running ones stay where they are, pending ones are placed
around them in the free CPU the nodes report. It is kept while the group's members, the nodes and the topology are
the same, so the pods of one burst follow one plan: a replica bound on a planned node uses up that slot, and one bound
elsewhere (another scheduler, a node that filled up) only costs its own slot. When a pod is added or removed, a node
comes or goes, or the topology is rebuilt, the group is planned again around the replicas that run by then.

The search has a short limit, as it runs inside kube-scheduler's scheduling cycle: the integer program gets what the
heuristic leaves of it when the group is small (its best placement by then, proven or not), the heuristic alone
beyond.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from netaware.core.appgroup import AppGroup
from netaware.core.costs import LinkCosts
from netaware.core.planning import InfeasibleError, Plan, PlanningProblem, plan
from netaware.kube.stores import ClusterStore, PodInfo

log = logging.getLogger("netaware.extender.planned")

PLAN_TIME_LIMIT_S = 1.0
"""The planner's limit inside a scheduling cycle (kube-scheduler waits for prioritize, httpTimeout 2 s); it is
spent once per change of the group's members, not per pod. With 0.3 s and the heuristic alone, Online Boutique in
the lab was planned at 127 ms of network per request against the optimum's 107."""


@dataclass(frozen=True)
class _Cached:
    signature: tuple[object, ...]
    plan: Plan | None
    """None: the group does not fit (the pods are then scored by the seed cost alone)."""


class GroupPlans:
    def __init__(self, store: ClusterStore) -> None:
        self._store = store
        self._plans: dict[tuple[str, str], _Cached] = {}
        self._lock = threading.Lock()

    def open_slots(self, group: AppGroup, workload: str, link_costs: LinkCosts) -> Counter[str]:
        """Nodes the workload's plan has a replica on that no running replica of it holds yet (with counts)."""
        members = self._store.members(group)
        running = Counter(pod.node_name or "" for pod, name in members if name == workload and pod.placed)
        current = self._plan(group, members, link_costs)
        if current is None:
            return Counter()
        return Counter(current.placements.get(workload, [])) - running

    def _plan(self, group: AppGroup, members: list[tuple[PodInfo, str]], link_costs: LinkCosts) -> Plan | None:
        topology = link_costs.topology
        signature = (id(topology), frozenset(pod.uid for pod, _ in members))
        key = (group.namespace, group.name)
        with self._lock:
            cached = self._plans.get(key)
            if cached is not None and cached.signature == signature:
                return cached.plan
        replicas: Counter[str] = Counter()
        cpu: dict[str, int] = {}
        placed: dict[str, list[str]] = {}
        for pod, name in members:
            replicas[name] += 1
            cpu[name] = max(cpu.get(name, 0), pod.cpu_request_m)
            if pod.placed and pod.node_name and pod.node_name in topology.index:
                placed.setdefault(name, []).append(pod.node_name)
        try:
            problem = PlanningProblem.from_appgroup(
                group,
                replicas={w: replicas.get(w, 0) for w in group.workload_names},
                cpu_m=cpu,
                nodes=topology.nodes,
                free_cpu_m=[int(c) for c in self._store.free_cpu_m(topology)],
                topology=topology,
                placed=placed,
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
                    "pods": sum(replicas.values()),
                    "predictedNetworkMs": round(result.predicted_ms, 3),
                    "seconds": round(result.seconds, 3),
                },
            )
        with self._lock:
            self._plans[key] = _Cached(signature, result)
        return result
