"""Scoring candidate nodes for one pod of an AppGroup workload, and filtering those that break hard limits.

For a pod of workload `a` on candidate node n (DESIGN.md):

    dependencyCost = sum over d that a calls:  appWeight(a,d) * mean over replicas of d on m of linkCost(n, m)
    dependantCost  = sum over c that call a:   appWeight(c,a) * mean over replicas of c on m of linkCost(m, n)
    totalCost      = dependencyCost + dependantCost
    score          = MAX_SCORE / (1 + totalCost)

Workloads without placed replicas add nothing; a pod with no placed neighbour at all is scored by how central each
candidate is in the network instead (`_start_cost`), where the formula would rate every candidate the same.

The mean over replicas is a matrix-vector product: replica counts per distinct node times rows of the link-cost
matrix, so one call reads (distinct replica nodes) x N floats and never the whole matrix.

The extender score (0..10) spreads the candidates' scores over kube-scheduler's whole extender range: the best
candidate gets 10, the worst 0, linear between. The absolute score of a good placement is often 95 vs 93 out of
100, which rounds to the same 9 out of 10; spreading keeps that difference visible to kube-scheduler, which weighs
the extender's 10 like one in-tree plugin's 100.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netaware.core.appgroup import AppGroup, Dependency
from netaware.core.costs import LinkCosts

MAX_SCORE = 100.0
"""The netaware score of a node whose links to every dependency and dependant cost nothing."""
MAX_EXTENDER_SCORE = 10
"""kube-scheduler's MaxExtenderPriority: extender scores are 0..10 and are scaled by 10 inside the scheduler."""

Placements = Mapping[str, Sequence[str]]
"""Workload name -> node names of its placed replicas (one entry per replica)."""

FloatVector = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NodeScore:
    node: str
    dependency_cost: float
    dependant_cost: float
    total_cost: float
    score: float
    extender_score: int
    filtered: str | None = None
    """Why the node breaks a hard limit; None when it passes."""


# A strategy turns the link costs from every candidate to the replicas of one peer workload into one cost per
# candidate. `outgoing` says whether the candidate is the caller (links n -> m) or the callee (links m -> n); the
# last argument is where the candidate's own workload already has replicas (a router's choice depends on them).
ReplicaAggregation = Callable[
    [LinkCosts, Sequence[str], npt.NDArray[np.intp], Sequence[str], bool, Sequence[str]], FloatVector
]


def _mean_over_replicas(
    link_costs: LinkCosts,
    candidate_names: Sequence[str],
    candidate_index: npt.NDArray[np.intp],
    replica_nodes: Sequence[str],
    outgoing: bool,
    own_replicas: Sequence[str] = (),
) -> FloatVector:
    """`seed`: mean linkCost over the replicas, each replica counted once (two on one node count twice)."""
    topology = link_costs.topology
    rows = link_costs.cost_by_destination if outgoing else link_costs.cost
    per_node = Counter(replica_nodes)
    known = [(topology.index[m], k) for m, k in per_node.items() if m in topology.index]
    unknown_replicas = sum(k for m, k in per_node.items() if m not in topology.index)
    in_topology = candidate_index >= 0
    total = np.zeros(len(candidate_names), dtype=np.float64)
    if known:
        idx = np.fromiter((i for i, _ in known), dtype=np.intp, count=len(known))
        counts = np.fromiter((k for _, k in known), dtype=np.float64, count=len(known))
        wanted = candidate_index[in_topology]
        if 4 * len(wanted) < rows.shape[1]:  # a small subset: gather just its columns
            total[in_topology] = counts @ rows[np.ix_(idx, wanted)]
        else:  # most nodes: whole rows are cheaper than a scattered gather
            total[in_topology] = (counts @ rows[idx])[wanted]
    # Links the topology cannot price cost the worst: known candidate to a replica on an unknown node, and an
    # unknown candidate to any replica that is not on that very node.
    total[in_topology] += link_costs.worst_link_cost * unknown_replicas
    for position in np.flatnonzero(~in_topology):
        name = candidate_names[int(position)]
        total[position] = link_costs.worst_link_cost * (len(replica_nodes) - per_node.get(name, 0))
    return total / len(replica_nodes)


