"""The lab's node agent: what a kubelet and kube-proxy do, for nodes that are network namespaces.

- `NodeHeartbeat` registers each lab node as a Node (zone and region labels from the profile, its lab address) and
  renews its Lease and Ready condition, so kube-controller-manager treats it as a live node.
- `PodRunner` runs the pods bound to lab nodes: each pod gets its own network namespace and IP behind its node
  (EmulatedNetwork.attach_pod); each container's `command` runs as a process in it; readiness is checked from the
  node (HTTP GET or TCP connect, as the pod's readinessProbe says); status (phase, IP, Ready) goes to the API server,
  so kube-controller-manager fills EndpointSlices as for any pod. Deleted pods are stopped and their namespace
  removed, then the pod object is released (grace 0), as a kubelet does.
- `ServiceTable` is the lab's kube-proxy: it turns Services and their ready EndpointSlice endpoints into a table
  `namespace/service:port -> [podIP:targetPort]` in one JSON file that workload processes read to resolve Service
  names (the lab has no cluster DNS or virtual IPs).

All three reconcile by listing at a short period (level-triggered, like the kubelet's sync loop): at lab scale
(tens of pods) that is a few cheap requests per second, and it needs no watch bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from netaware.kube import api as kube
from netaware.kube.api import ApiException
from netaware.kube.watching import list_raw
from netaware.lab.emulating import EmulatedNetwork, remove_namespace
from netaware.lab.kubeobjects import (
    LEASE_NAMESPACE,
    NodeCapacity,
    PodSpecError,
    ReadinessCheck,
    command_line,
    environment,
    lease_manifest,
    micro_time,
    node_manifest,
    node_status,
    pod_status,
    readiness_check,
)
from netaware.netns import run_in

log = logging.getLogger("netaware.lab")

SERVICES_FILE_ENV = "NETAWARE_LAB_SERVICES"
"""Workload processes find the ServiceTable's file through this variable."""
STOP_GRACE_S = 3.0


