"""Placing the pods of applications on a synthetic cluster, one by one, the way kube-scheduler would.

Order: the order netaware's dependency-order gate releases pods (core/release.py, the AppGroup's KahnSort,
heaviest traffic first within a wave), app after app; NetworkOverhead gets callees first (ReverseKahn), since it
only looks at placed dependencies. Each pod goes to one node that still has
room for its CPU request (resource fit), chosen by the policy:

- `default`: kube-scheduler's default scoring: NodeResourcesFit LeastAllocated (weight 1) + PodTopologySpread's
  default constraints, replicas of one workload spread over zones and nodes (weight 2);
- `random`: any node that fits;
- `network-overhead`: scheduler-plugins' NetworkOverhead re-implemented from its published algorithm (KEP-260):
  the accumulated cost to the placed pods of the workloads this pod depends on, 0 on the same node, 1 in the same
  zone, else the measured zone-to-zone cost (mean RTT between the zones, as Diktyo's NetworkTopology controller
  aggregates it), lower is better, weight 5, plus the default scoring; and its Filter: per placed dependency pod,
  satisfied on the same node or zone or within `maxNetworkCost` (unset means 0, as in upstream's Go), else violated;
  a node with more violated than satisfied is filtered (a pod left with no node stays Pending: the run fails);
- `hierarchy`: what Kueue's topology-aware scheduling and Volcano's HyperNodes do, by labels alone: each app as a
  whole into the zone with the least free CPU that still holds it (best fit), else such a region, else anywhere,
  its pods placed there by the default scoring;
- `netaware` (or `netaware-<strategy>`): the extender's own `score_candidates` (core/scoring.py; no copy) with its
  hard-limit filter, weight 2 x 10 as kube-scheduler applies an extender's 0..10, plus the default scoring;
- `plan`: the whole-group planner (core/planning.py) minimising the predicted network ms per request; `plan-seed`:
  the same planner minimising the seed cost function (the network cost the simulator reports);
- `optimal`: the planner's integer program over all pods at once, proven optimal (small instances only).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from netaware.core.appgroup import SortingAlgorithm
from netaware.core.costs import LinkCosts, build_link_costs
from netaware.core.lookahead import LOOKAHEAD, PendingPod, lookahead_costs, rank_extender_scores
from netaware.core.planning import InfeasibleError, Objective, PlanEdge, PlanningProblem, PlanWorkload, plan
from netaware.core.quantities import cpu_millicores
from netaware.core.release import MemberPod, pods_to_release
from netaware.core.scoring import STRATEGIES, score_candidates
from netaware.simulation.apps import SimApp
from netaware.simulation.clusters import SimCluster

POLICIES = (
    "default", "random", "network-overhead", "hierarchy", "netaware", "netaware-lookahead", "plan", "plan-seed",
    "optimal",
)  # fmt: skip
PLAN_TIME_LIMIT_S = 30.0

OPTIMAL_MAX_PODS = 12
OPTIMAL_MAX_NODES = 12

Placements = dict[str, dict[str, list[str]]]
"""app -> workload -> nodes of its replicas"""


class PlacementError(RuntimeError):
    """A pod fits nowhere, or the optimum was asked of an instance too large for it."""


def release_order(app: SimApp, algorithm: SortingAlgorithm | None = None) -> list[str]:
    """Workload names, one entry per pod, in the order the dependency-order gate releases them (under the AppGroup's
    sorting algorithm, or `algorithm`)."""
    group = replace(app.appgroup, sorting_algorithm=algorithm) if algorithm else app.appgroup
    pods = [(s.name, r) for s in app.graph.services for r in range(s.replicas)]
    bound: set[str] = set()
    order: list[str] = []
    while len(bound) < len(pods):
        members = [
            MemberPod(
                key=f"{w}#{r}", workload=w, gated=f"{w}#{r}" not in bound, bound=f"{w}#{r}" in bound, created_at_s=0.0
            )
            for w, r in pods
        ]
        wave = pods_to_release(group, members, now_s=0.0)
        if not wave:  # cannot happen for a DAG; guard against a loop
            wave = [f"{w}#{r}" for w, r in pods if f"{w}#{r}" not in bound]
        for key in wave:
            bound.add(key)
            order.append(key.split("#", 1)[0])
    return order


@dataclass
class Simulation:
    cluster: SimCluster
    policy: str
    seed: int = 0
    extender_weight: int | None = None
    """kube-scheduler's weight of the extender: 2 as in scheduler-extender/kube-scheduler-config.yaml; 10 for
    `netaware-lookahead`, whose rank scores need it (at 2, LeastAllocated outweighs a rank step)."""
    link_costs: LinkCosts = field(init=False)
    free_m: npt.NDArray[np.int64] = field(init=False)
    placements: Placements = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    seconds_per_pod: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.extender_weight is None:
            self.extender_weight = 10 if self.policy == f"netaware-{LOOKAHEAD}" else 2
        self.link_costs = build_link_costs(self.cluster.topology)
        self.free_m = self.cluster.cpu_m.copy()
        self.rng = random.Random(self.seed)
        zones = sorted(set(self.cluster.zones))
        self.zone_index = np.array([zones.index(z) for z in self.cluster.zones])
        self.zone_count = len(zones)
        self.node_index = {n: i for i, n in enumerate(self.cluster.nodes)}
        self._zone_cost: npt.NDArray[np.float64] | None = None
        self.domain: npt.NDArray[np.bool_] | None = None
        """`hierarchy`: the nodes of the domain chosen for the app being placed."""

    # --- scoring pieces -------------------------------------------------------------------------------------------
    def default_scores(self, fitting: npt.NDArray[np.intp], app: str, workload: str, cpu: int) -> Any:
        capacity = self.cluster.cpu_m[fitting]
        least_allocated = 100.0 * (self.free_m[fitting] - cpu) / capacity
        replicas = self.placements[app][workload]
        if not replicas:
            return least_allocated
        on_node = np.zeros(self.cluster.size)
        on_zone = np.zeros(self.zone_count)
        for node in replicas:
            on_node[self.node_index[node]] += 1
            on_zone[self.zone_index[self.node_index[node]]] += 1
        raw = on_node[fitting] + on_zone[self.zone_index[fitting]]
        spread = 100.0 * (raw.max() - raw) / raw.max() if raw.max() > 0 else np.full(len(fitting), 100.0)
        return least_allocated + 2 * spread

    def zone_cost(self) -> npt.NDArray[np.float64]:
        """Mean RTT between every pair of zones (NetworkOverhead's view of the network)."""
        if self._zone_cost is None:
            rtt = np.nan_to_num(self.cluster.topology.rtt_ms.astype(np.float64), nan=1000.0)
            sums = np.zeros((self.zone_count, self.zone_count))
            np.add.at(sums, (self.zone_index[:, None], self.zone_index[None, :]), rtt)
            counts = np.bincount(self.zone_index, minlength=self.zone_count).astype(np.float64)
            self._zone_cost = sums / np.maximum(np.outer(counts, counts), 1)
        return self._zone_cost

    def network_overhead_filter(self, fitting: npt.NDArray[np.intp], app: SimApp, workload: str) -> Any:
        """Upstream's Filter: per fitting node, whether violated dependencies do not outnumber satisfied ones."""
        satisfied = np.zeros(len(fitting))
        violated = np.zeros(len(fitting))
        zone_cost = self.zone_cost()
        for dependency in app.appgroup.workload(workload).dependencies:
            limit = dependency.max_network_cost or 0.0  # Go's zero value for an unset field
            for node in self.placements[app.name][dependency.workload]:
                j = self.node_index[node]
                near = (fitting == j) | (self.zone_index[fitting] == self.zone_index[j])
                within = zone_cost[self.zone_index[fitting], self.zone_index[j]] <= limit
                satisfied += near | within
                violated += ~(near | within)
        return violated <= satisfied

    def network_overhead_scores(self, fitting: npt.NDArray[np.intp], app: SimApp, workload: str) -> Any:
        cost = np.zeros(len(fitting))
        zone_cost = self.zone_cost()
        for dependency in app.appgroup.workload(workload).dependencies:
            for node in self.placements[app.name][dependency.workload]:
                j = self.node_index[node]
                same_zone = self.zone_index[fitting] == self.zone_index[j]
                between_zones = zone_cost[self.zone_index[fitting], self.zone_index[j]]
                cost += np.where(fitting == j, 0.0, np.where(same_zone, 1.0, between_zones))
        if cost.max() == cost.min():
            return np.zeros(len(fitting))
        return 100.0 * (cost.max() - cost) / (cost.max() - cost.min())

    def lookahead_scores(
        self, app: SimApp, workload: str, cpu: int, fitting: npt.NDArray[np.intp], base: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        """The seed cost plus the capacity lookahead (core/lookahead.py), as extender scores 0..10."""
        pending = []
        for name, weight in app.appgroup.neighbour_weights(workload).items():
            service = app.graph.service(name)
            missing = service.replicas - len(self.placements[app.name][name])
            pending += [PendingPod(weight / service.replicas, cpu_millicores(service.cpu))] * max(0, missing)
        extra = lookahead_costs(
            self.link_costs, fitting, np.asarray(base, dtype=np.float64), pod_cpu_m=cpu, free_cpu_m=self.free_m,
            pending=pending,
        )  # fmt: skip
        total = np.asarray(base, dtype=np.float64) + extra
        looked_at = np.isfinite(total)
        return rank_extender_scores(total, looked_at)

    # --- placing --------------------------------------------------------------------------------------------------
    def place(self, app: SimApp, workload: str) -> str:
        cpu = cpu_millicores(app.graph.service(workload).cpu)
        fitting = np.flatnonzero(self.free_m >= cpu)
        if fitting.size == 0:
            raise PlacementError(f"{app.name}/{workload} ({cpu}m) fits on no node")
        started = time.perf_counter()
        if self.policy == "network-overhead":
            fitting = fitting[self.network_overhead_filter(fitting, app, workload)]
            if fitting.size == 0:
                raise PlacementError(f"{app.name}/{workload}: NetworkOverhead's filter leaves no node")
        if self.domain is not None:
            inside = fitting[self.domain[fitting]]
            fitting = inside if inside.size else fitting
        if self.policy == "random":
            chosen = int(self.rng.choice(list(fitting)))
        else:
            total = self.default_scores(fitting, app.name, workload, cpu)
            if self.policy == "network-overhead":
                total = total + 5 * self.network_overhead_scores(fitting, app, workload)
            elif self.policy.startswith("netaware"):
                strategy = self.policy.removeprefix("netaware").removeprefix("-") or "seed"
                names = [self.cluster.nodes[i] for i in fitting]
                table = score_candidates(
                    link_costs=self.link_costs,
                    appgroup=app.appgroup,
                    workload=workload,
                    placements={w: nodes for w, nodes in self.placements[app.name].items() if nodes},
                    candidates=names,
                    candidate_index=fitting,
                    strategy="seed" if strategy == LOOKAHEAD else strategy,
                )
                extender_score = table.extender_score
                if strategy == LOOKAHEAD:
                    extender_score = self.lookahead_scores(app, workload, cpu, fitting, table.total_cost)
                total = total + (self.extender_weight or 2) * 10 * extender_score
                if table.filtered and len(table.filtered) < len(fitting):
                    total[list(table.filtered)] = -np.inf
            best = np.flatnonzero(total == total.max())
            chosen = int(fitting[self.rng.choice(list(best))])
        self.seconds_per_pod.append(time.perf_counter() - started)
        self.free_m[chosen] -= cpu
        node = self.cluster.nodes[chosen]
        self.placements[app.name][workload].append(node)
        return node

    def run(self, apps: Sequence[SimApp]) -> Placements:
        if self.policy == "optimal":
            return self.optimal(apps)
        if self.policy in ("plan", "plan-seed"):
            return self.planned(apps, Objective.SEED if self.policy == "plan-seed" else Objective.LATENCY)
        if self.policy.startswith("netaware-") and self.policy.removeprefix("netaware-") not in (
            *STRATEGIES,
            LOOKAHEAD,
        ):
            raise PlacementError(f"unknown strategy in {self.policy!r}; known: {', '.join(STRATEGIES)}")
        if self.policy not in POLICIES and not self.policy.startswith("netaware-"):
            raise PlacementError(f"unknown policy {self.policy!r}; known: {', '.join(POLICIES)}, netaware-<strategy>")
        # NetworkOverhead scores a pod by its placed dependencies (callees) only, so it is given callees first
        # (ReverseKahn), the order its algorithm needs; with callers first it would never see anything placed.
        algorithm = SortingAlgorithm.REVERSE_KAHN if self.policy == "network-overhead" else None
        for app in apps:
            if self.policy == "hierarchy":
                self.domain = self.smallest_domain(app)
            for workload in release_order(app, algorithm):
                self.place(app, workload)
        return self.placements

    def smallest_domain(self, app: SimApp) -> npt.NDArray[np.bool_] | None:
        """The zone, else the region, with the least free CPU that holds the whole app (labels only); None: no
        domain holds it, place anywhere."""
        needed = sum(cpu_millicores(s.cpu) * s.replicas for s in app.graph.services)
        largest = max(cpu_millicores(s.cpu) for s in app.graph.services)
        for labels in (self.cluster.zones, self.cluster.regions):
            names = np.array(labels)
            best: tuple[int, str] | None = None
            for domain in sorted(set(labels)):
                free = self.free_m[names == domain]
                if free.sum() >= needed and free.max() >= largest and (best is None or free.sum() < best[0]):
                    best = (int(free.sum()), domain)
            if best is not None:
                return np.asarray(names == best[1])
        return None

    def optimal(self, apps: Sequence[SimApp]) -> Placements:
        pods = sum(app.pods for app in apps)
        if pods > OPTIMAL_MAX_PODS or self.cluster.size > OPTIMAL_MAX_NODES:
            raise PlacementError(
                f"the optimum is computed for at most {OPTIMAL_MAX_PODS} pods on {OPTIMAL_MAX_NODES} nodes "
                f"(asked: {pods} pods, {self.cluster.size} nodes)"
            )
        return self.planned(apps, Objective.SEED, exact=True)

    def planned(self, apps: Sequence[SimApp], objective: Objective, *, exact: bool | None = None) -> Placements:
        pods = sum(app.pods for app in apps)
        started = time.perf_counter()
        try:
            result = plan(
                planning_problem(self.cluster, apps, objective),
                time_limit_s=60.0 if exact else PLAN_TIME_LIMIT_S,
                seed=self.seed,
                exact=exact,
            )
        except InfeasibleError as error:
            raise PlacementError(str(error)) from None
        self.seconds_per_pod.append((time.perf_counter() - started) / max(1, pods))
        for key, nodes in result.placements.items():
            app, workload = key.split("/")
            self.placements[app][workload].extend(nodes)
        return self.placements


def planning_problem(
    cluster: SimCluster, apps: Sequence[SimApp], objective: Objective = Objective.LATENCY
) -> PlanningProblem:
    """All apps as one planning problem: workloads named app/service, the AppGroup weights as calls per request
    (and as the seed objective's weights), each reply's payload the callee's."""
    workloads = []
    edges = []
    for app in apps:
        for service in app.graph.services:
            workloads.append(PlanWorkload(f"{app.name}/{service.name}", service.replicas, cpu_millicores(service.cpu)))
        for workload in app.appgroup.workloads:
            for dependency in workload.dependencies:
                edges.append(
                    PlanEdge(
                        f"{app.name}/{workload.name}",
                        f"{app.name}/{dependency.workload}",
                        calls=app.calls_per_request[(workload.name, dependency.workload)],
                        weight=dependency.weight,
                        payload_bytes=app.graph.service(dependency.workload).payload_bytes,
                        max_latency_ms=dependency.max_latency_ms,
                        min_bandwidth_mbps=dependency.min_bandwidth_mbps,
                        max_network_cost=dependency.max_network_cost,
                    )
                )
    return PlanningProblem(
        workloads=tuple(workloads),
        edges=tuple(edges),
        nodes=cluster.nodes,
        free_cpu_m=tuple(int(c) for c in cluster.cpu_m),
        topology=cluster.topology,
        objective=objective,
    )


def flattened(placements: Placements) -> dict[str, list[str]]:
    """app -> workload -> nodes as the planning problem's app/workload -> nodes."""
    return {
        f"{app}/{workload}": nodes for app, by_workload in placements.items() for workload, nodes in by_workload.items()
    }
