"""Conversions between netaware's custom resources (camelCase dicts) and the core types (snake_case).

This is the only module that knows both spellings. Every reader raises ConversionError with the path of the
offending field, so a bad resource produces one readable line, never a KeyError.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from netaware.core.appgroup import (
    AppGroup,
    AppGroupError,
    CostWeights,
    Dependency,
    Rebalance,
    SortingAlgorithm,
    Workload,
    topological_order,
)
from netaware.core.planning import Plan
from netaware.core.quantities import cpu_millicores, memory_bytes
from netaware.core.telemetry import TelemetrySnapshot, ZoneModel, estimated_topology
from netaware.core.topology import DenseTopology, FloatMatrix, LinkMetrics, Topology, TopologyError, is_stale

GROUP = "netaware.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACE = "netaware"
"""Where netaware's components run (deploy/namespaces: Pod Security restricted)."""
PROBE_NAMESPACE = "netaware-probe"
"""Where the probe agents run: the host network needs a namespace of its own (deploy/namespaces)."""


class ConversionError(ValueError):
    """A resource that does not have the shape its CRD promises; the message names the field."""


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConversionError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConversionError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _number(value: Any, where: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConversionError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConversionError(f"{where}: expected a non-empty string, got {value!r}")
    return value


# --- AppGroup ----------------------------------------------------------------------------------------------


def weights_from_spec(spec: Mapping[str, Any] | None, where: str) -> CostWeights | None:
    if spec is None:
        return None
    spec = _mapping(spec, where)
    defaults = CostWeights()
    try:
        return CostWeights(
            latency=_number(spec.get("latency", defaults.latency), f"{where}.latency") or 0.0,
            bandwidth=_number(spec.get("bandwidth", defaults.bandwidth), f"{where}.bandwidth") or 0.0,
            loss=_number(spec.get("loss", defaults.loss), f"{where}.loss") or 0.0,
        )
    except AppGroupError as error:
        raise ConversionError(f"{where}: {error}") from None


def appgroup_from_resource(resource: Mapping[str, Any]) -> AppGroup:
    """An AppGroup CR (as a dict) -> the validated core AppGroup."""
    resource = _mapping(resource, "AppGroup")
    metadata = _mapping(resource.get("metadata") or {}, "metadata")
    name = _string(metadata.get("name"), "metadata.name")
    spec = _mapping(resource.get("spec"), "spec")
    algorithm_name = spec.get("topologySortingAlgorithm", SortingAlgorithm.KAHN.value)
    try:
        algorithm = SortingAlgorithm(algorithm_name)
    except ValueError:
        known = ", ".join(a.value for a in SortingAlgorithm)
        raise ConversionError(f"spec.topologySortingAlgorithm: unknown {algorithm_name!r} (known: {known})") from None
    if not spec.get("workloads"):
        raise ConversionError("spec.workloads: required, with at least one workload")
    workloads: list[Workload] = []
    for i, item in enumerate(_list(spec.get("workloads"), "spec.workloads")):
        where = f"spec.workloads[{i}]"
        item = _mapping(item, where)
        selector = _mapping(item.get("selector") or {}, f"{where}.selector")
        labels = _mapping(selector.get("matchLabels") or {}, f"{where}.selector.matchLabels")
        dependencies: list[Dependency] = []
        for j, dep in enumerate(_list(item.get("dependencies"), f"{where}.dependencies")):
            dwhere = f"{where}.dependencies[{j}]"
            dep = _mapping(dep, dwhere)
            dependencies.append(
                Dependency(
                    workload=_string(dep.get("workload"), f"{dwhere}.workload"),
                    weight=_number(dep.get("weight", 1.0), f"{dwhere}.weight") or 0.0,
                    max_latency_ms=_number(dep.get("maxLatencyMs"), f"{dwhere}.maxLatencyMs", optional=True),
                    min_bandwidth_mbps=_number(
                        dep.get("minBandwidthMbps"), f"{dwhere}.minBandwidthMbps", optional=True
                    ),
                    max_network_cost=_number(dep.get("maxNetworkCost"), f"{dwhere}.maxNetworkCost", optional=True),
                )
            )
        workloads.append(
            Workload(
                name=_string(item.get("name"), f"{where}.name"),
                match_labels={str(k): str(v) for k, v in labels.items()},
                dependencies=tuple(dependencies),
            )
        )
    strategy = spec.get("strategy")
    rebalance = None
    if spec.get("rebalance") is not None:
        given = _mapping(spec["rebalance"], "spec.rebalance")
        if given.get("enabled", True):
            defaults = Rebalance()
            rebalance = _rebalance(
                min_improvement_percent=_number(
                    given.get("minImprovementPercent", defaults.min_improvement_percent),
                    "spec.rebalance.minImprovementPercent",
                )
                or 0.0,
                max_pods=int(_number(given.get("maxPods", defaults.max_pods), "spec.rebalance.maxPods") or 0),
                period_s=_number(given.get("periodSeconds", defaults.period_s), "spec.rebalance.periodSeconds") or 0.0,
            )
    try:
        return AppGroup(
            name=name,
            namespace=str(metadata.get("namespace") or "default"),
            workloads=tuple(workloads),
            sorting_algorithm=algorithm,
            weights=weights_from_spec(spec.get("weights"), "spec.weights"),
            strategy=_string(strategy, "spec.strategy") if strategy is not None else None,
            rebalance=rebalance,
        )
    except AppGroupError as error:
        raise ConversionError(str(error)) from None


def _rebalance(**fields: Any) -> Rebalance:
    try:
        return Rebalance(**fields)
    except AppGroupError as error:
        raise ConversionError(f"spec.{error}") from None


def appgroup_status(
    group: AppGroup,
    placements: Mapping[str, Sequence[str]],
    *,
    strategy: str | None = None,
    pods: int | None = None,
    predicted_ms: float | None = None,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """The AppGroup status block: topology order (1-based, as scheduler-plugins), where each workload runs, and with
    what is known of them the strategy in force, placed/expected pods, the predicted network ms per request of the
    current placement, and the plan its pods are steered by (planned nodes, the largest edges' share)."""
    order = topological_order(group)
    placed = [w for w in group.workload_names if placements.get(w)]
    status: dict[str, Any] = {
        "workloadCount": len(group.workloads),
        "placedWorkloads": len(placed),
        "orderSummary": " > ".join(order),
        "topologyOrder": [{"workload": w, "index": i} for i, w in enumerate(order, start=1)],
        "placements": [{"workload": w, "nodes": sorted(placements.get(w, ()))} for w in group.workload_names],
    }
    if strategy is not None:
        status["strategy"] = strategy
    if pods is not None:
        placed_pods = sum(len(nodes) for nodes in placements.values())
        status["placedPods"] = placed_pods
        status["pods"] = pods
        status["placedSummary"] = f"{placed_pods}/{pods}"
    if predicted_ms is not None:
        status["predictedNetworkMs"] = round(predicted_ms, 3)
    if plan is not None:
        status["plan"] = {
            "predictedNetworkMs": round(plan.predicted_ms, 3),
            "optimal": plan.optimal,
            "method": plan.method,
            "placements": [{"workload": w, "nodes": sorted(plan.placements.get(w, ()))} for w in group.workload_names],
            "largestEdges": [
                {"caller": e.caller, "callee": e.callee, "ms": round(e.ms, 3), "share": round(share, 3)}
                for e, share in plan.largest_edges()
            ],
        }
    return status


# --- an app's manifests, for planning ------------------------------------------------------------------------

OWNER_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")
"""Controllers whose pod template and replica count make a workload's pods."""


@dataclass(frozen=True)
class WorkloadPods:
    """What the planner needs of one AppGroup workload's controller."""

    owner: str
    """kind/name of the controller."""
    replicas: int
    cpu_m: int
    """CPU request of one pod (a container's limit when it sets no request, as Kubernetes defaults it)."""
    memory_bytes: int
    pod_spec: Mapping[str, Any]


def _pod_requests(spec: Mapping[str, Any], where: str) -> tuple[int, int]:
    """CPU (millicores) and memory (bytes) one pod requests: its containers' sum, or an init container's if
    larger (Kubernetes' effective request)."""

    def total(containers: list[Any], path: str) -> tuple[list[int], list[int]]:
        cpu, memory = [], []
        for k, container in enumerate(containers):
            resources = _mapping(_mapping(container, f"{path}[{k}]").get("resources") or {}, f"{path}[{k}].resources")
            requests = {
                **_mapping(resources.get("limits") or {}, "limits"),
                **_mapping(resources.get("requests") or {}, "requests"),
            }
            cpu.append(cpu_millicores(requests.get("cpu")))
            try:
                memory.append(memory_bytes(requests["memory"]) if "memory" in requests else 0)
            except ValueError as error:
                raise ConversionError(f"{path}[{k}].resources: {error}") from None
        return cpu, memory

    cpu, memory = total(_list(spec.get("containers"), f"{where}.containers"), f"{where}.containers")
    init_cpu, init_memory = total(
        _list(spec.get("initContainers"), f"{where}.initContainers"), f"{where}.initContainers"
    )
    return max([sum(cpu), *init_cpu]), max([sum(memory), *init_memory])


def workload_pods(documents: Iterable[Any], group: AppGroup) -> dict[str, WorkloadPods]:
    """Each AppGroup workload's controller among `documents` (Deployments, StatefulSets, ReplicaSets in the
    group's namespace whose pod template labels the workload's selector matches): replicas, requests, pod spec.
    A workload no controller matches, or more than one, is a ConversionError."""
    owners: list[tuple[str, Mapping[str, Any]]] = []
    for number, document in enumerate(documents):
        if not isinstance(document, Mapping) or document.get("kind") not in OWNER_KINDS:
            continue
        metadata = _mapping(document.get("metadata") or {}, f"document {number + 1}: metadata")
        if str(metadata.get("namespace") or "default") != group.namespace:
            continue
        owners.append((f"{document['kind']}/{metadata.get('name')}", document))
    found: dict[str, WorkloadPods] = {}
    for workload in group.workloads:
        matching = []
        for owner, document in owners:
            template = _mapping(
                _mapping(document.get("spec"), f"{owner}: spec").get("template"), f"{owner}: spec.template"
            )
            labels = _mapping(
                _mapping(template.get("metadata") or {}, f"{owner}: metadata").get("labels") or {}, "labels"
            )
            if workload.matches({str(k): str(v) for k, v in labels.items()}):
                matching.append((owner, document, template))
        if not matching:
            raise ConversionError(
                f"workload {workload.name}: no Deployment, StatefulSet or ReplicaSet in namespace {group.namespace} "
                f"has pod labels matching {dict(workload.match_labels)}"
            )
        if len(matching) > 1:
            names = ", ".join(owner for owner, _, _ in matching)
            raise ConversionError(
                f"workload {workload.name}: its selector matches {len(matching)} controllers ({names})"
            )
        owner, document, template = matching[0]
        replicas = document["spec"].get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ConversionError(f"{owner}: spec.replicas must be an integer >= 0, got {replicas!r}")
        pod_spec = _mapping(template.get("spec"), f"{owner}: spec.template.spec")
        cpu, memory = _pod_requests(pod_spec, f"{owner}: spec.template.spec")
        found[workload.name] = WorkloadPods(owner, replicas, cpu, memory, pod_spec)
    return found


# --- NetworkTopology ---------------------------------------------------------------------------------------


def parse_timestamp(value: str, where: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ConversionError(f"{where}: expected an RFC 3339 time, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ZONES_RESOURCE = "netaware-zones"
"""The compact form's zone model (one object for the cluster): every zone pair's base RTT and means."""
ESTIMATE_ROWS = 512
"""Rows of the dense matrices estimated at once: bounds the temporaries at 5,000 nodes to 10 MB each."""


def _link_item(destination: str, metrics: LinkMetrics) -> dict[str, Any]:
    item: dict[str, Any] = {
        "destination": destination,
        "rttMs": round(metrics.rtt_ms, 3),
        "jitterMs": round(metrics.jitter_ms, 3),
        "lossRatio": round(metrics.loss_ratio, 5),
        "samples": metrics.samples,
        "source": metrics.source,
    }
    if metrics.bandwidth_mbps is not None:
        item["bandwidthMbps"] = round(metrics.bandwidth_mbps, 2)
    if metrics.measured_at_s is not None:
        item["measuredAt"] = format_timestamp(metrics.measured_at_s)
    return item


def _parse_link(item: Any, where: str) -> tuple[str, LinkMetrics]:
    item = _mapping(item, where)
    destination = _string(item.get("destination"), f"{where}.destination")
    measured_at = item.get("measuredAt")
    try:
        return destination, LinkMetrics(
            rtt_ms=_number(item.get("rttMs"), f"{where}.rttMs") or 0.0,
            jitter_ms=_number(item.get("jitterMs", 0.0), f"{where}.jitterMs") or 0.0,
            loss_ratio=_number(item.get("lossRatio", 0.0), f"{where}.lossRatio") or 0.0,
            bandwidth_mbps=_number(item.get("bandwidthMbps"), f"{where}.bandwidthMbps", optional=True),
            samples=int(item.get("samples", 0)),
            measured_at_s=parse_timestamp(measured_at, f"{where}.measuredAt") if measured_at else None,
            source="estimated" if item.get("source") == "estimated" else "measured",
        )
    except TopologyError as error:
        raise ConversionError(f"{where}: {error}") from None


def _by_origin(links: Mapping[tuple[str, str], LinkMetrics]) -> dict[str, list[tuple[str, LinkMetrics]]]:
    grouped: dict[str, list[tuple[str, LinkMetrics]]] = defaultdict(list)
    for (origin, destination), metrics in links.items():
        grouped[origin].append((destination, metrics))
    return grouped


def _origin_status(links: Sequence[tuple[str, LinkMetrics]], *, now_s: float | None, ttl_s: float) -> dict[str, Any]:
    status: dict[str, Any] = {
        "linkCount": len(links),
        "estimatedLinks": sum(1 for _, m in links if m.source == "estimated"),
    }
    if links:
        status["maxRttMs"] = round(max(m.rtt_ms for _, m in links), 3)
        status["maxLossRatio"] = round(max(m.loss_ratio for _, m in links), 5)
    bandwidths = [m.bandwidth_mbps for _, m in links if m.bandwidth_mbps is not None]
    if bandwidths:
        status["maxBandwidthMbps"] = round(max(bandwidths), 2)
    if now_s is not None:
        status["updatedAt"] = format_timestamp(now_s)
        if ttl_s > 0:
            status["staleLinks"] = sum(1 for _, m in links if is_stale(m, now_s=now_s, ttl_s=ttl_s))
    return status


def _networktopology(name: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "NetworkTopology", "metadata": {"name": name}, "spec": spec,
            "status": status}  # fmt: skip


def networktopology_resources(
    topology: Topology,
    *,
    zones: Mapping[str, str] | None = None,
    now_s: float | None = None,
    ttl_s: float = 0,
) -> list[dict[str, Any]]:
    """The full form: one NetworkTopology per origin node that has outgoing links, every pair's value written out
    (estimated ones included). n^2 links in all, each origin's row under etcd's limit up to 5,000 nodes."""
    zones = zones or {}
    by_origin = _by_origin(topology.links)
    resources = []
    for origin in topology.nodes:
        if origin not in by_origin:
            continue
        links = sorted(by_origin[origin])
        spec: dict[str, Any] = {"origin": origin, "links": [_link_item(d, m) for d, m in links]}
        if origin in zones:
            spec["zone"] = zones[origin]
        resources.append(_networktopology(origin, spec, _origin_status(links, now_s=now_s, ttl_s=ttl_s)))
    return resources


def compact_networktopology_resources(
    snapshot: TelemetrySnapshot,
    model: ZoneModel,
    nodes: Iterable[str],
    *,
    zones: Mapping[str, str],
    ttl_s: float = 0,
) -> list[dict[str, Any]]:
    """The compact form: one NetworkTopology per node with only its measured links, its offset in the zone model
    (or that it went silent) and the peers its probes go unanswered to, plus one (`ZONES_RESOURCE`) with the zone
    pairs. Readers estimate every other pair from them as the aggregator does (`core.telemetry.ZoneModel`), so the
    published size grows with the measurements, not with n^2: at 10,000 nodes under the probe budget, each node's
    object holds its few dozen fresh links."""
    names = list(dict.fromkeys(nodes))
    by_origin = _by_origin(snapshot.measured)
    unanswered: dict[str, list[str]] = defaultdict(list)
    for origin, destination in snapshot.unanswered:
        unanswered[origin].append(destination)
    resources = []
    for origin in names:
        links = sorted(by_origin.get(origin, []))
        estimates: dict[str, Any] = {}
        if origin in snapshot.silent:
            estimates["silent"] = True
        elif origin in model.offsets_ms:
            estimates["offsetMs"] = round(model.offsets_ms[origin], 4)
        spec: dict[str, Any] = {"origin": origin, "links": [_link_item(d, m) for d, m in links], "estimates": estimates}
        if unanswered.get(origin):
            spec["unanswered"] = sorted(unanswered[origin])
        if origin in zones:
            spec["zone"] = zones[origin]
        resources.append(_networktopology(origin, spec, _origin_status(links, now_s=snapshot.now_s, ttl_s=ttl_s)))
    pairs: list[dict[str, Any]] = []
    for a, zone_a in enumerate(model.zone_names):
        for b in range(a, len(model.zone_names)):
            if math.isnan(model.base_rtt_ms[a, b]):
                continue
            pairs.append({
                "zones": [zone_a, model.zone_names[b]],
                "baseRttMs": round(float(model.base_rtt_ms[a, b]), 4),
                "rttMs": round(float(model.mean_rtt_ms[a, b]), 3),
                "lossRatio": round(float(model.loss_ratio[a, b]), 5),
                "jitterMs": round(float(model.jitter_ms[a, b]), 3),
                "links": int(model.links[a, b]),
                "measuredAt": format_timestamp(float(model.measured_at_s[a, b])),
            })  # fmt: skip
            if not math.isnan(model.bandwidth_mbps[a, b]):
                pairs[-1]["bandwidthMbps"] = round(float(model.bandwidth_mbps[a, b]), 2)
    status: dict[str, Any] = {"linkCount": len(pairs), "updatedAt": format_timestamp(snapshot.now_s)}
    if pairs:
        status["maxRttMs"] = max(pair["rttMs"] for pair in pairs)
    resources.append(_networktopology(ZONES_RESOURCE, {"zonePairs": pairs}, status))
    return resources


@dataclass(frozen=True)
class _CompactOrigins:
    """What the compact form says beside the links: which origins are in it (their pairs are estimated by the
    reader), their offsets, which went silent, which pairs go unanswered; and the zone model."""

    origins: frozenset[str]
    silent: frozenset[str]
    unanswered: frozenset[tuple[str, str]]
    model: ZoneModel


def _compact_origins(resources: Sequence[Mapping[str, Any]], *, cutoff_s: float | None) -> _CompactOrigins | None:
    """The compact form's parts of `resources`, or None when none is in it (the full form: links as written)."""
    origins, silent, unanswered = set(), set(), set()
    node_zone_name: dict[str, str] = {}
    offsets: dict[str, float] = {}
    zone_pairs: list[Any] = []
    for resource in resources:
        spec = _mapping(_mapping(resource, "NetworkTopology").get("spec"), "spec")
        if "zonePairs" in spec:
            zone_pairs = _list(spec.get("zonePairs"), f"NetworkTopology {ZONES_RESOURCE}: spec.zonePairs")
            continue
        if "estimates" not in spec:
            continue
        origin = _string(spec.get("origin"), "spec.origin")
        estimates = _mapping(spec.get("estimates"), f"NetworkTopology {origin}: spec.estimates")
        origins.add(origin)
        if estimates.get("silent") is True:
            silent.add(origin)
        elif "offsetMs" in estimates and isinstance(spec.get("zone"), str):
            offsets[origin] = (
                _number(estimates["offsetMs"], f"NetworkTopology {origin}: spec.estimates.offsetMs") or 0.0
            )
            node_zone_name[origin] = spec["zone"]
        for destination in _list(spec.get("unanswered"), f"NetworkTopology {origin}: spec.unanswered"):
            unanswered.add((origin, _string(destination, f"NetworkTopology {origin}: spec.unanswered[]")))
    if not origins:
        return None
    zone_names = tuple(sorted({str(z) for pair in zone_pairs if isinstance(pair, Mapping)
                               for z in (pair.get("zones") or [])} | set(node_zone_name.values())))  # fmt: skip
    position = {zone: index for index, zone in enumerate(zone_names)}
    count = len(zone_names)
    cells = {name: np.full((count, count), np.nan) for name in ("baseRttMs", "rttMs", "lossRatio", "jitterMs")}
    bandwidth = np.full((count, count), np.nan)
    measured_at = np.full((count, count), -np.inf)
    links = np.zeros((count, count), dtype=np.int64)
    for number, pair in enumerate(zone_pairs):
        where = f"NetworkTopology {ZONES_RESOURCE}: spec.zonePairs[{number}]"
        pair = _mapping(pair, where)
        ends = _list(pair.get("zones"), f"{where}.zones")
        if len(ends) != 2:
            raise ConversionError(f"{where}.zones: expected two zones, got {ends!r}")
        a, b = position[_string(ends[0], f"{where}.zones[0]")], position[_string(ends[1], f"{where}.zones[1]")]
        for name, matrix in cells.items():
            matrix[a, b] = matrix[b, a] = _number(pair.get(name, 0.0), f"{where}.{name}") or 0.0
        if (value := _number(pair.get("bandwidthMbps"), f"{where}.bandwidthMbps", optional=True)) is not None:
            bandwidth[a, b] = bandwidth[b, a] = value
        at = parse_timestamp(_string(pair.get("measuredAt"), f"{where}.measuredAt"), f"{where}.measuredAt")
        measured_at[a, b] = measured_at[b, a] = at
        links[a, b] = links[b, a] = int(pair.get("links", 0))
    model = ZoneModel(
        zone_names=zone_names,
        base_rtt_ms=cells["baseRttMs"],
        mean_rtt_ms=cells["rttMs"],
        loss_ratio=cells["lossRatio"],
        jitter_ms=cells["jitterMs"],
        bandwidth_mbps=bandwidth,
        measured_at_s=measured_at,
        links=links,
        node_zone={node: position[zone] for node, zone in node_zone_name.items()},
        offsets_ms=offsets,
    )
    if cutoff_s is not None:
        model = model.measured_since(cutoff_s)
    return _CompactOrigins(frozenset(origins), frozenset(silent), frozenset(unanswered), model)


def topology_from_resources(
    resources: Iterable[Mapping[str, Any]], nodes: Iterable[str] = (), *, now_s: float | None = None,
    ttl_s: float = 0.0, estimate: bool = True,
) -> Topology:  # fmt: skip
    """All NetworkTopology resources -> one Topology over `nodes` plus every node they name. Full-form origins'
    links as written; compact-form origins' other pairs estimated as the aggregator does (`estimated_topology`);
    both forms at once during an upgrade. With `now_s` and `ttl_s`, measured links older than the TTL are left out
    (`is_stale`, as in the dense reader), and zone pairs not measured for that long estimate nothing. Without
    `estimate`, the links as written alone (a restarted aggregator's recovery: n^2 estimates would be thrown away)."""
    resources = list(resources)
    links: dict[tuple[str, str], LinkMetrics] = {}
    for resource in resources:
        spec = _mapping(_mapping(resource, "NetworkTopology").get("spec"), "spec")
        if "zonePairs" in spec:
            continue
        origin = _string(spec.get("origin"), "spec.origin")
        for i, item in enumerate(_list(spec.get("links"), "spec.links")):
            destination, metrics = _parse_link(item, f"NetworkTopology {origin} spec.links[{i}]")
            links[(origin, destination)] = metrics
    topology = Topology.from_links(links, nodes=nodes)
    cutoff = None if now_s is None or ttl_s <= 0 else now_s - ttl_s
    if now_s is not None and cutoff is not None:
        links = {pair: m for pair, m in links.items() if not is_stale(m, now_s=now_s, ttl_s=ttl_s)}
    compact = _compact_origins(resources, cutoff_s=cutoff) if estimate else None
    if compact is None:
        return Topology(nodes=topology.nodes, links=links)
    measured = {pair: m for pair, m in links.items() if m.source == "measured"}
    snapshot = TelemetrySnapshot(now_s=now_s or 0.0, measured=measured, unanswered=compact.unanswered,
                                 silent=compact.silent)  # fmt: skip
    zones = {node: compact.model.zone_names[index] for node, index in compact.model.node_zone.items()}
    estimated = estimated_topology(snapshot, topology.nodes, zones=zones, model=compact.model)
    for pair, metrics in estimated.links.items():
        if pair[0] in compact.origins and pair[1] in compact.origins and pair not in links:
            links[pair] = metrics
    return Topology(nodes=topology.nodes, links=links)


def dense_topology_from_resources(
    resources: Iterable[Mapping[str, Any]],
    *,
    nodes: Iterable[str] = (),
    now_s: float | None = None,
    ttl_s: float = 0.0,
) -> tuple[DenseTopology, list[str]]:
    """All NetworkTopology resources straight into dense matrices (no object per link), skipping measured links
    older than `ttl_s`; returns the topology and one message per link that was ignored as malformed. Pairs of
    compact-form origins are estimated as `topology_from_resources` estimates them, vectorised (a test holds the
    two to the same figures).

    This is the extender's path: ~1M links at 1,000 nodes convert in about a second, where building one
    LinkMetrics per link would take many and hold a gigabyte.
    """
    resources = list(resources)
    names: dict[str, None] = dict.fromkeys(nodes)
    for resource in resources:
        spec = resource.get("spec") or {}
        if isinstance(spec.get("origin"), str):
            names.setdefault(spec["origin"])
        for item in spec.get("links") or []:
            if isinstance(item, Mapping) and isinstance(item.get("destination"), str):
                names.setdefault(item["destination"])
    index = {name: i for i, name in enumerate(names)}
    n = len(index)
    rtt = np.full((n, n), np.nan, dtype=np.float32)
    bandwidth = np.full((n, n), np.nan, dtype=np.float32)
    loss = np.full((n, n), np.nan, dtype=np.float32)
    measured = np.zeros((n, n), dtype=bool)
    problems: list[str] = []
    cutoff = None if now_s is None or ttl_s <= 0 else now_s - ttl_s
    for resource in resources:
        spec = resource.get("spec") or {}
        if "zonePairs" in spec:
            continue
        origin = spec.get("origin")
        if origin not in index:
            problems.append(f"NetworkTopology {resource.get('metadata', {}).get('name')}: spec.origin missing")
            continue
        i = index[origin]
        for position, item in enumerate(spec.get("links") or []):
            try:
                j = index[item["destination"]]
                value_rtt = float(item["rttMs"])
                value_loss = float(item.get("lossRatio", 0.0))
                value_bandwidth = item.get("bandwidthMbps")
                if not (value_rtt >= 0 and 0 <= value_loss <= 1):
                    raise ValueError("out of range")
                is_measured = item.get("source", "measured") == "measured"
                if cutoff is not None and is_measured:
                    measured_at = item.get("measuredAt")
                    if not measured_at or parse_timestamp(measured_at, "measuredAt") < cutoff:
                        continue  # stale: priced as unknown
            except (KeyError, TypeError, ValueError, ConversionError) as error:
                problems.append(f"NetworkTopology {origin} spec.links[{position}]: {error.__class__.__name__}")
                continue
            rtt[i, j] = value_rtt
            loss[i, j] = value_loss
            measured[i, j] = is_measured
            if value_bandwidth is not None:
                bandwidth[i, j] = float(value_bandwidth)
    try:
        compact = _compact_origins(resources, cutoff_s=cutoff)
    except (ConversionError, KeyError, TypeError, ValueError) as error:  # the CRD schema keeps these out; defence
        problems.append(f"NetworkTopology estimates ignored: {error.__class__.__name__}: {error}")
        compact = None
    if compact is not None:
        _estimate_dense(rtt, loss, bandwidth, measured, index, compact)
    topology = DenseTopology(nodes=tuple(index), index=index, rtt_ms=rtt, bandwidth_mbps=bandwidth, loss_ratio=loss)
    return topology, problems


def _estimate_dense(
    rtt: FloatMatrix, loss: FloatMatrix, bandwidth: FloatMatrix, measured: npt.NDArray[np.bool_],
    index: Mapping[str, int], compact: _CompactOrigins,
) -> None:  # fmt: skip
    """Fill the pairs between compact-form origins that no link gives, by `estimated_topology`'s rules: never a pair
    with a silent end or an unanswered one; the fresh measured reverse first; else the zone model; either way with
    the zone pair's bandwidth."""
    n = len(index)
    open_ends = np.zeros(n, dtype=bool)
    for origin in compact.origins - compact.silent:
        open_ends[index[origin]] = True
    model = compact.model
    zone = np.full(n, -1, dtype=np.int64)
    offset = np.full(n, np.nan)
    for node, zone_index in model.node_zone.items():
        if node in index:
            zone[index[node]], offset[index[node]] = zone_index, model.offsets_ms[node]
    blocked = [(index[o], index[d]) for o, d in compact.unanswered if o in index and d in index]
    known = zone >= 0
    for start in range(0, n, ESTIMATE_ROWS):
        rows = slice(start, min(start + ESTIMATE_ROWS, n))
        wanted = np.isnan(rtt[rows]) & open_ends[rows, None] & open_ends[None, :]
        wanted[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = False
        for i, j in blocked:
            if rows.start <= i < rows.stop:
                wanted[i - rows.start, j] = False
        reverse = wanted & measured[:, rows].T
        rtt[rows][reverse] = rtt[:, rows].T[reverse]
        loss[rows][reverse] = loss[:, rows].T[reverse]
        wanted &= ~reverse
        if not model.node_zone:
            continue
        cells = (zone[rows, None], zone[None, :])
        by_zone = wanted & known[rows, None] & known[None, :]
        estimate = model.rtt_ms(*cells, offset[rows, None], offset[None, :])
        by_zone &= ~np.isnan(estimate)
        rtt[rows][by_zone] = estimate[by_zone]
        loss[rows][by_zone] = model.loss_ratio[cells][by_zone]
        zone_bandwidth = model.bandwidth_mbps[cells]
        priced = (by_zone | (reverse & known[rows, None] & known[None, :])) & ~np.isnan(zone_bandwidth)
        bandwidth[rows][priced] = zone_bandwidth[priced]
