"""The Kubernetes objects a lab node writes, built as plain dicts (pure, so unit-testable): its Node and Lease, and
the status of the pods it runs; plus what it reads from a pod spec (the command line, the environment, the readiness
check)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netaware.core.nodeselection import HOSTNAME_LABEL, REGION_LABEL, ZONE_LABEL
from netaware.kube.converters import format_timestamp

LAB_LABEL = "netaware.io/lab"
"""Every Node a lab registers carries this label (value: the lab's namespace prefix), so `down` finds them."""
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40


def micro_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NodeCapacity:
    cpu: str = "2"
    memory: str = "4Gi"
    pods: str = "110"


def node_manifest(*, name: str, zone: str, region: str, lab: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                HOSTNAME_LABEL: name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                ZONE_LABEL: zone,
                REGION_LABEL: region,
                LAB_LABEL: lab,
            },
        },
    }


def node_status(*, address: str, name: str, capacity: NodeCapacity, now_s: float) -> dict[str, Any]:
    """A Ready node; heartbeats rewrite it with a new `now_s`."""
    heartbeat = format_timestamp(now_s)
    resources = {"cpu": capacity.cpu, "memory": capacity.memory, "pods": capacity.pods}

    def condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": "netaware lab node",
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": heartbeat,
        }

    return {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
        "conditions": [
            condition("Ready", "True", "LabNodeReady"),
            condition("MemoryPressure", "False", "LabNodeHasSufficientMemory"),
            condition("DiskPressure", "False", "LabNodeHasNoDiskPressure"),
            condition("PIDPressure", "False", "LabNodeHasSufficientPID"),
            condition("NetworkUnavailable", "False", "LabRouteCreated"),
        ],
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "netaware-lab",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "netaware-lab://process",
            "kernelVersion": "",
            "osImage": "netaware lab (network namespace)",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def lease_manifest(*, node: str, node_uid: str, now_s: float) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": micro_time(now_s)},
    }


class PodSpecError(ValueError):
    """A pod the lab cannot run (no command, an unsupported reference); the message goes into the pod's status."""


def command_line(container: Mapping[str, Any]) -> list[str]:
    """The process a container runs. A lab has no images: the command must be given (the workloads' manifests name
    netaware's console scripts, which the same image provides on a real cluster)."""
    command = list(container.get("command") or []) + list(container.get("args") or [])
    if not container.get("command"):
        raise PodSpecError(f"container {container.get('name')}: the lab runs `command` directly (no image entrypoint)")
    return [str(part) for part in command]


def environment(container: Mapping[str, Any], pod: Mapping[str, Any], *, pod_ip: str, node: str) -> dict[str, str]:
    """`env` entries with a value or a fieldRef to the pod's own name, namespace, IP or node."""
    metadata = pod.get("metadata") or {}
    fields = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "status.podIP": pod_ip,
        "spec.nodeName": node,
    }
    result = {}
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry:
            result[name] = str(entry["value"])
            continue
        reference = ((entry.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if reference not in fields:
            raise PodSpecError(f"env {name}: the lab resolves value and fieldRef {sorted(fields)} only")
        result[name] = fields[reference]
    return result


@dataclass(frozen=True)
class ReadinessCheck:
    port: int
    path: str | None
    """HTTP GET path; None for a TCP connect."""


def readiness_check(container: Mapping[str, Any]) -> ReadinessCheck | None:
    probe = container.get("readinessProbe") or {}
    ports = {p.get("name"): int(p["containerPort"]) for p in container.get("ports") or [] if "containerPort" in p}

    def port_of(value: Any) -> int:
        if isinstance(value, int):
            return value
        if str(value).isdigit():
            return int(value)
        if value in ports:
            return ports[value]
        raise PodSpecError(f"container {container.get('name')}: readiness probe names unknown port {value!r}")

    if "httpGet" in probe:
        return ReadinessCheck(port_of(probe["httpGet"]["port"]), str(probe["httpGet"].get("path") or "/"))
    if "tcpSocket" in probe:
        return ReadinessCheck(port_of(probe["tcpSocket"]["port"]), None)
    return None


def pod_status(
    pod: Mapping[str, Any],
    *,
    pod_ip: str,
    host_ip: str,
    started_s: float,
    ready: bool,
    restarts: Mapping[str, int],
    now_s: float,
    failure: str | None = None,
) -> dict[str, Any]:
    """The status a kubelet would report for a pod whose containers run as lab processes."""
    started = format_timestamp(started_s)
    now = format_timestamp(now_s)
    ready_text = "True" if ready else "False"
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = []
    for container in containers:
        name = container["name"]
        state: dict[str, Any] = (
            {"waiting": {"reason": "LabCannotRun", "message": failure}}
            if failure
            else {"running": {"startedAt": started}}
        )
        statuses.append(
            {
                "name": name,
                "image": container.get("image", ""),
                "imageID": "",
                "ready": ready and not failure,
                "started": not failure,
                "restartCount": restarts.get(name, 0),
                "state": state,
            }
        )
    return {
        "phase": "Pending" if failure else "Running",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": now},
            {"type": "Ready", "status": ready_text, "lastTransitionTime": now},
        ],
        "containerStatuses": statuses,
    }
