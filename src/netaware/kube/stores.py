"""An in-memory, thread-safe copy of the cluster state the extender needs: Nodes, Pods, AppGroups and
NetworkTopologies, fed by watches (`watching.py`) or directly by tests, plus the views derived from it.

Derived views (the link-cost matrix per set of weights, each AppGroup's placements) are rebuilt lazily when the
objects they depend on change, so a scheduling request only reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from netaware.core.appgroup import AppGroup, CostWeights
from netaware.core.costs import LinkCosts, build_link_costs
from netaware.core.quantities import cpu_millicores
from netaware.core.topology import DenseTopology
from netaware.kube.converters import (
    ConversionError,
    appgroup_from_resource,
    dense_topology_from_resources,
    parse_timestamp,
)

KINDS = ("nodes", "pods", "appgroups", "networktopologies")
PLANNED_NODE_ANNOTATION = "netaware.io/planned-node"
"""Set by the AppGroup controller on a pod it narrowed to one node of its group's plan."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    node_name: str | None
    scheduler_name: str
    phase: str
    deleting: bool = False
    scheduling_gates: tuple[str, ...] = ()
    created_at_s: float | None = None
    cpu_request_m: int = 0
    """Sum of the containers' CPU requests (millicores): the capacity lookahead's input."""
    owner: str | None = None
    """kind/name of the controller that owns the pod (a ReplicaSet, a StatefulSet); None: a bare pod."""
    node_constraints: Mapping[str, Any] = field(default_factory=dict)
    """The pod spec's `nodeSelector`, `affinity` and `tolerations`, as given (what core/nodeselection.py reads)."""
    planned_node: str | None = None
    """The node the AppGroup controller narrowed the pod to (annotation `netaware.io/planned-node`)."""
    unschedulable_since_s: float | None = None
    """Unix time of the PodScheduled=False/Unschedulable condition's last transition; None: not unschedulable."""

    @property
    def placed(self) -> bool:
        return bool(self.node_name) and not self.deleting and self.phase not in ("Succeeded", "Failed")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


DEFAULT_MAX_PODS = 110
"""kubelet's default max-pods, for a Node that reports no allocatable pods."""


def _pod_slots(value: Any) -> int:
    try:
        return int(str(value)) if value is not None else DEFAULT_MAX_PODS
    except ValueError:
        return DEFAULT_MAX_PODS


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    """A PodInfo from a Pod as JSON (the API's or the extender request's); raises ValueError if unusable."""
    metadata = pod.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        raise ValueError("Pod.metadata.name is missing")
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    labels = metadata.get("labels") or {}
    if not isinstance(spec, Mapping) or not isinstance(status, Mapping) or not isinstance(labels, Mapping):
        raise ValueError("Pod.spec, Pod.status and Pod.metadata.labels must be objects")
    gates = spec.get("schedulingGates") or []

    def time_or_none(value: Any) -> float | None:
        try:
            return parse_timestamp(value, "timestamp") if isinstance(value, str) else None
        except ConversionError:
            return None

    owner = next(
        (f"{ref.get('kind')}/{ref.get('name')}" for ref in metadata.get("ownerReferences") or []
         if isinstance(ref, Mapping) and ref.get("controller")),
        None,
    )  # fmt: skip
    unschedulable = next(
        (c for c in status.get("conditions") or []
         if isinstance(c, Mapping) and c.get("type") == "PodScheduled" and c.get("status") == "False"
         and c.get("reason") == "Unschedulable"),
        None,
    )  # fmt: skip
    annotations = metadata.get("annotations")
    planned_node = annotations.get(PLANNED_NODE_ANNOTATION) if isinstance(annotations, Mapping) else None
    return PodInfo(
        namespace=str(metadata.get("namespace") or "default"),
        name=metadata["name"],
        uid=str(metadata.get("uid") or ""),
        labels={str(k): str(v) for k, v in labels.items()},
        node_name=spec.get("nodeName") or None,
        scheduler_name=str(spec.get("schedulerName") or "default-scheduler"),
        phase=str(status.get("phase") or "Pending"),
        deleting=bool(metadata.get("deletionTimestamp")),
        scheduling_gates=tuple(str(g.get("name")) for g in gates if isinstance(g, Mapping)),
        created_at_s=time_or_none(metadata.get("creationTimestamp")),
        cpu_request_m=sum(
            cpu_millicores(((c.get("resources") or {}).get("requests") or {}).get("cpu"))
            for c in spec.get("containers") or []
            if isinstance(c, Mapping)
        ),
        owner=owner,
        node_constraints={k: spec[k] for k in ("nodeSelector", "affinity", "tolerations") if spec.get(k)},
        planned_node=str(planned_node) if planned_node else None,
        unschedulable_since_s=time_or_none(unschedulable.get("lastTransitionTime")) if unschedulable else None,
    )


@dataclass
class _Derived:
    version: int = -1
    topology_version: int = -1
    topology: DenseTopology | None = None
    link_costs: dict[CostWeights, LinkCosts] = field(default_factory=dict)