ROUTED_NEAR_SHARE = 0.8
"""`routed`: the share of a caller's calls its router sends to its nearest replica; the rest spread over all. Set
when the lab measured Prequal sending 59-62% to the nearer of two replicas 20 and 40 ms away at 40 requests/s; since
the router counts its own requests itself it sends 97% there when both are idle, and spreads by load only when the
near one is busy: nearest-first, softened by load (not re-tuned since)."""


def _link_cost_matrix(
    link_costs: LinkCosts,
    candidate_names: Sequence[str],
    candidate_index: npt.NDArray[np.intp],
    replica_nodes: Sequence[str],
    outgoing: bool,
) -> npt.NDArray[np.float64]:
    """replicas x candidates: linkCost(candidate -> replica) when `outgoing`, else linkCost(replica -> candidate);
    a link the topology cannot price costs the worst, a replica on the candidate node itself nothing."""
    topology = link_costs.topology
    rows = link_costs.cost_by_destination if outgoing else link_costs.cost
    matrix = np.full((len(replica_nodes), len(candidate_names)), link_costs.worst_link_cost, dtype=np.float64)
    known = candidate_index >= 0
    for i, node in enumerate(replica_nodes):
        m = topology.index.get(node)
        if m is not None:
            matrix[i, known] = rows[m, candidate_index[known]]
        matrix[i, [j for j, name in enumerate(candidate_names) if name == node]] = 0.0
    return matrix