@dataclass
class NodeHeartbeat:
    api: kube.ApiClient
    network: EmulatedNetwork
    zones: Mapping[str, str]
    regions: Mapping[str, str]
    lab: str
    capacity: NodeCapacity = field(default_factory=NodeCapacity)

    def register(self) -> None:
        core = kube.CoreV1Api(self.api)
        for node in self.network.nodes:
            manifest: Any = node_manifest(name=node, zone=self.zones[node], region=self.regions[node], lab=self.lab)
            try:
                core.create_node(manifest)
            except ApiException as error:
                if error.status != 409:
                    raise
                core.patch_node(node, {"metadata": {"labels": manifest["metadata"]["labels"]}})
        self.beat()

    def beat(self) -> None:
        core = kube.CoreV1Api(self.api)
        coordination = kube.CoordinationV1Api(self.api)
        now = time.time()
        for node in self.network.nodes:
            status = node_status(address=self.network.address_of(node), name=node, capacity=self.capacity, now_s=now)
            metadata = core.patch_node_status(node, {"status": status}).metadata
            uid = str(metadata.uid) if metadata else ""
            try:
                coordination.patch_namespaced_lease(
                    node, LEASE_NAMESPACE, {"spec": {"holderIdentity": node, "renewTime": micro_time(now)}}
                )
            except ApiException as error:
                if error.status != 404:
                    raise
                lease: Any = lease_manifest(node=node, node_uid=uid, now_s=now)
                coordination.create_namespaced_lease(LEASE_NAMESPACE, lease)

    def deregister(self) -> None:
        core = kube.CoreV1Api(self.api)
        for node in self.network.nodes:
            with contextlib.suppress(ApiException):
                core.delete_node(node)


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    node: str
    slot: int
    netns: str
    ip: str
    started_s: float
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    checks: list[ReadinessCheck] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    failure: str | None = None
    reported: tuple[Any, ...] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class PodRunner:
    def __init__(self, api: kube.ApiClient, network: EmulatedNetwork, log_dir: Path, extra_env: Mapping[str, str]):
        self.core = kube.CoreV1Api(api)
        self.network = network
        self.log_dir = log_dir
        self.extra_env = dict(extra_env)
        self.running: dict[str, RunningPod] = {}
        self._free_slots = {node: list(range(2, 255)) for node in network.nodes}

    def reconcile(self) -> None:
        pods = list_raw(self.core.list_pod_for_all_namespaces).get("items") or []
        lab_nodes = set(self.network.nodes)
        mine = {p["metadata"]["uid"]: p for p in pods if (p.get("spec") or {}).get("nodeName") in lab_nodes}
        for uid, running in list(self.running.items()):
            pod = mine.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self._stop(running)
        for uid, pod in mine.items():
            if pod["metadata"].get("deletionTimestamp"):
                self._release(pod)
            elif uid not in self.running and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self._start(pod)
        for running in self.running.values():
            self._supervise(running)
            self._report(running, mine.get(running.uid))

    def stop_all(self) -> None:
        for running in list(self.running.values()):
            self._stop(running)

    def _start(self, pod: Mapping[str, Any]) -> None:
        metadata, spec = pod["metadata"], pod["spec"]
        node = spec["nodeName"]
        if not self._free_slots[node]:
            log.error("node %s has no free pod address for %s", node, metadata["name"])
            return
        slot = self._free_slots[node].pop(0)
        netns, ip = self.network.attach_pod(node, slot)
        running = RunningPod(
            uid=metadata["uid"],
            namespace=metadata["namespace"],
            name=metadata["name"],
            node=node,
            slot=slot,
            netns=netns,
            ip=ip,
            started_s=time.time(),
        )
        self.running[running.uid] = running
        try:
            for container in spec.get("containers") or []:
                env = environment(container, pod, pod_ip=ip, node=node)
                running.commands[container["name"]] = (command_line(container), env)
                check = readiness_check(container)
                if check is not None:
                    running.checks.append(check)
        except PodSpecError as error:
            running.failure = str(error)
            log.warning("pod %s cannot run: %s", running.key, error)
            return
        for name in running.commands:
            self._launch(running, name)
        log.info("pod %s started on %s at %s", running.key, node, ip)

    def _launch(self, running: RunningPod, container: str) -> None:
        command, env = running.commands[container]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{running.namespace}_{running.name}_{container}.log"
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        with log_path.open("ab") as log_file:
            running.processes[container] = subprocess.Popen(
                ["ip", "netns", "exec", running.netns, *command],
                env={**os.environ, "PATH": path, **self.extra_env, **env},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _supervise(self, running: RunningPod) -> None:
        """Restart exited containers (restartPolicy Always, as Deployments use); check readiness until ready."""
        for container, process in running.processes.items():
            if process.poll() is not None:
                log.warning("pod %s container %s exited (%s); restarting", running.key, container, process.returncode)
                running.restarts[container] = running.restarts.get(container, 0) + 1
                running.ready = False
                self._launch(running, container)
        if running.ready or running.failure or not running.processes:
            return
        running.ready = all(self._passes(running, check) for check in running.checks)

    def _passes(self, running: RunningPod, check: ReadinessCheck) -> bool:
        node_namespace = self.network.namespace_of(running.node)

        def probe() -> bool:
            if check.path is None:
                with socket.create_connection((running.ip, check.port), timeout=1):
                    return True
            return requests.get(f"http://{running.ip}:{check.port}{check.path}", timeout=1).ok

        try:
            return run_in(node_namespace, probe, timeout_s=3)
        except (OSError, requests.RequestException):
            return False

    def _report(self, running: RunningPod, pod: Mapping[str, Any] | None) -> None:
        state = (running.ready, running.failure, tuple(sorted(running.restarts.items())))
        if pod is None or state == running.reported:
            return
        status = pod_status(
            pod,
            pod_ip=running.ip,
            host_ip=self.network.address_of(running.node),
            started_s=running.started_s,
            ready=running.ready,
            restarts=running.restarts,
            now_s=time.time(),
            failure=running.failure,
        )
        try:
            self.core.patch_namespaced_pod_status(running.name, running.namespace, {"status": status})
            running.reported = state
        except ApiException as error:
            log.warning("status of %s not written: %s", running.key, error.reason)

    def _stop(self, running: RunningPod) -> None:
        for process in running.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        remove_namespace(running.netns)
        self._free_slots[running.node].append(running.slot)
        del self.running[running.uid]
        log.info("pod %s stopped", running.key)

    def _release(self, pod: Mapping[str, Any]) -> None:
        metadata = pod["metadata"]
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                metadata["name"],
                metadata["namespace"],
                grace_period_seconds=0,
                body=kube.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=kube.V1Preconditions(uid=metadata["uid"])
                ),
            )


def service_table(services: list[Mapping[str, Any]], slices: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """`namespace/service:port -> sorted [podIP:targetPort]` from Services and their EndpointSlices (ready
    endpoints only, matched by port name as kube-proxy does)."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for endpoint_slice in slices:
        metadata = endpoint_slice.get("metadata") or {}
        owner = (metadata.get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((metadata.get("namespace", ""), owner), []).append(endpoint_slice)
    table: dict[str, list[str]] = {}
    for service in services:
        metadata = service.get("metadata") or {}
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        for port in (service.get("spec") or {}).get("ports") or []:
            targets: set[str] = set()
            for endpoint_slice in by_service.get((namespace, name), []):
                for slice_port in endpoint_slice.get("ports") or []:
                    if (slice_port.get("name") or "") != (port.get("name") or "") or "port" not in slice_port:
                        continue
                    for endpoint in endpoint_slice.get("endpoints") or []:
                        if (endpoint.get("conditions") or {}).get("ready") is False:
                            continue
                        targets.update(f"{address}:{slice_port['port']}" for address in endpoint.get("addresses", []))
            table[f"{namespace}/{name}:{port['port']}"] = sorted(targets)
    return table


class ServiceTable:
    def __init__(self, api: kube.ApiClient, path: Path):
        self.core = kube.CoreV1Api(api)
        self.discovery = kube.DiscoveryV1Api(api)
        self.path = path
        self.table: dict[str, list[str]] = {}

    def reconcile(self) -> None:
        services = list_raw(self.core.list_service_for_all_namespaces).get("items") or []
        slices = list_raw(self.discovery.list_endpoint_slice_for_all_namespaces).get("items") or []
        table = service_table(services, slices)
        if table != self.table or not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps(table, indent=1, sort_keys=True))
            scratch.replace(self.path)  # atomic: readers never see half a table
            self.table = table