class ClusterStore:
    """Objects by kind and key; `synced[kind]` turns True after the first full list of that kind."""

    def __init__(self, *, topology_ttl_s: float = 0.0, topology_refresh_s: float = 0.0) -> None:
        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.synced: dict[str, bool] = dict.fromkeys(KINDS, False)
        self._version = 0
        self._topology_version = 0
        self._derived = _Derived()
        self._topology_ttl_s = topology_ttl_s
        # Rebuilding the matrices costs O(N^2) (about a second at 1,000 nodes). Under a stream of NetworkTopology
        # writes, rebuild at most this often and keep serving the previous snapshot in between.
        self._topology_refresh_s = topology_refresh_s
        self._topology_built_at = float("-inf")
        self._synthetic_topology: DenseTopology | None = None
        # (namespace, AppGroup name) -> workload -> nodes of its placed pods; kept up to date pod by pod, so a
        # scheduling request never scans every pod (binding bursts change pods between every two requests).
        self._placements: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.conversion_errors: dict[str, str] = {}
        """AppGroup/NetworkTopology key -> why it was ignored (shown in logs, never crashes a request)."""

    # --- writes (watch side) ---------------------------------------------------------------------------

    def _key(self, kind: str, obj: Mapping[str, Any]) -> str:
        metadata = obj.get("metadata") or {}
        return f"{metadata.get('namespace') or ''}/{metadata.get('name')}"

    def _convert(self, kind: str, obj: Mapping[str, Any]) -> Any:
        if kind == "pods":
            return pod_info(obj)
        if kind == "nodes":
            metadata = obj.get("metadata") or {}
            allocatable = (obj.get("status") or {}).get("allocatable") or {}
            return {
                "name": metadata.get("name"),
                "labels": dict(metadata.get("labels") or {}),
                "taints": [t for t in (obj.get("spec") or {}).get("taints") or [] if isinstance(t, Mapping)],
                "cpu_m": cpu_millicores(allocatable.get("cpu")),
                "pods": _pod_slots(allocatable.get("pods")),
            }
        if kind == "appgroups":
            key = self._key(kind, obj)
            try:
                group = appgroup_from_resource(obj)
            except ConversionError as error:
                self.conversion_errors[key] = str(error)
                return None
            self.conversion_errors.pop(key, None)
            return group
        return dict(obj)  # networktopologies: converted together in `_topology`

    def replace(self, kind: str, objects: Iterable[Mapping[str, Any]]) -> None:
        converted = {}
        for obj in objects:
            value = self._convert(kind, obj)
            if value is not None:
                converted[self._key(kind, obj)] = value
        with self._lock:
            self._objects[kind] = converted
            self.synced[kind] = True
            if kind in ("pods", "appgroups"):
                self._placements.clear()
            self._bump(kind)

    def upsert(self, kind: str, obj: Mapping[str, Any]) -> None:
        value = self._convert(kind, obj)
        with self._lock:
            key = self._key(kind, obj)
            old = self._objects[kind].get(key)
            if value is None:
                self._objects[kind].pop(key, None)
            else:
                self._objects[kind][key] = value
            self._track(kind, key, old, value)
            # A Node update (kubelet/kwok heartbeats, every node every few seconds) keeps its name: the topology's
            # node set is unchanged, so only additions and removals count for it.
            self._bump(kind, topology_changed=kind == "networktopologies" or (kind == "nodes" and old is None))

    def delete(self, kind: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            key = self._key(kind, obj)
            old = self._objects[kind].pop(key, None)
            self._track(kind, key, old, None)
            self._bump(kind)

    def _track(self, kind: str, key: str, old: Any, new: Any) -> None:
        """Keep the placement cache in step with one changed object."""
        if kind == "appgroups":
            self._placements.pop(tuple(key.split("/", 1)), None)  # type: ignore[arg-type]
        elif kind == "pods":
            for pod, sign in ((old, -1), (new, +1)):
                if pod is None or not pod.placed:
                    continue
                for (namespace, name), placements in self._placements.items():
                    group = self._objects["appgroups"].get(f"{namespace}/{name}")
                    workload = self._workload_in(group, pod) if group is not None else None
                    if workload is None:
                        continue
                    if sign > 0:
                        placements[workload].append(pod.node_name)
                    elif pod.node_name in placements[workload]:
                        placements[workload].remove(pod.node_name)

    @staticmethod
    def _workload_in(group: AppGroup, pod: PodInfo) -> str | None:
        if pod.namespace != group.namespace:
            return None
        wanted = pod.labels.get("netaware.io/appgroup")
        if wanted and wanted != group.name:
            return None
        return group.workload_for_labels(pod.labels)

    def _bump(self, kind: str, *, topology_changed: bool | None = None) -> None:
        self._version += 1
        if topology_changed if topology_changed is not None else kind in ("nodes", "networktopologies"):
            self._topology_version += 1

    # --- reads (request side) --------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Grows with every change; a reader that saw the same version has nothing new to do."""
        return self._version

    @property
    def ready(self) -> bool:
        return all(self.synced.values())

    def node_names(self) -> list[str]:
        with self._lock:
            return [n["name"] for n in self._objects["nodes"].values()]

    def node_labels(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {n["name"]: n["labels"] for n in self._objects["nodes"].values()}

    def node_taints(self) -> dict[str, list[Mapping[str, Any]]]:
        with self._lock:
            return {n["name"]: n["taints"] for n in self._objects["nodes"].values() if n["taints"]}

    def pods(self) -> list[PodInfo]:
        with self._lock:
            return list(self._objects["pods"].values())

    def appgroups(self) -> list[AppGroup]:
        with self._lock:
            return list(self._objects["appgroups"].values())

    def workload_of(self, pod: PodInfo) -> tuple[AppGroup, str] | None:
        """The AppGroup and workload whose selector matches the pod (same namespace), if any.

        A pod labelled `netaware.io/appgroup: NAME` is matched only against that group.
        """
        with self._lock:
            groups = sorted(self._objects["appgroups"].values(), key=lambda g: g.name)
        for group in groups:
            workload = self._workload_in(group, pod)
            if workload:
                return group, workload
        return None

    def _refresh(self) -> _Derived:
        with self._lock:
            derived = self._derived
            if derived.version == self._version:
                return derived
            fresh = _Derived(version=self._version, topology_version=self._topology_version)
            unchanged = derived.topology_version == self._topology_version
            too_soon = time.monotonic() - self._topology_built_at < self._topology_refresh_s
            if derived.topology is not None and (unchanged or too_soon):
                # Pods or AppGroups changed, or the topology changed very recently: keep the expensive matrices.
                fresh.topology, fresh.link_costs = derived.topology, derived.link_costs
                fresh.topology_version = derived.topology_version
            else:
                fresh.topology = self._topology()
                self._topology_built_at = time.monotonic()
            self._derived = fresh
            return fresh

    def _topology(self) -> DenseTopology:
        if self._synthetic_topology is not None:
            return self._synthetic_topology
        resources = list(self._objects["networktopologies"].values())
        nodes = [n["name"] for n in self._objects["nodes"].values()]
        topology, problems = dense_topology_from_resources(
            resources, nodes=nodes, now_s=time.time(), ttl_s=self._topology_ttl_s
        )
        if problems:
            self.conversion_errors["networktopologies"] = f"{len(problems)} links ignored, first: {problems[0]}"
        else:
            self.conversion_errors.pop("networktopologies", None)
        return topology

    def use_synthetic_topology(self, topology: DenseTopology) -> None:
        """Serve a topology that never passed through NetworkTopology resources (benchmarks, simulations)."""
        with self._lock:
            self._synthetic_topology = topology
            self._bump("networktopologies")

    def link_costs(self, weights: CostWeights) -> LinkCosts:
        derived = self._refresh()
        with self._lock:
            costs = derived.link_costs.get(weights)
            if costs is None:
                assert derived.topology is not None
                costs = build_link_costs(derived.topology, weights)
                derived.link_costs[weights] = costs
            return costs

    def free_cpu_m(self, topology: DenseTopology) -> npt.NDArray[np.int64]:
        """Allocatable CPU minus the requests of the pods placed on each node, indexed like `topology` (0 for a
        node the store does not know). O(pods); only the capacity lookahead asks for it."""
        return self.free_capacity(topology)[0]

    def free_capacity(self, topology: DenseTopology) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Per node, indexed like `topology` (0 for a node the store does not know): allocatable CPU less the
        requests of the pods placed there, and allocatable pods less their number (kubelet's max-pods is a limit
        a plan must keep as much as CPU). One pass over the pods."""
        cpu = np.zeros(len(topology.nodes), dtype=np.int64)
        pods = np.zeros(len(topology.nodes), dtype=np.int64)
        with self._lock:
            for node in self._objects["nodes"].values():
                index = topology.index.get(node["name"])
                if index is not None:
                    cpu[index] = node.get("cpu_m", 0)
                    pods[index] = node.get("pods", DEFAULT_MAX_PODS)
            for pod in self._objects["pods"].values():
                index = topology.index.get(pod.node_name or "") if pod.placed else None
                if index is not None:
                    cpu[index] -= pod.cpu_request_m
                    pods[index] -= 1
        return cpu, pods

    def members(self, group: AppGroup) -> list[tuple[PodInfo, str]]:
        """Every pod of the group's namespace that belongs to one of its workloads, with that workload."""
        with self._lock:
            pods = list(self._objects["pods"].values())
        result = []
        for pod in pods:
            workload = self._workload_in(group, pod) if not pod.deleting else None
            if workload:
                result.append((pod, workload))
        return result

    def placements(self, group: AppGroup) -> dict[str, list[str]]:
        """Workload -> nodes of its placed replicas (one entry per pod); a copy."""
        key = (group.namespace, group.name)
        with self._lock:
            cached = self._placements.get(key)
            if cached is None:
                cached = {w: [] for w in group.workload_names}
                for pod in self._objects["pods"].values():
                    workload = self._workload_in(group, pod) if pod.placed else None
                    if workload:
                        cached[workload].append(pod.node_name)
                self._placements[key] = cached
            return {w: list(nodes) for w, nodes in cached.items()}
