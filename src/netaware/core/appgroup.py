"""AppGroup: an application's workloads and who calls whom, validated, with a topological order.

Edges point from caller to callee: `frontend` depends on `cart` means frontend calls cart. The sorting algorithms
are scheduler-plugins' (pkg/networkaware/util), with their names and their orders, ties included:

- KahnSort: Kahn's algorithm with a stack, as upstream: the workloads without callers are pushed, then the top of
  the stack is popped, and each callee whose callers are all sorted is pushed (in the order its caller lists its
  dependencies), so the most recently readied workload goes next. Callers before callees (frontend first).
- TarjanSort: reverse post-order of a depth-first search that follows each workload's dependencies in their order.
- ReverseKahn, ReverseTarjan: those orders reversed; callees before callers (the order to start services in).
- AlternateKahn, AlternateTarjan: those orders taken alternately from the front and the back (first, last, second..).

Upstream starts both from a Go map, whose iteration order is random; here it is the declaration order, so an
AppGroup sorts the same every time (and as upstream does whenever the start does not matter: one entry workload).

Cycles (user <-> social-graph in DeathStarBench) are legal: each strongly connected component is ordered as one
unit and its members keep declaration order, so every algorithm returns every workload exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx


class AppGroupError(ValueError):
    """An AppGroup that cannot be used: the message names the workload and the problem."""


class SortingAlgorithm(StrEnum):
    KAHN = "KahnSort"
    REVERSE_KAHN = "ReverseKahn"
    TARJAN = "TarjanSort"
    REVERSE_TARJAN = "ReverseTarjan"
    ALTERNATE_KAHN = "AlternateKahn"
    ALTERNATE_TARJAN = "AlternateTarjan"


@dataclass(frozen=True, slots=True)
class CostWeights:
    """Weights of the link-cost terms, each 0..1."""

    latency: float = 0.5
    bandwidth: float = 0.3
    loss: float = 0.2

    def __post_init__(self) -> None:
        for name in ("latency", "bandwidth", "loss"):
            value = getattr(self, name)
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise AppGroupError(f"weight {name} must be within 0..1, got {value!r}")


@dataclass(frozen=True, slots=True)
class Dependency:
    """`workload` is called by the owner of this dependency."""

    workload: str
    weight: float = 1.0
    """Traffic weight appWeight(caller, callee); relative, default 1."""
    max_latency_ms: float | None = None
    """Hard limit: RTT from the caller's node to every placed replica of the callee."""
    min_bandwidth_mbps: float | None = None
    """Hard limit: bandwidth from the caller's node to every placed replica of the callee."""
    max_network_cost: float | None = None
    """Hard limit on linkCost (the weighted, normalised cost, 0..sum of weights)."""


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    match_labels: Mapping[str, str] = field(default_factory=dict)
    dependencies: tuple[Dependency, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a pod with `labels` belongs to this workload (matchLabels semantics; empty matches nothing)."""
        return bool(self.match_labels) and all(labels.get(k) == v for k, v in self.match_labels.items())


@dataclass(frozen=True, slots=True)
class Rebalance:
    """When the network drifts so that where a group runs is predicted `min_improvement_percent` slower than a fresh
    plan, move its pods there: at most `max_pods` per `period_s`, one workload at a time, by eviction."""

    min_improvement_percent: float = 20.0
    max_pods: int = 1
    period_s: float = 60.0

    def __post_init__(self) -> None:
        if self.min_improvement_percent <= 0 or self.max_pods < 1 or self.period_s <= 0:
            raise AppGroupError("rebalance: minImprovementPercent and periodSeconds must be > 0, maxPods >= 1")


@dataclass(frozen=True)
class AppGroup:
    name: str
    workloads: tuple[Workload, ...]
    namespace: str = "default"
    sorting_algorithm: SortingAlgorithm = SortingAlgorithm.KAHN
    weights: CostWeights | None = None
    strategy: str | None = None
    rebalance: Rebalance | None = None
    """Re-planning on drift (under strategy plan); None: never move a running pod."""

    def __post_init__(self) -> None:
        validate_appgroup(self)

    @property
    def workload_names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.workloads)

    def workload(self, name: str) -> Workload:
        for workload in self.workloads:
            if workload.name == name:
                return workload
        raise AppGroupError(f"AppGroup {self.name}: unknown workload {name!r}")

    def callers_of(self, name: str) -> list[tuple[str, Dependency]]:
        """Every (caller, dependency) whose dependency targets `name`."""
        return [(w.name, d) for w in self.workloads for d in w.dependencies if d.workload == name]

    def neighbour_weights(self, name: str) -> dict[str, float]:
        """Every workload `name` calls or is called by, with the traffic weight between them (both ways summed)."""
        weights = {d.workload: d.weight for d in self.workload(name).dependencies}
        for caller, dependency in self.callers_of(name):
            weights[caller] = weights.get(caller, 0.0) + dependency.weight
        return weights

    def workload_for_labels(self, labels: Mapping[str, str]) -> str | None:
        for workload in self.workloads:
            if workload.matches(labels):
                return workload.name
        return None

    def graph(self) -> nx.DiGraph:
        """Caller -> callee graph; edge attribute `weight` is the traffic weight."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.workload_names)
        for workload in self.workloads:
            for dependency in workload.dependencies:
                graph.add_edge(workload.name, dependency.workload, weight=dependency.weight)
        return graph


def validate_appgroup(group: AppGroup) -> None:
    """Raise AppGroupError with a readable reason for the first problem found."""
    if not group.workloads:
        raise AppGroupError(f"AppGroup {group.name}: needs at least one workload")
    names: set[str] = set()
    for workload in group.workloads:
        if not workload.name:
            raise AppGroupError(f"AppGroup {group.name}: a workload has an empty name")
        if workload.name in names:
            raise AppGroupError(f"AppGroup {group.name}: duplicate workload name {workload.name!r}")
        names.add(workload.name)
    for workload in group.workloads:
        seen: set[str] = set()
        for dependency in workload.dependencies:
            where = f"AppGroup {group.name}: workload {workload.name!r} dependency {dependency.workload!r}"
            if dependency.workload not in names:
                raise AppGroupError(f"{where}: unknown workload")
            if dependency.workload == workload.name:
                raise AppGroupError(f"{where}: a workload cannot depend on itself")
            if dependency.workload in seen:
                raise AppGroupError(f"{where}: listed twice")
            seen.add(dependency.workload)
            _check_non_negative(where, "weight", dependency.weight)
            _check_non_negative(where, "maxLatencyMs", dependency.max_latency_ms)
            _check_non_negative(where, "minBandwidthMbps", dependency.min_bandwidth_mbps)
            _check_non_negative(where, "maxNetworkCost", dependency.max_network_cost)


def _check_non_negative(where: str, name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise AppGroupError(f"{where}: {name} must be a finite number >= 0, got {value!r}")


def topological_order(group: AppGroup, algorithm: SortingAlgorithm | None = None) -> list[str]:
    """All workloads once, in the order `algorithm` (default: the group's own) defines; cycles allowed."""
    algorithm = algorithm or group.sorting_algorithm
    declared = {name: i for i, name in enumerate(group.workload_names)}
    graph = group.graph()
    condensed = nx.condensation(graph)  # DAG of strongly connected components
    members: dict[int, list[str]] = {
        component: sorted(condensed.nodes[component]["members"], key=declared.__getitem__)
        for component in condensed.nodes
    }
    component_of = {name: component for component, names in members.items() for name in names}
    # Each component's callee components in the order its members list their dependencies (upstream's slices).
    callees: dict[int, list[int]] = {}
    for component, names in members.items():
        ordered = [component_of[d.workload] for name in names for d in group.workload(name).dependencies]
        callees[component] = [c for c in dict.fromkeys(ordered) if c != component]
    in_declaration_order = sorted(members, key=lambda c: declared[members[c][0]])

    def expand(components: Sequence[int]) -> list[str]:
        return [name for component in components for name in members[component]]

    if algorithm in (SortingAlgorithm.TARJAN, SortingAlgorithm.REVERSE_TARJAN, SortingAlgorithm.ALTERNATE_TARJAN):
        order = expand(_tarjan_order(in_declaration_order, callees))
    else:
        order = expand(_kahn_order(in_declaration_order, callees))
    if algorithm in (SortingAlgorithm.KAHN, SortingAlgorithm.TARJAN):
        return order
    if algorithm in (SortingAlgorithm.REVERSE_KAHN, SortingAlgorithm.REVERSE_TARJAN):
        return order[::-1]
    if algorithm in (SortingAlgorithm.ALTERNATE_KAHN, SortingAlgorithm.ALTERNATE_TARJAN):
        return _alternate(order)
    raise AppGroupError(f"unknown sorting algorithm {algorithm!r}")


def _kahn_order(nodes: Sequence[int], callees: Mapping[int, Sequence[int]]) -> list[int]:
    """Kahn's algorithm on a DAG with a stack (last readied first), as scheduler-plugins' KahnSort."""
    callers = dict.fromkeys(nodes, 0)
    for node in nodes:
        for callee in callees[node]:
            callers[callee] += 1
    stack = [node for node in nodes if callers[node] == 0]
    order: list[int] = []
    while stack:
        node = stack.pop()
        for callee in callees[node]:
            callers[callee] -= 1
            if callers[callee] == 0:
                stack.append(callee)
        order.append(node)
    return order


def _tarjan_order(nodes: Sequence[int], callees: Mapping[int, Sequence[int]]) -> list[int]:
    """Reverse post-order of a depth-first search from each node in turn, children in `callees` order."""
    visited: set[int] = set()
    post_order: list[int] = []
    for root in nodes:
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(callees[root]))]
        while stack:
            node, children = stack[-1]
            child = next((c for c in children if c not in visited), None)
            if child is None:
                stack.pop()
                post_order.append(node)
            else:
                visited.add(child)
                stack.append((child, iter(callees[child])))
    return post_order[::-1]


def _alternate(order: Sequence[str]) -> list[str]:
    result: list[str] = []
    low, high = 0, len(order) - 1
    while low <= high:
        result.append(order[low])
        if low != high:
            result.append(order[high])
        low += 1
        high -= 1
    return result
