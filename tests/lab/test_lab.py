"""The lab's fallback runtime end to end (`--runtime process`, for machines without containerd; the real nodes are
tested in test_real_nodes.py): a real control plane, lab nodes as namespaces behind the TUN link emulator, pods as
processes.

Checks: the lab's nodes register as Ready Nodes with their zones; the NetworkTopology the lab wrote from real ICMP
shows the profile's RTTs (within 10% or 1 ms); a Deployment + Service graph runs as real processes and a request
walks the whole chain over Service names; a ping between pods in two zones shows the zones' delay (pods sit behind
their node's shaped link); a deleted pod's processes and namespace are gone and the Deployment's replacement runs;
a short experiment places the chain with netaware as well as the integer-programming optimum and far better than the
default scheduler, with no errors, and writes its report; after the daemon is killed outright, `down` still leaves no
namespace, process or Node behind. Needs root (fails loudly without it).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import icmplib
import pytest
from kubernetes import client

from netaware.controlplane.running import running_cluster
from netaware.controlplane.settings import ClusterSettings
from netaware.experiments.reporting import write_report
from netaware.experiments.running import EXPERIMENTS, ExperimentRunner
from netaware.kube.applying import apply_manifests
from netaware.kube.clients import api_client
from netaware.kube.converters import GROUP, VERSION
from netaware.lab.daemon import LabConfig
from netaware.lab.emulating import namespaces_with_prefix
from netaware.lab.running import down, status, up
from netaware.netns import run_in
from netaware.workloads.graphs import graph_named
from netaware.workloads.manifests import render
from tests.lab import matches_shaped_rtt

pytestmark = [pytest.mark.netns, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
PORT_BASE = 28000
PREFIX = "natlab"
# three-zones with three nodes: one per zone. One-way delays a-b 10 ms, a-c 20 ms, b-c 15 ms.
EXPECTED_RTT_MS = {("zone-a", "zone-b"): 20.0, ("zone-a", "zone-c"): 40.0, ("zone-b", "zone-c"): 30.0}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabConfig, client.ApiClient]]:
    if os.geteuid() != 0:
        pytest.fail("the lab tier needs root (network namespaces, TUN devices); run it as root", pytrace=False)
    settings = ClusterSettings(state_dir=tmp_path_factory.mktemp("labcluster") / "state", port_base=PORT_BASE)
    with running_cluster(settings) as cluster:
        kubeconfig = Path(cluster["kubeconfig"])
        config = LabConfig(
            profile=REPO / "tc-scripts/profiles/three-zones.yaml",
            state_dir=tmp_path_factory.mktemp("lab"),
            kubeconfig=kubeconfig,
            nodes=3,
            prefix=PREFIX,
            subnet=242,
            port=PORT_BASE + 990,
            bandwidth_seconds=1,
            runtime="process",
        )
        up(config)
        try:
            yield config, api_client(kubeconfig)
        finally:
            down(config.state_dir, kubeconfig, prefix=PREFIX)


def zone_rtt(zone_a: str, zone_b: str) -> float:
    return EXPECTED_RTT_MS.get((zone_a, zone_b)) or EXPECTED_RTT_MS[(zone_b, zone_a)]


def test_lab_nodes_register_ready_with_their_zones(lab: tuple[LabConfig, client.ApiClient]) -> None:
    _, api = lab
    nodes = client.CoreV1Api(api).list_node(label_selector=f"netaware.io/lab={PREFIX}").items
    zones = sorted(n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes)
    assert zones == ["zone-a", "zone-b", "zone-c"]
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name


def test_networktopology_shows_the_profile(lab: tuple[LabConfig, client.ApiClient]) -> None:
    config, api = lab
    zones = {name: spec["zone"] for name, spec in status(config.state_dir)["nodes"].items()}
    custom = client.CustomObjectsApi(api)
    for origin, zone in zones.items():
        resource = custom.get_cluster_custom_object(GROUP, VERSION, "networktopologies", origin)
        for link in resource["spec"]["links"]:
            expected = zone_rtt(zone, zones[link["destination"]])
            assert matches_shaped_rtt(link["rttMs"], expected), (origin, link)
            assert link["samples"] >= 20 and link["source"] == "measured"
            assert link["bandwidthMbps"] > 0


def deploy_chain(config: LabConfig, api: client.ApiClient, namespace: str) -> ExperimentRunner:
    runner = ExperimentRunner(kubeconfig=config.kubeconfig, lab_state_dir=config.state_dir)
    graph = graph_named("chain")
    apply_manifests(api, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
    apply_manifests(api, render(graph, namespace=namespace, scheduler="default"))
    return runner


def test_a_graph_runs_as_processes_and_serves_through_service_names(lab: tuple[LabConfig, client.ApiClient]) -> None:
    config, api = lab
    runner = deploy_chain(config, api, "lab-chain")
    graph = graph_named("chain")
    replica_nodes = runner.wait_ready("lab-chain", graph, "default")
    state = status(config.state_dir)
    runner.wait_endpoints("lab-chain", graph, state)
    entry_namespace = state["nodes"][replica_nodes["a"][0]]["namespace"]
    load = runner.drive(entry_namespace, "lab-chain", "a", rate=20, count=30, lab=state)
    assert load["ok"] == 30 and load["errors"] == 0, load
    assert load["callsPerRequest"] == 3  # a -> b -> c -> d, every hop resolved by Service name


def test_pods_sit_behind_their_nodes_shaped_links(lab: tuple[LabConfig, client.ApiClient]) -> None:
    config, _ = lab
    state = status(config.state_dir)
    pods = [p for p in state["pods"] if p["pod"].startswith("lab-chain/")]
    zone_of = {name: spec["zone"] for name, spec in state["nodes"].items()}
    pairs = [(a, b) for a in pods for b in pods if zone_of[a["node"]] < zone_of[b["node"]]]
    assert pairs, f"the default scheduler put every pod in one zone: {pods}"
    source, target = pairs[0]
    host = run_in(source["netns"], lambda: icmplib.ping(target["ip"], count=10, interval=0.05, privileged=True))
    expected = zone_rtt(zone_of[source["node"]], zone_of[target["node"]])
    assert matches_shaped_rtt(statistics.median(host.rtts), expected), host.rtts


def test_a_deleted_pod_is_stopped_and_replaced(lab: tuple[LabConfig, client.ApiClient]) -> None:
    config, api = lab
    core = client.CoreV1Api(api)
    victim = core.list_namespaced_pod("lab-chain", label_selector="app=b").items[0]
    before = next(p for p in status(config.state_dir)["pods"] if p["pod"] == f"lab-chain/{victim.metadata.name}")
    pids = subprocess.run(["ip", "netns", "pids", before["netns"]], capture_output=True, text=True).stdout.split()
    assert pids, "the pod's process is not running in its namespace"
    core.delete_namespaced_pod(victim.metadata.name, "lab-chain")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = {p["pod"]: p for p in status(config.state_dir)["pods"]}
        replaced = [k for k, p in current.items() if k.startswith("lab-chain/b-") and p["ready"]]
        if f"lab-chain/{victim.metadata.name}" not in current and replaced:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"pod not stopped and replaced: {sorted(current)}")
    assert before["netns"] not in namespaces_with_prefix(PREFIX) or before["netns"] in {
        p["netns"] for p in current.values()
    }  # the namespace name is reused only by a new pod
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} of the deleted pod still runs"
    client.CoreV1Api(api).delete_namespace("lab-chain")


def test_a_short_experiment_places_the_chain_like_the_optimum(
    lab: tuple[LabConfig, client.ApiClient], tmp_path: Path
) -> None:
    config, _ = lab
    runner = ExperimentRunner(kubeconfig=config.kubeconfig, lab_state_dir=config.state_dir)
    runner.delete_namespace("lab-chain")
    experiment = replace(EXPERIMENTS["chain"], requests=40, warmup=5)
    result = runner.run(experiment, ["default", "netaware", "optimal"])
    by_policy = {p.policy: p for p in result.policies}
    for policy in by_policy.values():
        assert policy.load["errors"] == 0 and policy.load["ok"] == 40, (policy.policy, policy.load)
        assert policy.network_cost_ms >= by_policy["optimal"].network_cost_ms - 1e-6  # it is the optimum
    # One node holds the whole chain (4 x 500m on 2 CPUs): co-located, no network time at all.
    assert by_policy["netaware"].network_cost_ms == pytest.approx(by_policy["optimal"].network_cost_ms, abs=0.5)
    assert by_policy["default"].network_cost_ms > by_policy["netaware"].network_cost_ms + 10
    assert by_policy["netaware"].cross_zone_bytes < by_policy["default"].cross_zone_bytes
    written = write_report(result, tmp_path)
    assert (tmp_path / "summary.md").exists() and len(written) == 7


def test_down_after_a_crash_leaves_nothing(lab: tuple[LabConfig, client.ApiClient]) -> None:
    config, api = lab
    state: dict[str, Any] = status(config.state_dir)
    apply_manifests(api, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-crash"}}])
    apply_manifests(api, render(graph_named("star"), namespace="lab-crash", scheduler="default"))
    deadline = time.monotonic() + 60
    while len([p for p in status(config.state_dir)["pods"] if p["ready"]]) < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    namespaces = namespaces_with_prefix(PREFIX)
    pids = [
        pid
        for namespace in namespaces
        for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    ]
    assert len(namespaces) > 3 and pids, "the star's pods should be running"
    os.kill(state["pid"], signal.SIGKILL)  # a crash: no clean-up at all
    time.sleep(1)
    removed = down(config.state_dir, config.kubeconfig, prefix=PREFIX)
    assert namespaces_with_prefix(PREFIX) == []
    for pid in [*pids, str(state["relayPid"]), str(state["pid"])]:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), f"process {pid} survived `down`"
    assert client.CoreV1Api(api).list_node(label_selector=f"netaware.io/lab={PREFIX}").items == []
    assert any(entry.startswith("node ") for entry in removed)
    assert not status(config.state_dir)["running"]


def _state(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"
