"""The extender in the scheduler's other mode, and its watches across an apiserver restart.

Checks, on a cluster whose netaware scheduler sends full Node objects (nodeCacheCapable: false):
- a pod whose dependency runs in zone B is still placed in zone B (the extender reads the NodeList);
- after kube-apiserver is restarted, the extender (still the same process) reconnects its watches: an AppGroup and
  pods created afterwards are scheduled by the cost function again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netaware.controlplane.running import restart_component, status

from .conftest import (
    Cluster,
    apply_appgroup,
    create_pod,
    labels,
    pod_manifest,
    start_cluster,
    wait_bound,
    wait_extender_sees,
    workload,
    zone_of,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory, fake_nodes=6, extender_node_cache_capable=False)


def place_pair(cluster: Cluster, group: str, zone: str) -> str:
    apply_appgroup(cluster, group, [workload("caller", group, [{"workload": "callee"}]), workload("callee", group)])
    wait_extender_sees(cluster, group)
    create_pod(
        cluster,
        pod_manifest(f"{group}-callee", labels("callee", group), node_selector={"topology.kubernetes.io/zone": zone}),
    )
    wait_bound(cluster, f"{group}-callee")
    wait_extender_sees(cluster, group, {"callee": 1})
    create_pod(cluster, pod_manifest(f"{group}-caller", labels("caller", group)))
    return zone_of(cluster, wait_bound(cluster, f"{group}-caller"))


def test_full_node_list_mode_places_by_network_cost(cluster: Cluster, topology_applied: dict[str, str]) -> None:
    assert place_pair(cluster, "full", "zone-b") == "zone-b"
    assert '"verb": "filter", "pod": "default/full-caller"' in cluster.log("extender")


def test_watches_reconnect_after_an_apiserver_restart(cluster: Cluster, topology_applied: dict[str, str]) -> None:
    restart_component(cluster.settings, "kube-apiserver")
    # A restart takes longer than kube-scheduler's 10 s lease renew deadline, and kube-scheduler exits when it
    # loses its lease (in a cluster the kubelet restarts it). Do what the kubelet would.
    states = {c["name"]: c["state"] for c in status(cluster.settings)["components"]}
    if states["netaware-scheduler"] == "exited":
        restart_component(cluster.settings, "netaware-scheduler")
    extender = next(c for c in status(cluster.settings)["components"] if c["name"] == "extender")
    assert extender["state"] == "ready" and extender["pid"] == cluster.component("extender")["pid"]
    assert place_pair(cluster, "after-restart", "zone-c") == "zone-c"