def _near_first(nearest: npt.NDArray[np.float64], mean: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The expected link cost of a caller whose router sends ROUTED_NEAR_SHARE of its calls to its cheapest replica
    (`nearest`) and spreads the rest over all of them (`mean`)."""
    return ROUTED_NEAR_SHARE * nearest + (1 - ROUTED_NEAR_SHARE) * mean


def _routed(
    link_costs: LinkCosts,
    candidate_names: Sequence[str],
    candidate_index: npt.NDArray[np.intp],
    replica_nodes: Sequence[str],
    outgoing: bool,
    own_replicas: Sequence[str] = (),
) -> FloatVector:
    """`routed`: each caller's calls go where its router sends them (ROUTED_NEAR_SHARE to its nearest replica), not
    evenly over the replicas. As the caller, the candidate's expected cost over the callee's replicas. As a callee
    replica, the callers' mean expected cost over this workload's replicas with the candidate among them: a
    candidate that gives callers without a near replica one lowers it most, so replicas spread to where callers
    are, where the mean over replicas packs them at the callers' centre."""
    costs = _link_cost_matrix(link_costs, candidate_names, candidate_index, replica_nodes, outgoing)
    if outgoing:
        return _near_first(costs.min(axis=0), costs.mean(axis=0))
    if not own_replicas:
        return costs.mean(axis=0)  # type: ignore[no-any-return]
    # callers x own replicas placed so far; then each caller's cost over them and the candidate, per candidate
    own_index = np.fromiter((link_costs.topology.index.get(n, -1) for n in own_replicas), dtype=np.intp)
    placed = _link_cost_matrix(link_costs, own_replicas, own_index, replica_nodes, outgoing=False)
    nearest = np.minimum(costs, placed.min(axis=1, keepdims=True))
    mean = (costs + placed.sum(axis=1, keepdims=True)) / (len(own_replicas) + 1)
    return _near_first(nearest, mean).mean(axis=0)  # type: ignore[no-any-return]


STRATEGIES: dict[str, ReplicaAggregation] = {"seed": _mean_over_replicas, "routed": _routed}
DEFAULT_STRATEGY = "seed"
PRICES_OWN_REPLICAS = frozenset({"routed"})
"""Strategies whose price of a replica depends on where the workload's other replicas run: the AppGroup controller
releases such a workload's pods one at a time, so that each is scored with its siblings' bindings known."""


class UnknownStrategyError(ValueError):
    pass


def _strategy(name: str) -> ReplicaAggregation:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise UnknownStrategyError(f"unknown strategy {name!r} (known: {known})") from None


# Distinct candidate lists remembered per cost matrix (the feasible set changes rarely between pods).
CANDIDATE_CACHE_ENTRIES = 16


def candidate_indices(link_costs: LinkCosts, candidates: Sequence[str]) -> npt.NDArray[np.intp]:
    """Topology index of each candidate, -1 for a node the topology does not know (cached per list)."""
    key = tuple(candidates)
    cache = link_costs.candidate_index_cache
    cached = cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    index = link_costs.topology.index
    resolved = np.fromiter((index.get(n, -1) for n in candidates), dtype=np.intp, count=len(candidates))
    resolved.setflags(write=False)  # shared between requests
    if len(cache) >= CANDIDATE_CACHE_ENTRIES:
        # Oldest first (dicts keep insertion order). Request threads share the cache: another thread may have
        # evicted the same entry, or emptied the dict, in between.
        with contextlib.suppress(KeyError, StopIteration, RuntimeError):
            cache.pop(next(iter(cache)))
    cache[key] = resolved
    return resolved


def workload_costs(
    *,
    link_costs: LinkCosts,
    appgroup: AppGroup,
    workload: str,
    placements: Placements,
    candidates: Sequence[str],
    candidate_index: npt.NDArray[np.intp] | None = None,
    strategy: str = DEFAULT_STRATEGY,
) -> tuple[FloatVector, FloatVector]:
    """(dependencyCost, dependantCost) for every candidate, in candidate order."""
    aggregate = _strategy(strategy)
    own = appgroup.workload(workload)
    positions = candidate_indices(link_costs, candidates) if candidate_index is None else candidate_index
    mine = placements.get(workload, ())
    dependency_cost = np.zeros(len(candidates), dtype=np.float64)
    for dependency in own.dependencies:
        replicas = placements.get(dependency.workload, ())
        if replicas:
            dependency_cost += dependency.weight * aggregate(link_costs, candidates, positions, replicas, True, mine)
    dependant_cost = np.zeros(len(candidates), dtype=np.float64)
    for caller, dependency in appgroup.callers_of(workload):
        replicas = placements.get(caller, ())
        if replicas:
            dependant_cost += dependency.weight * aggregate(link_costs, candidates, positions, replicas, False, mine)
    return dependency_cost, dependant_cost


def score_from_cost(total_cost: FloatVector) -> FloatVector:
    """score = MAX_SCORE / (1 + totalCost)."""
    return MAX_SCORE / (1.0 + total_cost)


def spread_extender_scores(scores: FloatVector, eligible: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """Map scores to 0..10 linearly between the worst and best eligible candidate; all equal -> all 0.

    Ineligible (filtered) candidates get 0. Equal scores give every node the same 0: the extender then adds
    nothing and kube-scheduler's own plugins decide.
    """
    eligible = np.ones(len(scores), dtype=bool) if eligible is None else eligible
    result = np.zeros(len(scores), dtype=np.int64)
    if eligible.any():
        low, high = float(scores[eligible].min()), float(scores[eligible].max())
        # Scores closer than this are the same placement quality (float32 link costs carry ~7 digits).
        if high - low > 1e-6 * MAX_SCORE:
            scaled = np.rint(MAX_EXTENDER_SCORE * (scores - low) / (high - low)).astype(np.int64)
            result = np.where(eligible, scaled, 0)
    return result


@dataclass(frozen=True)
class ScoreTable:
    """Scores of every candidate as arrays in candidate order; `ranked()` turns them into NodeScore rows."""

    candidates: Sequence[str]
    dependency_cost: FloatVector
    dependant_cost: FloatVector
    total_cost: FloatVector
    score: FloatVector
    extender_score: npt.NDArray[np.int64]
    filtered: Mapping[int, str]
    """Candidate position -> why it breaks a hard limit."""

    def ranked(self) -> list[NodeScore]:
        """Best first, filtered last (ties by node name)."""
        rows = [
            NodeScore(
                node=node,
                dependency_cost=float(self.dependency_cost[i]),
                dependant_cost=float(self.dependant_cost[i]),
                total_cost=float(self.total_cost[i]),
                score=float(self.score[i]),
                extender_score=int(self.extender_score[i]),
                filtered=self.filtered.get(i),
            )
            for i, node in enumerate(self.candidates)
        ]
        rows.sort(key=lambda s: (s.filtered is not None, -s.score, s.node))
        return rows


def filter_hard_limits(
    *,
    link_costs: LinkCosts,
    appgroup: AppGroup,
    workload: str,
    placements: Placements,
    candidates: Sequence[str],
    candidate_index: npt.NDArray[np.intp] | None = None,
) -> dict[int, str]:
    """Candidate position -> reason, for candidates whose link to a placed peer breaks a hard limit.

    The limits of `a -> d` apply to the link from a's node to d's node, whichever side is being scheduled.
    An unmeasured link cannot be shown to meet a limit, so it fails it. Co-location always passes.
    """
    own = appgroup.workload(workload)
    checks: list[tuple[Dependency, str, bool]] = [(d, d.workload, True) for d in own.dependencies if _has_limit(d)]
    checks += [(d, caller, False) for caller, d in appgroup.callers_of(workload) if _has_limit(d)]
    if not checks:
        return {}
    positions = candidate_indices(link_costs, candidates) if candidate_index is None else candidate_index
    known = positions >= 0
    safe = np.where(known, positions, 0)
    topology = link_costs.topology
    failures: dict[int, str] = {}
    for dependency, peer, outgoing in checks:
        for peer_node in dict.fromkeys(placements.get(peer, ())):
            m = topology.index.get(peer_node)
            same_node = np.fromiter((c == peer_node for c in candidates), dtype=bool, count=len(candidates))
            for name, matrix, limit, too_far in _limit_checks(link_costs, dependency):
                values = (
                    np.full(len(candidates), np.nan, dtype=np.float32)
                    if m is None
                    else np.where(known, matrix[safe, m] if outgoing else matrix[m, safe], np.nan)
                )
                broken = (np.isnan(values) | too_far(values)) & ~same_node
                for position in (int(p) for p in np.flatnonzero(broken)):
                    if position in failures:
                        continue
                    origin, destination = (
                        (candidates[position], peer_node) if outgoing else (peer_node, candidates[position])
                    )
                    value = float(values[position])
                    what = (
                        f"has no {name} measurement ({_LIMIT_NAMES[name]} {limit:g})"
                        if np.isnan(value)
                        else f"{name} {value:.{_DIGITS[name]}f}{_UNITS[name]} "
                        f"{'<' if name == 'bandwidth' else '>'} {_LIMIT_NAMES[name]} {limit:g}"
                    )
                    failures[position] = f"{workload}<->{peer} on {peer_node}: link {origin}->{destination} {what}"
    return failures


_LIMIT_NAMES = {"RTT": "maxLatencyMs", "bandwidth": "minBandwidthMbps", "network cost": "maxNetworkCost"}
_UNITS = {"RTT": " ms", "bandwidth": " Mbit/s", "network cost": ""}
_DIGITS = {"RTT": 1, "bandwidth": 1, "network cost": 3}

LimitCheck = tuple[str, npt.NDArray[np.float32], float, Callable[[npt.NDArray[np.float32]], npt.NDArray[np.bool_]]]


def _limit_checks(link_costs: LinkCosts, dependency: Dependency) -> list[LimitCheck]:
    """(metric name, matrix, limit, predicate of a broken value) for each limit the dependency sets."""
    topology = link_costs.topology
    checks: list[LimitCheck] = []
    if dependency.max_latency_ms is not None:
        max_latency = dependency.max_latency_ms
        checks.append(("RTT", topology.rtt_ms, max_latency, lambda v: v > max_latency))
    if dependency.min_bandwidth_mbps is not None:
        min_bandwidth = dependency.min_bandwidth_mbps
        checks.append(("bandwidth", topology.bandwidth_mbps, min_bandwidth, lambda v: v < min_bandwidth))
    if dependency.max_network_cost is not None:
        max_cost = dependency.max_network_cost
        checks.append(("network cost", link_costs.cost, max_cost, lambda v: v > max_cost))
    return checks


def _has_limit(dependency: Dependency) -> bool:
    return (
        dependency.max_latency_ms is not None
        or dependency.min_bandwidth_mbps is not None
        or dependency.max_network_cost is not None
    )


def _has_placed_neighbour(appgroup: AppGroup, workload: str, placements: Placements) -> bool:
    return any(placements.get(name) for name in appgroup.neighbour_weights(workload))


def _start_cost(link_costs: LinkCosts, positions: npt.NDArray[np.intp]) -> FloatVector:
    """The cost of a candidate for a pod none of whose neighbours is placed yet (the first pod of a group).

    The cost function is indifferent then (every candidate costs 0), and kube-scheduler's spreading would pick any
    zone. Prefer the nodes best connected to the rest of the cluster (mean link cost to and from every node): the
    group grows from there, and whatever does not fit next to it spills over the cheapest links. In the lab's
    three-zones profile that is the middle zone (20 and 30 ms away) rather than an edge one (20/40 or 30/40 ms).
    """
    cost = np.full(len(positions), link_costs.worst_link_cost, dtype=np.float64)
    known = positions >= 0
    cost[known] = link_costs.centrality[positions[known]]
    return cost


def score_candidates(
    *,
    link_costs: LinkCosts,
    appgroup: AppGroup,
    workload: str,
    placements: Placements,
    candidates: Sequence[str],
    candidate_index: npt.NDArray[np.intp] | None = None,
    strategy: str = DEFAULT_STRATEGY,
) -> ScoreTable:
    """Score and filter every candidate for one pod of `workload`, as arrays (the extender's hot path).

    `candidate_index` (from `candidate_indices`) may be passed when the caller already resolved the names.
    """
    positions = candidate_indices(link_costs, candidates) if candidate_index is None else candidate_index
    dependency_cost, dependant_cost = workload_costs(
        link_costs=link_costs,
        appgroup=appgroup,
        workload=workload,
        placements=placements,
        candidates=candidates,
        candidate_index=positions,
        strategy=strategy,
    )
    total = dependency_cost + dependant_cost
    if not _has_placed_neighbour(appgroup, workload, placements):
        total = _start_cost(link_costs, positions)
    scores = score_from_cost(total)
    failures = filter_hard_limits(
        link_costs=link_costs,
        appgroup=appgroup,
        workload=workload,
        placements=placements,
        candidates=candidates,
        candidate_index=positions,
    )
    eligible = np.ones(len(candidates), dtype=bool)
    if failures:
        eligible[list(failures)] = False
    return ScoreTable(
        candidates=candidates,
        dependency_cost=dependency_cost,
        dependant_cost=dependant_cost,
        total_cost=total,
        score=scores,
        extender_score=spread_extender_scores(scores, eligible),
        filtered=failures,
    )


def score_nodes(
    *,
    link_costs: LinkCosts,
    appgroup: AppGroup,
    workload: str,
    placements: Placements,
    candidates: Sequence[str],
    strategy: str = DEFAULT_STRATEGY,
) -> list[NodeScore]:
    """Score and filter every candidate for one pod of `workload`; one row per node, best first."""
    return score_candidates(
        link_costs=link_costs,
        appgroup=appgroup,
        workload=workload,
        placements=placements,
        candidates=candidates,
        strategy=strategy,
    ).ranked()
