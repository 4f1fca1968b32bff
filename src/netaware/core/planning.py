"""Whole-AppGroup placement: every replica of every workload placed at once, to minimise the predicted network time
of one request on the measured network.

Predicted network time of a request (ms). For a call edge caller -> callee with `calls` calls per request to the
entry, and the callee's reply `payload` bytes when known:

    time(n, m) = rtt(n, m)                                     one round trip per call
               + segments * loss(n, m) * RTO                   a lost segment waits for TCP's retransmission timer
               + payload * 8 / bandwidth(n, m)                 serialising the reply at the link's measured rate
    edge ms    = calls * mean of time(n_i, m_j) over the caller's and the callee's replica pairs
    request ms = the sum over edges

with time(n, n) = 0 (loopback), RTO = 200 ms (Linux's minimum), segments = 1 + ceil(payload / 1448) (the request
and the reply; 2 when the payload is unknown), to first order in the loss ratio. The mean over all replica pairs is
what kube-proxy's random choice of endpoint gives. Missing data is never cheaper than measured data: an unmeasured
RTT costs MISSING_RTT_MS, an unmeasured loss the worst loss measured anywhere, an unmeasured bandwidth the lowest.
Calls are the AppGroup's dependency weights (netaware's renderer writes calls per request there); relative weights
give a relative time.

Objectives: `latency` minimises the predicted time; `seed` minimises the mission's cost function (weight x linkCost,
core/costs.py, averaged over replica pairs), the figure netaware scored by before whole-group planning.

Hard limits hold for every replica pair the routing may use: no caller replica sits on a node whose link to a
callee replica breaks `maxLatencyMs`, `minBandwidthMbps` or `maxNetworkCost` (an unmeasured link fails; co-location
passes), as the extender's filter applies them pod by pod.

Search: an integer program (pulp + HiGHS, one binary per replica and node, one continuous pair variable per replica
pair and node pair) while the instance has at most IP_MAX_PAIR_VARIABLES pair variables; otherwise, and always
first as its warm start and fallback, a heuristic: for each connected app, an anchor node whose RTT neighbourhood
holds the app's CPU most cheaply in the room left (a whole-group scheduler's choice of domain, by measurement
instead of labels), a greedy pass (workloads in order of their traffic to those already placed, each replica on
the node where it adds least), then local search (moves and swaps) until no step improves or the time limit.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx
import numpy as np
import numpy.typing as npt
import pulp

from netaware.core.appgroup import AppGroup, CostWeights
from netaware.core.costs import build_link_costs
from netaware.core.topology import DenseTopology

PLAN = "plan"
"""The AppGroup strategy (`spec.strategy: plan`) under which the extender steers pods to the group's plan."""
MISSING_RTT_MS = 1000.0
"""What an unmeasured link's RTT is taken to be: worse than any measured link."""
RTO_MS = 200.0
"""Linux's minimum TCP retransmission timeout: what a lost segment costs."""
MSS_BYTES = 1448
IP_MAX_PAIR_VARIABLES = 6_000
"""The integer program is tried up to this many pair variables (Online Boutique's 15 edges on 12 nodes: 2,160; HiGHS
proves those optimal in 1-6 s here); beyond, it rarely finishes within seconds and the heuristic is close."""
ANCHOR_SAMPLE = 256
"""Candidate anchor nodes examined (all when there are fewer)."""

Placements = dict[str, list[str]]
"""workload -> the nodes of its replicas (a node repeated for two replicas on it)"""
FloatMatrix = npt.NDArray[np.float32]


class InfeasibleError(ValueError):
    """The group does not fit on the nodes (capacity, node selection, hard limits)."""


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:  # noqa: PTH123 - a raw descriptor is needed for dup2
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Objective(StrEnum):
    LATENCY = "latency"
    SEED = "seed"


@dataclass(frozen=True, slots=True)
class PlanWorkload:
    name: str
    replicas: int
    cpu_m: int
    memory_bytes: int = 0
    nodes: frozenset[str] | None = None
    """The nodes its pods may run on (node selector and required node affinity); None: any node."""


@dataclass(frozen=True, slots=True)
class PlanEdge:
    caller: str
    callee: str
    calls: float
    """Calls per request to the entry (the AppGroup's dependency weight)."""
    weight: float | None = None
    """The seed objective's traffic weight; None: `calls`."""
    payload_bytes: int | None = None
    max_latency_ms: float | None = None
    min_bandwidth_mbps: float | None = None
    max_network_cost: float | None = None

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.max_latency_ms, self.min_bandwidth_mbps, self.max_network_cost))

    @property
    def segments(self) -> int:
        return 2 if self.payload_bytes is None else 1 + max(1, math.ceil(self.payload_bytes / MSS_BYTES))


