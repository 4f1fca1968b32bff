"""Fixtures of the cluster tier: a real local control plane (built from Go modules) per test module.

Each module gets its own cluster on its own ports and state folder, so modules cannot disturb one another and
a test that kills a component only breaks its own cluster. Bringing one up takes ~10-15 s on this machine.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from netaware.controlplane.running import running_cluster
from netaware.controlplane.settings import ClusterSettings
from netaware.core.topology import LinkMetrics, Topology
from netaware.kube.clients import api_client
from netaware.kube.converters import GROUP, VERSION, networktopology_resources
from netaware.paths import REPO_ROOT

pytestmark = pytest.mark.cluster

# Port bases for test clusters; away from the default 16000 so a developer's own cluster keeps running.
_port_bases = itertools.count(20000, 1000)


@dataclass
class Cluster:
    status: dict[str, Any]
    settings: ClusterSettings
    api: client.ApiClient

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def component(self, name: str) -> dict[str, Any]:
        return next(c for c in self.status["components"] if c["name"] == name)

    def log(self, name: str) -> str:
        return Path(self.component(name)["log"]).read_text(errors="replace")


def start_cluster(tmp_path_factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[Cluster]:
    settings = ClusterSettings(
        state_dir=tmp_path_factory.mktemp("cluster") / "state", port_base=next(_port_bases), **overrides
    )
    with running_cluster(settings) as status:
        yield Cluster(status=status, settings=settings, api=api_client(Path(status["kubeconfig"])))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running cluster with six kwok nodes, two per zone (zone-a, zone-b, zone-c)."""
    yield from start_cluster(tmp_path_factory, fake_nodes=6)


def kubectl(cluster: Cluster, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The kubectl built with the control plane, against `cluster` (`stdin`: what `-f -` reads)."""
    return subprocess.run(
        [str(cluster.settings.bin_dir / "kubectl"), f"--kubeconfig={cluster.status['kubeconfig']}", *args],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def apply_namespaces(cluster: Cluster) -> None:
    """netaware's namespaces (deploy/namespaces), for a test that installs one component's kustomization alone, as a
    user does after them; an earlier test's uninstall may have removed them."""
    applied = kubectl(cluster, "apply", "--server-side", "-k", str(REPO_ROOT / "deploy" / "namespaces"))
    assert applied.returncode == 0, applied.stderr


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def pod_manifest(
    name: str,
    labels: dict[str, str],
    *,
    scheduler: str | None = "netaware-scheduler",
    node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "netaware/dummy:local", "resources": {"requests": {"cpu": "100m"}}}]
    }
    if scheduler:
        spec["schedulerName"] = scheduler
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def create_pod(cluster: Cluster, manifest: dict[str, Any], namespace: str = "default") -> None:
    cluster.core.create_namespaced_pod(namespace, manifest)


def wait_bound(cluster: Cluster, name: str, namespace: str = "default", timeout_s: float = 60) -> str:
    """The node the pod was bound to."""

    def bound() -> str | None:
        return cluster.core.read_namespaced_pod(name, namespace).spec.node_name  # type: ignore[no-any-return]

    return wait_for(bound, timeout_s=timeout_s, what=f"pod {name} to be bound")  # type: ignore[no-any-return]


def zone_of(cluster: Cluster, node: str) -> str:
    return cluster.core.read_node(node).metadata.labels["topology.kubernetes.io/zone"]  # type: ignore[no-any-return]


def extender_state(cluster: Cluster) -> dict[str, Any]:
    return requests.get(f"{cluster.status['extenderUrl']}/v1/state", timeout=5).json()  # type: ignore[no-any-return]


def wait_extender_sees(cluster: Cluster, group: str, placed: dict[str, int] | None = None) -> None:
    """Wait until the extender's watched state has AppGroup `group` with at least `placed[workload]` placed pods."""

    def seen() -> bool:
        for entry in extender_state(cluster)["appGroups"]:
            if entry["name"] == group:
                return all(len(entry["placements"].get(w, [])) >= n for w, n in (placed or {}).items())
        return False

    wait_for(seen, timeout_s=30, what=f"the extender to see AppGroup {group} with {placed or {}} placed")


def pod_events(cluster: Cluster, name: str, namespace: str = "default") -> list[Any]:
    return cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items  # type: ignore[no-any-return]


ZONE_RTT_MS = {("zone-a", "zone-b"): 30.0, ("zone-a", "zone-c"): 40.0, ("zone-b", "zone-c"): 35.0}


def three_zone_topology(nodes: dict[str, str], now_s: float) -> Topology:
    links = {}
    for a, zone_a in nodes.items():
        for b, zone_b in nodes.items():
            if a == b:
                continue
            if zone_a == zone_b:
                metrics = LinkMetrics(rtt_ms=1.0, bandwidth_mbps=1000, loss_ratio=0.0, samples=100, measured_at_s=now_s)
            else:
                rtt = ZONE_RTT_MS.get((zone_a, zone_b)) or ZONE_RTT_MS[(zone_b, zone_a)]
                metrics = LinkMetrics(rtt_ms=rtt, bandwidth_mbps=100, loss_ratio=0.01, samples=100, measured_at_s=now_s)
            links[(a, b)] = metrics
    return Topology.from_links(links)


@pytest.fixture(scope="module")
def topology_applied(cluster: Cluster) -> Iterator[dict[str, str]]:
    nodes = {n.metadata.name: n.metadata.labels["topology.kubernetes.io/zone"] for n in cluster.core.list_node().items}
    assert sorted(nodes.values()) == ["zone-a", "zone-a", "zone-b", "zone-b", "zone-c", "zone-c"]
    for resource in networktopology_resources(three_zone_topology(nodes, time.time()), zones=nodes):
        cluster.custom.create_cluster_custom_object(GROUP, VERSION, "networktopologies", resource)
    yield nodes


def apply_appgroup(
    cluster: Cluster,
    name: str,
    workloads: list[dict[str, Any]],
    *,
    sorting: str | None = None,
    strategy: str | None = None,
    rebalance: dict[str, Any] | None = None,
) -> None:
    spec: dict[str, Any] = {"workloads": workloads}
    if sorting:
        spec["topologySortingAlgorithm"] = sorting
    if strategy:
        spec["strategy"] = strategy
    if rebalance:
        spec["rebalance"] = rebalance
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AppGroup",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, "default", "appgroups", body)


def workload(name: str, app_group: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "selector": {"matchLabels": {"app": name, "netaware.io/appgroup": app_group}},
        "dependencies": calls or [],
    }


def labels(app: str, app_group: str) -> dict[str, str]:
    return {"app": app, "netaware.io/appgroup": app_group}