@dataclass(frozen=True)
class PlanningProblem:
    workloads: tuple[PlanWorkload, ...]
    edges: tuple[PlanEdge, ...]
    nodes: tuple[str, ...]
    free_cpu_m: tuple[int, ...]
    """Free CPU of each node, aligned with `nodes`."""
    topology: DenseTopology
    """The measured links; nodes it does not know have every link unmeasured."""
    free_memory_bytes: tuple[int, ...] | None = None
    free_pods: tuple[int, ...] | None = None
    """How many more pods each node takes (allocatable pods less those it runs); None: no limit."""
    objective: Objective = Objective.LATENCY
    weights: CostWeights = field(default_factory=CostWeights)
    """linkCost's weights: the seed objective and maxNetworkCost."""
    placed: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Replicas already running (workload -> their nodes), counted in `replicas` and already taken off the free
    capacity: the plan keeps them where they are and places the rest around them."""

    def __post_init__(self) -> None:
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names):
            raise ValueError("workload names must be unique")
        for edge in self.edges:
            for end in (edge.caller, edge.callee):
                if end not in names:
                    raise ValueError(f"edge {edge.caller} -> {edge.callee}: unknown workload {end!r}")
        if len(self.free_cpu_m) != len(self.nodes) or any(
            free is not None and len(free) != len(self.nodes) for free in (self.free_memory_bytes, self.free_pods)
        ):
            raise ValueError("free capacity must be given for every node")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError("node names must be unique")
        for workload in self.workloads:
            if workload.replicas < 0 or workload.cpu_m < 0 or workload.memory_bytes < 0:
                raise ValueError(f"workload {workload.name}: replicas and requests must be >= 0")
            running = self.placed.get(workload.name, ())
            if len(running) > workload.replicas or not set(running) <= set(self.nodes):
                raise ValueError(f"workload {workload.name}: placed replicas must be known nodes, at most `replicas`")

    @classmethod
    def from_appgroup(
        cls,
        group: AppGroup,
        *,
        replicas: Mapping[str, int],
        cpu_m: Mapping[str, int],
        nodes: Sequence[str],
        free_cpu_m: Sequence[int],
        topology: DenseTopology,
        allowed: Mapping[str, frozenset[str]] | None = None,
        payload_bytes: Mapping[tuple[str, str], int] | None = None,
        objective: Objective = Objective.LATENCY,
        placed: Mapping[str, Sequence[str]] | None = None,
        free_pods: Sequence[int] | None = None,
    ) -> PlanningProblem:
        """The problem of one AppGroup: its dependencies are the edges (weight = calls per request)."""
        allowed = allowed or {}
        payload_bytes = payload_bytes or {}
        return cls(
            workloads=tuple(
                PlanWorkload(w.name, replicas.get(w.name, 1), cpu_m.get(w.name, 0), nodes=allowed.get(w.name))
                for w in group.workloads
            ),
            edges=tuple(
                PlanEdge(
                    w.name,
                    d.workload,
                    calls=d.weight,
                    payload_bytes=payload_bytes.get((w.name, d.workload)),
                    max_latency_ms=d.max_latency_ms,
                    min_bandwidth_mbps=d.min_bandwidth_mbps,
                    max_network_cost=d.max_network_cost,
                )
                for w in group.workloads
                for d in w.dependencies
            ),
            nodes=tuple(nodes),
            free_cpu_m=tuple(int(c) for c in free_cpu_m),
            topology=topology,
            objective=objective,
            weights=group.weights or CostWeights(),
            placed=placed or {},
            free_pods=tuple(int(c) for c in free_pods) if free_pods is not None else None,
        )


@dataclass(frozen=True, slots=True)
class EdgeTime:
    caller: str
    callee: str
    calls: float
    ms_per_call: float
    """Mean predicted time of one call over the replica pairs."""

    @property
    def ms(self) -> float:
        return self.calls * self.ms_per_call


@dataclass(frozen=True)
class Plan:
    placements: Placements
    predicted_ms: float
    """Predicted network time of one request (see the module docstring)."""
    objective_value: float
    optimal: bool
    """Proven optimal (the integer program finished); False: the best placement found within the time limit."""
    method: str
    edges: tuple[EdgeTime, ...]
    seconds: float

    def largest_edges(self, count: int = 3) -> list[tuple[EdgeTime, float]]:
        """The edges that cost most, with their share of the predicted time."""
        ranked = sorted(self.edges, key=lambda e: e.ms, reverse=True)[:count]
        return [(e, e.ms / self.predicted_ms if self.predicted_ms > 0 else 0.0) for e in ranked]


# --- the compiled instance -------------------------------------------------------------------------------------


@dataclass
class _Neighbour:
    item: int
    edge: int
    outgoing: bool
    """True: this item calls the neighbour (the link runs from this item's node to the neighbour's)."""
    weight: float
    """The objective's weight of this replica pair: the edge's weight over the number of replica pairs."""


class _Instance:
    """The problem as arrays: items (one per replica), node matrices, per-edge price terms."""

    def __init__(self, problem: PlanningProblem) -> None:
        self.problem = problem
        nodes = problem.nodes
        n = len(nodes)
        self.n = n
        rtt, bandwidth, loss = _aligned(problem.topology, nodes)
        self.rtt_known = ~np.isnan(rtt)
        self.raw_rtt, self.raw_bandwidth = rtt, bandwidth
        known_loss = loss[~np.isnan(loss)]
        worst_loss = float(known_loss.max()) if known_loss.size else 0.0
        self.rtt = np.where(self.rtt_known, rtt, np.float32(MISSING_RTT_MS)).astype(np.float32)
        self.loss = np.where(np.isnan(loss), np.float32(worst_loss), loss).astype(np.float32)
        known_bandwidth = bandwidth[~np.isnan(bandwidth) & (bandwidth > 0)]
        self.inverse_bandwidth: FloatMatrix | None = None
        if any(e.payload_bytes for e in problem.edges) and known_bandwidth.size:
            lowest = float(known_bandwidth.min())
            filled = np.where(np.isnan(bandwidth) | (bandwidth <= 0), np.float32(lowest), bandwidth)
            self.inverse_bandwidth = (np.float32(1.0) / filled).astype(np.float32)
        for matrix in (self.rtt, self.loss, *([self.inverse_bandwidth] if self.inverse_bandwidth is not None else [])):
            np.fill_diagonal(matrix, 0.0)
        self.link_cost: FloatMatrix | None = None
        if problem.objective is Objective.SEED or any(e.max_network_cost is not None for e in problem.edges):
            self.link_cost = build_link_costs(_dense(nodes, rtt, bandwidth, loss), problem.weights).cost
        self.free_cpu = np.array(problem.free_cpu_m, dtype=np.int64)
        # The resources beside CPU, one column each: memory and pod slots (each replica takes one). A column not
        # given is unlimited. `free_memory` is None when neither is given.
        unlimited = np.full(n, np.iinfo(np.int64).max // 4, dtype=np.int64)
        given = [problem.free_memory_bytes, problem.free_pods]
        self.free_memory = (
            np.stack([np.array(f, dtype=np.int64) if f is not None else unlimited for f in given], axis=1)
            if any(f is not None for f in given)
            else None
        )
        index = {w.name: i for i, w in enumerate(problem.workloads)}
        self.item_workload: list[int] = []
        self.items_of: list[list[int]] = []
        for w, workload in enumerate(problem.workloads):
            self.items_of.append(list(range(len(self.item_workload), len(self.item_workload) + workload.replicas)))
            self.item_workload += [w] * workload.replicas
        self.items = len(self.item_workload)
        self.cpu = np.array([problem.workloads[w].cpu_m for w in self.item_workload], dtype=np.int64)
        self.memory = np.array(
            [(problem.workloads[w].memory_bytes, 1) for w in self.item_workload], dtype=np.int64
        ).reshape(-1, 2)
        """Per replica: memory bytes and the one pod slot it takes (the columns of `free_memory`)."""
        position = {name: i for i, name in enumerate(nodes)}
        self.fixed = np.full(self.items, -1, dtype=np.intp)
        """The node of each replica that already runs (-1: to be placed). Its requests are already off the free
        capacity, so it counts as needing none."""
        for w, workload in enumerate(problem.workloads):
            for item, node in zip(self.items_of[w], problem.placed.get(workload.name, ()), strict=False):
                self.fixed[item] = position[node]
        self.cpu[self.fixed >= 0] = 0
        self.memory[self.fixed >= 0] = 0
        self.allowed: list[npt.NDArray[np.bool_] | None] = []
        for workload in problem.workloads:
            if workload.nodes is None:
                self.allowed.append(None)
            else:
                mask = np.zeros(n, dtype=bool)
                mask[[position[x] for x in workload.nodes if x in position]] = True
                self.allowed.append(mask)
        self.neighbours: list[list[_Neighbour]] = [[] for _ in range(self.items)]
        self.edge_ends: list[tuple[int, int]] = []
        for e, edge in enumerate(problem.edges):
            a, b = index[edge.caller], index[edge.callee]
            self.edge_ends.append((a, b))
            pairs = len(self.items_of[a]) * len(self.items_of[b])
            if not pairs:
                continue
            weight = self.objective_weight(edge) / pairs
            for i in self.items_of[a]:
                for j in self.items_of[b]:
                    if i != j:
                        self.neighbours[i].append(_Neighbour(j, e, True, weight))
                        self.neighbours[j].append(_Neighbour(i, e, False, weight))

    def objective_weight(self, edge: PlanEdge) -> float:
        if self.problem.objective is Objective.SEED:
            return edge.calls if edge.weight is None else edge.weight
        return edge.calls

    def time_terms(self, edge: PlanEdge) -> list[tuple[float, FloatMatrix]]:
        """time(n, m) of one call on this edge as coefficient x matrix terms."""
        terms: list[tuple[float, FloatMatrix]] = [(1.0, self.rtt), (edge.segments * RTO_MS, self.loss)]
        if edge.payload_bytes and self.inverse_bandwidth is not None:
            terms.append((edge.payload_bytes * 8 / 1000.0, self.inverse_bandwidth))  # bits / (Mbit/s) in ms
        return terms

    def price_terms(self, edge: PlanEdge) -> list[tuple[float, FloatMatrix]]:
        if self.problem.objective is Objective.SEED:
            assert self.link_cost is not None
            return [(1.0, self.link_cost)]
        return self.time_terms(edge)

    def price_matrix(self, edge: PlanEdge) -> FloatMatrix:
        """The objective's price of one call on each node pair (built in full: small instances only)."""
        total = np.zeros((self.n, self.n), dtype=np.float64)
        for coefficient, matrix in self.price_terms(edge):
            total += coefficient * matrix
        return total.astype(np.float32)

    def fits(
        self, item: int, free_cpu: npt.NDArray[np.int64], free_memory: npt.NDArray[np.int64] | None
    ) -> npt.NDArray[np.bool_]:
        """Nodes with room for the item and allowed to it (limits aside); a running replica's own node only."""
        if self.fixed[item] >= 0:
            only = np.zeros(self.n, dtype=bool)
            only[self.fixed[item]] = True
            return only
        mask: npt.NDArray[np.bool_] = free_cpu >= self.cpu[item]
        if free_memory is not None:
            mask &= np.all(free_memory >= self.memory[item], axis=1)
        allowed = self.allowed[self.item_workload[item]]
        return mask if allowed is None else mask & allowed

    def within_limits(self, item: int, node_of: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """Nodes where the item breaks no hard limit with its placed neighbours."""
        mask = np.ones(self.n, dtype=bool)
        for neighbour in self.neighbours[item]:
            edge = self.problem.edges[neighbour.edge]
            at = int(node_of[neighbour.item])
            if not edge.limited or at < 0:
                continue
            mask &= self.limit_column(edge, at, outgoing=neighbour.outgoing)
        return mask

    def limit_column(self, edge: PlanEdge, at: int, *, outgoing: bool) -> npt.NDArray[np.bool_]:
        """Per candidate node, whether the link between it and a neighbour on `at` meets the edge's limits."""

        def line(matrix: FloatMatrix) -> npt.NDArray[np.float32]:
            return matrix[:, at] if outgoing else matrix[at, :]

        ok = np.ones(self.n, dtype=bool)
        if edge.max_latency_ms is not None:
            ok &= np.nan_to_num(line(self.raw_rtt), nan=np.inf) <= edge.max_latency_ms
        if edge.min_bandwidth_mbps is not None:
            ok &= np.nan_to_num(line(self.raw_bandwidth), nan=-np.inf) >= edge.min_bandwidth_mbps
        if edge.max_network_cost is not None:
            assert self.link_cost is not None
            ok &= line(self.link_cost) <= edge.max_network_cost
        ok[at] = True  # co-location always passes
        return ok

    def added_cost(self, item: int, node_of: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """Per node, the objective this item would contribute with its placed neighbours where they are."""
        grouped: dict[tuple[int, bool, int], float] = defaultdict(float)
        for neighbour in self.neighbours[item]:
            at = int(node_of[neighbour.item])
            if at >= 0:
                grouped[(neighbour.edge, neighbour.outgoing, at)] += neighbour.weight
        total = np.zeros(self.n, dtype=np.float64)
        for (e, outgoing, at), weight in grouped.items():
            for coefficient, matrix in self.price_terms(self.problem.edges[e]):
                total += (weight * coefficient) * (matrix[:, at] if outgoing else matrix[at, :])
        return total

    def objective(self, node_of: npt.NDArray[np.intp]) -> float:
        total = 0.0
        for e, edge in enumerate(self.problem.edges):
            a, b = self.edge_ends[e]
            rows, columns = node_of[self.items_of[a]], node_of[self.items_of[b]]
            if rows.size and columns.size:
                price = sum(c * m[np.ix_(rows, columns)].astype(np.float64) for c, m in self.price_terms(edge))
                total += self.objective_weight(edge) * float(np.mean(price))
        return total

    def objective_part(self, first: int, second: int, node_of: npt.NDArray[np.intp]) -> float:
        """The objective of every replica pair involving `first` or `second` (each pair once)."""
        total = 0.0
        for item in (first, second):
            n = int(node_of[item])
            for neighbour in self.neighbours[item]:
                if item == second and neighbour.item == first:
                    continue  # counted from `first`
                m = int(node_of[neighbour.item])
                origin, destination = (n, m) if neighbour.outgoing else (m, n)
                terms = self.price_terms(self.problem.edges[neighbour.edge])
                total += neighbour.weight * sum(c * float(matrix[origin, destination]) for c, matrix in terms)
        return total

    def edge_times(self, node_of: npt.NDArray[np.intp]) -> tuple[EdgeTime, ...]:
        times = []
        for e, edge in enumerate(self.problem.edges):
            a, b = self.edge_ends[e]
            rows, columns = node_of[self.items_of[a]], node_of[self.items_of[b]]
            mean = 0.0
            if rows.size and columns.size:
                values = sum(c * m[np.ix_(rows, columns)].astype(np.float64) for c, m in self.time_terms(edge))
                mean = float(np.mean(values))
            times.append(EdgeTime(edge.caller, edge.callee, edge.calls, mean))
        return tuple(times)

    def placements(self, node_of: npt.NDArray[np.intp]) -> Placements:
        return {
            w.name: sorted(self.problem.nodes[int(node_of[i])] for i in self.items_of[k])
            for k, w in enumerate(self.problem.workloads)
        }

    def usage_ok(self, node_of: npt.NDArray[np.intp]) -> bool:
        cpu = np.bincount(node_of, weights=self.cpu, minlength=self.n)
        if np.any(cpu > self.free_cpu):
            return False
        return self.free_memory is None or not np.any(self.other_usage(node_of) > self.free_memory)

    def other_usage(self, node_of: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        """Per node, the memory and pod slots the placement uses (the columns of `free_memory`)."""
        return np.stack(
            [np.bincount(node_of, weights=self.memory[:, r], minlength=self.n) for r in range(self.memory.shape[1])],
            axis=1,
        ).astype(np.int64)


def _aligned(topology: DenseTopology, nodes: Sequence[str]) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix]:
    """The topology's matrices in `nodes` order; rows and columns of nodes it does not know are NaN."""
    if tuple(nodes) == topology.nodes:
        return topology.rtt_ms, topology.bandwidth_mbps, topology.loss_ratio
    index = np.array([topology.index.get(x, -1) for x in nodes], dtype=np.intp)
    known = index >= 0
    safe = np.where(known, index, 0)
    mask = known[:, None] & known[None, :]
    out = []
    for matrix in (topology.rtt_ms, topology.bandwidth_mbps, topology.loss_ratio):
        out.append(np.where(mask, matrix[np.ix_(safe, safe)], np.float32(np.nan)).astype(np.float32))
    return out[0], out[1], out[2]


def _dense(nodes: Sequence[str], rtt: FloatMatrix, bandwidth: FloatMatrix, loss: FloatMatrix) -> DenseTopology:
    return DenseTopology(
        nodes=tuple(nodes), index={x: i for i, x in enumerate(nodes)}, rtt_ms=rtt, bandwidth_mbps=bandwidth,
        loss_ratio=loss,
    )  # fmt: skip


# --- the heuristic ---------------------------------------------------------------------------------------------


class _Search:
    def __init__(self, instance: _Instance, rng: random.Random, deadline_s: float) -> None:
        self.instance = instance
        self.rng = rng
        self.deadline_s = deadline_s
        self._near: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]] | None = None

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline_s

    def _neighbourhoods(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """For a sample of candidate anchors: every node in order of RTT (both ways) from it, and those RTTs."""
        if self._near is None:
            instance = self.instance
            n = instance.n
            sample = np.array(list(range(n)) if n <= ANCHOR_SAMPLE else self.rng.sample(range(n), ANCHOR_SAMPLE))
            rows = instance.rtt[sample, :].astype(np.float64) + instance.rtt[:, sample].T
            order = np.argsort(rows, axis=1, kind="stable")
            self._near = (sample, order, np.take_along_axis(rows, order, axis=1))
        return self._near

    def anchors(
        self, count: int, *, needed_cpu_m: int | None = None, free_cpu: npt.NDArray[np.int64] | None = None
    ) -> list[int]:
        """Nodes whose nearest neighbourhood holds `needed_cpu_m` (default: the whole group's) in `free_cpu` at the
        lowest capacity-weighted RTT, best first; where no neighbourhood holds it all, the shortfall is priced at
        MISSING_RTT_MS."""
        sample, order, sorted_rtt = self._neighbourhoods()
        needed = max(1, int(self.instance.cpu.sum() if needed_cpu_m is None else needed_cpu_m))
        free = self.instance.free_cpu if free_cpu is None else free_cpu
        capacity = np.maximum(free[order], 0).astype(np.float64)
        before = np.cumsum(capacity, axis=1) - capacity
        used = np.clip(needed - before, 0, capacity)
        shortfall = needed - used.sum(axis=1)
        costs = ((sorted_rtt * used).sum(axis=1) + shortfall * MISSING_RTT_MS) / needed
        return [int(sample[k]) for k in np.argsort(costs, kind="stable")[:count]]

    def components(self) -> list[int]:
        """Per workload, the connected part of the call graph it belongs to (an app of a multi-app problem)."""
        instance = self.instance
        graph = nx.Graph()
        graph.add_nodes_from(range(len(instance.problem.workloads)))
        graph.add_edges_from(instance.edge_ends)
        component = [0] * len(instance.problem.workloads)
        for number, members in enumerate(nx.connected_components(graph)):
            for w in members:
                component[w] = number
        return component

    def workload_order(self) -> list[int]:
        """Workloads by traffic: the heaviest first, then repeatedly the one with most traffic to those placed (the
        heaviest of all again when nothing left talks to them: the next component)."""
        instance = self.instance
        count = len(instance.problem.workloads)
        total = np.zeros(count)
        adjacent: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for e, edge in enumerate(instance.problem.edges):
            a, b = instance.edge_ends[e]
            weight = instance.objective_weight(edge)
            total[[a, b]] += weight
            adjacent[a][b] += weight
            adjacent[b][a] += weight
        to_placed = np.zeros(count)
        left = np.ones(count, dtype=bool)
        order: list[int] = []
        for _ in range(count):
            pull = np.where(left, to_placed, -np.inf)
            tied = left & (pull == pull.max())
            best = int(np.argmax(np.where(tied, total, -np.inf)))  # argmax: the first declared among equals
            order.append(best)
            left[best] = False
            for other, weight in adjacent[best].items():
                to_placed[other] += weight
        return order

    def greedy(self, anchor: int) -> npt.NDArray[np.intp]:
        """Workload after workload, each replica where it adds least. The first component (app) starts at `anchor`;
        each further one at the anchor that holds it best in the room left, as a whole-group scheduler picks a
        domain per group."""
        instance = self.instance
        node_of = instance.fixed.copy()  # running replicas stay; their requests are already off the free capacity
        free_cpu = instance.free_cpu.copy()
        free_memory = instance.free_memory.copy() if instance.free_memory is not None else None
        component = self.components()
        needed: dict[int, int] = defaultdict(int)
        for item in range(instance.items):
            needed[component[instance.item_workload[item]]] += int(instance.cpu[item])
        started: set[int] = set()
        pull = np.zeros(instance.n)
        for w in self.workload_order():
            if component[w] not in started:
                if started:
                    anchor = self.anchors(1, needed_cpu_m=needed[component[w]], free_cpu=free_cpu)[0]
                started.add(component[w])
                # Distance from the anchor places the component's first replica and breaks ties; small enough
                # never to outweigh a real difference in cost.
                pull = (instance.rtt[anchor, :].astype(np.float64) + instance.rtt[:, anchor]) * 1e-6
            for item in instance.items_of[w]:
                if node_of[item] >= 0:
                    continue
                feasible = instance.fits(item, free_cpu, free_memory) & instance.within_limits(item, node_of)
                if not feasible.any():
                    name = instance.problem.workloads[w].name
                    raise InfeasibleError(
                        f"{name}: no node has room for another replica ({instance.cpu[item]}m CPU) within its "
                        "node selection and hard limits"
                    )
                cost = instance.added_cost(item, node_of) + pull
                cost[~feasible] = np.inf
                chosen = int(np.argmin(cost))
                node_of[item] = chosen
                free_cpu[chosen] -= instance.cpu[item]
                if free_memory is not None:
                    free_memory[chosen] -= instance.memory[item]
        return node_of

    def improve(self, node_of: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Local search: move one replica, or swap two, while that lowers the objective."""
        instance = self.instance
        node_of = node_of.copy()
        free_cpu = instance.free_cpu - np.bincount(node_of, weights=instance.cpu, minlength=instance.n).astype(np.int64)
        free_memory = None
        if instance.free_memory is not None:
            free_memory = instance.free_memory - instance.other_usage(node_of)
        on_node: dict[int, set[int]] = defaultdict(set)
        for item, node in enumerate(node_of):
            on_node[int(node)].add(item)
        improved = True
        while improved and not self.out_of_time():
            improved = False
            for item in self.rng.sample(range(instance.items), instance.items):
                if self.out_of_time():
                    break
                if not instance.neighbours[item] or instance.fixed[item] >= 0:
                    continue
                here = int(node_of[item])
                cost = instance.added_cost(item, node_of)
                allowed = instance.within_limits(item, node_of)
                free_cpu[here] += instance.cpu[item]
                if free_memory is not None:
                    free_memory[here] += instance.memory[item]
                room = instance.fits(item, free_cpu, free_memory) & allowed
                moved = cost.copy()
                moved[~room] = np.inf
                target = int(np.argmin(moved))
                if moved[target] < cost[here] - 1e-9:
                    self._move(item, here, target, node_of, on_node, free_cpu, free_memory)
                    improved = True
                    continue
                selection = instance.allowed[instance.item_workload[item]]
                eligible = allowed if selection is None else allowed & selection
                swapped = self._swap(item, here, cost, eligible, node_of, on_node, free_cpu, free_memory)
                if swapped:
                    improved = True
                    continue
                free_cpu[here] -= instance.cpu[item]
                if free_memory is not None:
                    free_memory[here] -= instance.memory[item]
        return node_of

    def _move(
        self, item: int, here: int, target: int, node_of: npt.NDArray[np.intp], on_node: dict[int, set[int]],
        free_cpu: npt.NDArray[np.int64], free_memory: npt.NDArray[np.int64] | None,
    ) -> None:  # fmt: skip
        """Put `item` (already taken off `here`'s usage) on `target`."""
        instance = self.instance
        node_of[item] = target
        on_node[here].discard(item)
        on_node[target].add(item)
        free_cpu[target] -= instance.cpu[item]
        if free_memory is not None:
            free_memory[target] -= instance.memory[item]

    def _swap(
        self, item: int, here: int, cost: npt.NDArray[np.float64], eligible: npt.NDArray[np.bool_],
        node_of: npt.NDArray[np.intp], on_node: dict[int, set[int]], free_cpu: npt.NDArray[np.int64],
        free_memory: npt.NDArray[np.int64] | None,
    ) -> bool:  # fmt: skip
        """Swap `item` with a replica on one of the few nodes it would gain most on but that lack room; `eligible`:
        the nodes the item may run on (node selection, limits)."""
        instance = self.instance
        gain = cost[here] - cost
        gain[~eligible] = -np.inf
        gain[here] = -np.inf
        best = np.argpartition(-gain, 3)[:3] if gain.size > 3 else np.arange(gain.size)
        for target in (int(t) for t in best[np.argsort(-gain[best])]):
            if gain[target] <= 1e-9:
                break
            for other in list(on_node[target])[:8]:
                if instance.item_workload[other] == instance.item_workload[item] or instance.fixed[other] >= 0:
                    continue
                cpu_ok = (
                    free_cpu[target] + instance.cpu[other] >= instance.cpu[item]
                    and free_cpu[here] >= instance.cpu[other]
                )
                memory_ok = free_memory is None or bool(
                    np.all(free_memory[target] + instance.memory[other] >= instance.memory[item])
                    and np.all(free_memory[here] >= instance.memory[other])
                )
                other_allowed = instance.allowed[instance.item_workload[other]]
                if not (cpu_ok and memory_ok) or (other_allowed is not None and not other_allowed[here]):
                    continue
                before = instance.objective_part(item, other, node_of)
                node_of[item], node_of[other] = target, here
                legal = instance.within_limits(item, node_of)[target] and instance.within_limits(other, node_of)[here]
                after = instance.objective_part(item, other, node_of)
                if legal and after < before - 1e-9:
                    on_node[here].discard(item)
                    on_node[target].discard(other)
                    on_node[target].add(item)
                    on_node[here].add(other)
                    free_cpu[here] -= instance.cpu[other]  # `item` was already taken off `here`
                    free_cpu[target] += instance.cpu[other] - instance.cpu[item]
                    if free_memory is not None:
                        free_memory[here] -= instance.memory[other]
                        free_memory[target] += instance.memory[other] - instance.memory[item]
                    return True
                node_of[item], node_of[other] = here, target
        return False


# --- the integer program ---------------------------------------------------------------------------------------


def pair_variable_count(instance: _Instance) -> int:
    """How many pair variables the integer program would need."""
    count = 0
    for item in range(instance.items):
        for neighbour in instance.neighbours[item]:
            if neighbour.outgoing:
                count += _candidates(instance, item).size * _candidates(instance, neighbour.item).size
    return count


def _candidates(instance: _Instance, item: int) -> npt.NDArray[np.intp]:
    mask = instance.fits(item, instance.free_cpu, instance.free_memory)
    return np.flatnonzero(mask)


def _solve_exact(
    instance: _Instance, *, time_limit_s: float, start: npt.NDArray[np.intp] | None
) -> tuple[npt.NDArray[np.intp], bool] | None:
    """The integer program: (placement, proven optimal), or None when HiGHS found no placement in time.

    x[i, n] = 1 puts replica i on node n. For each replica pair (i calls j) the pair variables y[n, m] are tied to
    both assignments (sum over m of y[n, m] = x[i, n], sum over n of y[n, m] = x[j, m]), which makes y the product
    of the two for 0/1 x and gives a far tighter relaxation than y >= x + x - 1. Replicas of one workload are
    interchangeable, so they are ordered by node index (no symmetric copies to search)."""
    model = pulp.LpProblem("plan", pulp.LpMinimize)
    candidates = [_candidates(instance, i) for i in range(instance.items)]
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    for i in range(instance.items):
        if not candidates[i].size:
            raise InfeasibleError(f"{_item_name(instance, i)} fits on no node")
        for n in candidates[i]:
            x[(i, int(n))] = model.add_variable(f"x_{i}_{n}", cat="Binary")
    objective = []
    for i in range(instance.items):
        for neighbour in instance.neighbours[i]:
            if not neighbour.outgoing:
                continue
            j = neighbour.item
            edge = instance.problem.edges[neighbour.edge]
            price = instance.price_matrix(edge)
            limits = (
                {int(m): instance.limit_column(edge, int(m), outgoing=True) for m in candidates[j]}
                if edge.limited else {}
            )  # fmt: skip
            y: dict[tuple[int, int], pulp.LpVariable] = {}
            for n in candidates[i]:
                for m in candidates[j]:
                    n_, m_ = int(n), int(m)
                    if limits and not limits[m_][n_]:
                        model += x[(i, n_)] + x[(j, m_)] <= 1
                        continue
                    y[(n_, m_)] = model.add_variable(f"y_{i}_{j}_{n_}_{m_}", 0, 1)
                    if n_ != m_:
                        objective.append(neighbour.weight * float(price[n_, m_]) * y[(n_, m_)])
            for n in candidates[i]:
                row = [y[(int(n), int(m))] for m in candidates[j] if (int(n), int(m)) in y]
                model += pulp.lpSum(row) >= x[(i, int(n))] if not row else pulp.lpSum(row) == x[(i, int(n))]
            for m in candidates[j]:
                column = [y[(int(n), int(m))] for n in candidates[i] if (int(n), int(m)) in y]
                model += pulp.lpSum(column) >= x[(j, int(m))] if not column else pulp.lpSum(column) == x[(j, int(m))]
    model += pulp.lpSum(objective)
    for i in range(instance.items):
        model += pulp.lpSum(x[(i, int(n))] for n in candidates[i]) == 1
    for n in range(instance.n):
        on = [i for i in range(instance.items) if (i, n) in x]
        model += pulp.lpSum(int(instance.cpu[i]) * x[(i, n)] for i in on) <= int(instance.free_cpu[n])
        if instance.free_memory is not None:
            for r in range(instance.memory.shape[1]):
                if instance.free_memory[n, r] < np.iinfo(np.int64).max // 4:  # a column not given: no limit
                    model += pulp.lpSum(int(instance.memory[i, r]) * x[(i, n)] for i in on) <= int(
                        instance.free_memory[n, r]
                    )
    for items in instance.items_of:
        for first, second in itertools.pairwise(items):
            model += pulp.lpSum(n * x[(first, int(n))] for n in candidates[first]) <= pulp.lpSum(
                n * x[(second, int(n))] for n in candidates[second]
            )
    if start is not None:
        for (i, n), variable in x.items():
            variable.setInitialValue(1 if int(start[i]) == n else 0)
    with quiet_stdout():  # highspy prints its banner to fd 1 even with msg=False
        model.solve(pulp.HiGHS(msg=False, timeLimit=max(0.1, time_limit_s), warmStart=start is not None))
    if model.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return None
    node_of = np.full(instance.items, -1, dtype=np.intp)
    for (i, n), variable in x.items():
        if variable.value() is not None and variable.value() > 0.5:
            node_of[i] = n
    if np.any(node_of < 0):
        return None
    return node_of, model.sol_status == pulp.LpSolutionOptimal


def _item_name(instance: _Instance, item: int) -> str:
    workload = instance.problem.workloads[instance.item_workload[item]]
    return f"{workload.name} ({workload.cpu_m}m CPU)"


# --- planning ----------------------------------------------------------------------------------------------------


def plan(
    problem: PlanningProblem,
    *,
    time_limit_s: float = 10.0,
    start: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    exact: bool | None = None,
) -> Plan:
    """The best placement of every replica found within `time_limit_s`.

    `start`: a placement to improve on (the pods where they run today), used when it is feasible. `exact`: True
    insists on the integer program (InfeasibleError if it cannot prove its answer), False skips it, None (default)
    uses it when the instance is small enough. InfeasibleError when the group cannot fit."""
    started = time.monotonic()
    instance = _Instance(problem)
    if instance.items == 0:
        return _result(instance, np.zeros(0, dtype=np.intp), optimal=True, method="nothing to place", started=started)
    search = _Search(instance, random.Random(seed), deadline_s=started + time_limit_s)
    use_exact = exact if exact is not None else pair_variable_count(instance) <= IP_MAX_PAIR_VARIABLES
    # The heuristic runs first: it is the integer program's warm start and the answer if the program runs out of
    # time. With the program to follow it gets a small share of the time.
    heuristic_deadline = started + (min(1.0, time_limit_s / 4) if use_exact else time_limit_s)
    search.deadline_s = heuristic_deadline
    best: npt.NDArray[np.intp] | None = None
    best_value = math.inf
    starts: list[npt.NDArray[np.intp]] = []
    given = _from_placements(instance, start) if start else None
    if given is not None:
        starts.append(given)
    anchors = search.anchors(3)
    failure: InfeasibleError | None = None
    for number, anchor in enumerate(anchors):
        if number and search.out_of_time():
            break
        try:
            starts.append(search.greedy(anchor))
        except InfeasibleError as error:
            failure = failure or error
    for node_of in starts:
        improved = search.improve(node_of)
        value = instance.objective(improved)
        if value < best_value - 1e-12:
            best, best_value = improved, value
        if search.out_of_time():
            break
    method = "local search"
    optimal = False
    if use_exact:
        remaining = started + time_limit_s - time.monotonic()
        solved = _solve_exact(instance, time_limit_s=remaining, start=best)
        if solved is not None:
            node_of, proven = solved
            value = instance.objective(node_of)
            # The heuristic's placement is kept unless the program's is strictly better: among equally good
            # placements (many, when the group fits on one node) the heuristic's is the deterministic one, so a
            # group planned again as its pods arrive keeps going where its first pods went.
            if best is None or value < best_value - 1e-9:
                best, best_value = node_of, value
            optimal = proven  # proven: nothing is better than the program's value, nor than ours (<= it)
            if proven or best is node_of:
                method = "integer program"
        elif best is None:
            raise InfeasibleError("the group fits on no combination of nodes (integer program: no solution)")
        if exact and not optimal:
            raise InfeasibleError(f"the integer program did not prove a placement optimal in {time_limit_s:g} s")
    if best is None:
        raise failure or InfeasibleError("no placement found")
    return _result(instance, best, optimal=optimal, method=method, started=started)


def _from_placements(
    instance: _Instance, placements: Mapping[str, Sequence[str]], *, check_fit: bool = True
) -> npt.NDArray[np.intp] | None:
    """A given placement as item -> node, or None when it does not cover the group on known nodes, moves a running
    replica or (with `check_fit`) does not fit."""
    position = {name: i for i, name in enumerate(instance.problem.nodes)}
    node_of = np.full(instance.items, -1, dtype=np.intp)
    for w, workload in enumerate(instance.problem.workloads):
        nodes = [position.get(n, -1) for n in placements.get(workload.name, [])]
        items = instance.items_of[w]
        if len(nodes) != len(items) or -1 in nodes:
            return None
        for item in items:  # running replicas first, each on its own node
            if instance.fixed[item] >= 0:
                if int(instance.fixed[item]) not in nodes:
                    return None
                nodes.remove(int(instance.fixed[item]))
                node_of[item] = instance.fixed[item]
        node_of[[i for i in items if instance.fixed[i] < 0]] = nodes
    return node_of if not check_fit or instance.usage_ok(node_of) else None


def _result(instance: _Instance, node_of: npt.NDArray[np.intp], *, optimal: bool, method: str, started: float) -> Plan:
    edges = instance.edge_times(node_of)
    return Plan(
        placements=instance.placements(node_of),
        predicted_ms=sum(e.ms for e in edges),
        objective_value=instance.objective(node_of),
        optimal=optimal,
        method=method,
        edges=edges,
        seconds=time.monotonic() - started,
    )


def evaluate(problem: PlanningProblem, placements: Mapping[str, Sequence[str]]) -> tuple[float, tuple[EdgeTime, ...]]:
    """The predicted network ms per request of a given placement, and its per-edge breakdown."""
    instance = _Instance(problem)
    node_of = _from_placements(instance, placements, check_fit=False)
    if node_of is None:
        raise ValueError("the placement must put every replica on a known node (running ones where they run)")
    edges = instance.edge_times(node_of)
    return sum(e.ms for e in edges), edges


def placement_network_ms(group: AppGroup, topology: DenseTopology, placements: Mapping[str, Sequence[str]]) -> float:
    """The predicted network ms per request of the AppGroup's replicas where `placements` puts them; an edge with an
    end not placed yet counts 0 (so a partial placement gives the time of the calls it already fixes)."""
    nodes = sorted({node for used in placements.values() for node in used})
    if not nodes:
        return 0.0
    problem = PlanningProblem.from_appgroup(
        group,
        replicas={w: len(placements.get(w, ())) for w in group.workload_names},
        cpu_m={},
        nodes=nodes,
        free_cpu_m=[0] * len(nodes),
        topology=topology,
    )
    return evaluate(problem, placements)[0]


# --- nodes.csv -------------------------------------------------------------------------------------------------

NODES_CSV_COLUMNS = ("name", "zone", "cpu_millicores")


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    zone: str
    free_cpu_m: int


def parse_nodes_csv(text: str) -> list[NodeRow]:
    """`name,zone,cpu_millicores` rows (free CPU per node) -> NodeRow; errors name the line."""
    import csv  # local: only this parser needs it
    import io

    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != NODES_CSV_COLUMNS:
        raise ValueError(f"line 1: header must be {','.join(NODES_CSV_COLUMNS)}, got {header!r}")
    rows: list[NodeRow] = []
    seen: set[str] = set()
    for line_number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(NODES_CSV_COLUMNS):
            raise ValueError(f"line {line_number}: expected {len(NODES_CSV_COLUMNS)} columns, got {len(row)}")
        name, zone, cpu = (cell.strip() for cell in row)
        if not name:
            raise ValueError(f"line {line_number}: name must not be empty")
        if name in seen:
            raise ValueError(f"line {line_number}: node {name} is listed twice")
        try:
            free = int(cpu)
        except ValueError:
            raise ValueError(f"line {line_number}: cpu_millicores must be an integer, got {cpu!r}") from None
        if free < 0:
            raise ValueError(f"line {line_number}: cpu_millicores must be >= 0, got {free}")
        seen.add(name)
        rows.append(NodeRow(name, zone, free))
    if not rows:
        raise ValueError("no nodes")
    return rows
