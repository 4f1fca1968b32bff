"""The AviatorPolicy controller (`netaware-router controller`, a real process) against the local control plane,
steering a Service whose endpoints are real replicas (the dummy workload service).

The target Service `web` is selector-less with hand-written EndpointSlices (kwok pods have no process behind
their IPs; these endpoints answer real probes). EndpointSlices refuse loopback addresses, so the replicas run in
a network namespace this test creates, joined to the host by a veth pair (10.250.0.2); needs root, and fails
loudly without it. Checks: a TopN=2 policy gets the finalizer, and the Service
`web-aviator` with an EndpointSlice holding the two fast endpoints, both owned by the policy; status shows active 2
of 3 and the chosen endpoints' latency, and `kubectl get avp` shows the columns; a chosen replica that dies is
dropped (circuit breaker) and replaced by the next best; a spec the controller cannot evaluate says why in its
status; deleting the policy removes what it owned; `kubectl apply -k router/` installs the controller's manifests
and its ServiceAccount may do what the controller does; /healthz and /metrics answer.

The proxy (`netaware-router proxy --service`, a real process) follows a Service's EndpointSlices in the same
cluster: it waits for a Service that does not exist yet; under load, endpoints that join get traffic within 2 s,
terminating ones drain, deleted ones leave at once, and no request fails. A workload service routing its own
calls (`--routing prequal`) follows its downstream's slices the same way and sends most calls to the fast replica.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvloop
from kubernetes import client
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families

from netaware.kube.converters import GROUP, VERSION
from netaware.kube.converters import NAMESPACE as NETAWARE_NAMESPACE
from netaware.lab.emulating import remove_namespace, run_commands
from netaware.router.loadgen import LoadReport, open_loop
from netaware.router.testbed import (
    HOST,
    ReplicaSpec,
    Testbed,
    attempts_per_replica,
    logged_fields,
    router_counts,
    running,
    wait_until_answering,
)
from tests.conftest import unused_port

from .conftest import Cluster, apply_namespaces, kubectl, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
PORTS = 32400  # inside the test's own network namespace, where nothing else listens
NETNS = "naav-replicas"
REPLICA_HOST = "10.250.0.2"
FAST = [ReplicaSpec(port=PORTS + i, work_ms=2.0, capacity=4, host=REPLICA_HOST, netns=NETNS) for i in range(2)]
SLOW = ReplicaSpec(port=PORTS + 2, work_ms=60.0, capacity=4, host=REPLICA_HOST, netns=NETNS)


@pytest.fixture(scope="module")
def replica_network() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the AviatorPolicy test needs root (a network namespace for its replicas)", pytrace=False)
    remove_namespace(NETNS)  # left over by a killed run
    run_commands([
        ["ip", "netns", "add", NETNS],
        ["ip", "link", "add", "naav0", "type", "veth", "peer", "name", "eth0", "netns", NETNS],
        ["ip", "addr", "add", "10.250.0.1/24", "dev", "naav0"],
        ["ip", "link", "set", "naav0", "up"],
        ["ip", "-n", NETNS, "link", "set", "lo", "up"],
        ["ip", "-n", NETNS, "addr", "add", f"{REPLICA_HOST}/24", "dev", "eth0"],
        ["ip", "-n", NETNS, "link", "set", "eth0", "up"],
    ])  # fmt: skip
    yield
    remove_namespace(NETNS)  # the veth pair goes with it


@pytest.fixture(scope="module")
def replicas(replica_network: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with running(tmp_path_factory.mktemp("replicas")) as testbed:
        for spec in [*FAST, SLOW]:
            testbed.start_replica(spec, threads=16)
            with requests.Session() as session:  # traffic, so each replica's latency estimate means something
                for _ in range(10):
                    session.get(f"http://{spec.address}/", timeout=5).raise_for_status()
        yield testbed


@pytest.fixture(scope="module")
def controller(cluster: Cluster, replicas: Testbed) -> str:
    """The controller's status address (/healthz, /metrics), on a port the kernel picked."""
    replicas.start(  # stopped with the replicas
        "controller",
        [sys.executable, "-m", "netaware.router.commands", "controller", "--kubeconfig", cluster.status["kubeconfig"],
         "--namespace", NAMESPACE, "--metrics", f"{HOST}:0"],
    )  # fmt: skip
    address = replicas.logged("controller", logged_fields("aviator controller running", "metrics"))["metrics"]
    wait_until_answering(f"http://{address}/healthz", replicas, "controller")
    return address


@pytest.fixture(scope="module")
def target(cluster: Cluster) -> None:
    cluster.core.create_namespaced_service(
        NAMESPACE, {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    )  # type: ignore[arg-type]
    endpoints = [
        {"addresses": [REPLICA_HOST], "conditions": {"ready": True}, "nodeName": f"node-{i}"} for i in range(3)
    ]  # one address each: the ports differ, so each replica needs its own slice
    for index, spec in enumerate([*FAST, SLOW]):
        client.DiscoveryV1Api(cluster.api).create_namespaced_endpoint_slice(
            NAMESPACE,
            {"metadata": {"name": f"web-{index}", "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "endpoints": [endpoints[index]],
             "ports": [{"name": "http", "port": spec.port, "protocol": "TCP"}]},
        )  # type: ignore[arg-type]  # fmt: skip


def policy(name: str, selection: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AviatorPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"targetRef": {"name": "web"}, "selection": selection, "evaluationInterval": "1s", **spec},
    }  # fmt: skip


def read_policy(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "aviatorpolicies", name)  # type: ignore[no-any-return]


def slice_addresses(cluster: Cluster) -> set[str]:
    """The addresses (ip:port) the shadow Service `web-aviator` sends traffic to, from its EndpointSlices."""
    slices = client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(
        NAMESPACE, label_selector="kubernetes.io/service-name=web-aviator"
    )
    return {f"{a}:{s.ports[0].port}" for s in slices.items for e in s.endpoints or [] for a in e.addresses}


def selected(cluster: Cluster) -> list[str]:
    return sorted((read_policy(cluster, "web-fast").get("status") or {}).get("selectedEndpoints", []))


def test_topn_policy_keeps_the_fast_endpoints(cluster: Cluster, controller: str, target: None) -> None:
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "aviatorpolicies",
        policy("web-fast", {"algorithm": "TopN", "topN": 2}, circuitBreaker={"minRequests": 1, "errorRatio": 0.5,
                                                                             "openDuration": "60s"}),
    )  # fmt: skip
    status = wait_for(
        lambda: (read_policy(cluster, "web-fast").get("status") or {}).get("activeEndpoints") == 2
        and read_policy(cluster, "web-fast")["status"],
        timeout_s=30, what="policy status",
    )  # fmt: skip
    assert status["totalEndpoints"] == 3
    assert sorted(status["selectedEndpoints"]) == sorted(s.address for s in FAST)
    assert status["service"] == "web-aviator"
    assert 0 < status["p50LatencyMs"] < 30  # the fast replicas' estimates, not the slow one's ~60 ms
    assert read_policy(cluster, "web-fast")["metadata"]["finalizers"] == ["netaware.io/aviator-cleanup"]
    assert slice_addresses(cluster) == {s.address for s in FAST}
    slices = client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(
        NAMESPACE, label_selector="kubernetes.io/service-name=web-aviator"
    )
    assert {s.metadata.owner_references[0].kind for s in slices.items} == {"AviatorPolicy"}
    assert {e.node_name for s in slices.items for e in s.endpoints} == {"node-0", "node-1"}
    shadow = cluster.core.read_namespaced_service("web-aviator", NAMESPACE)
    assert shadow.spec.selector is None and shadow.metadata.owner_references[0].name == "web-fast"
    table = kubectl(cluster, "get", "avp", "-n", NAMESPACE)
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:7] == ["NAME", "TARGET", "SELECTION", "ACTIVE", "TOTAL", "P99-MS", "SERVICE"]
    assert row.split()[:5] == ["web-fast", "web", "TopN", "2", "3"]


def test_a_dead_endpoint_is_dropped_and_replaced(cluster: Cluster, replicas: Testbed, controller: str) -> None:
    dead = FAST[0]
    replicas.kill_replica(dead.address)
    survivors = sorted([FAST[1].address, SLOW.address])
    wait_for(lambda: selected(cluster) == survivors, timeout_s=30, what="the dead endpoint to be replaced")
    status = read_policy(cluster, "web-fast")["status"]
    assert slice_addresses(cluster) == set(survivors)
    assert "probes failed" in status["message"]
    metrics = requests.get(f"http://{controller}/metrics", timeout=5).text
    assert 'netaware_aviator_probes_total{outcome="error"}' in metrics
    assert 'netaware_aviator_selection_changes_total{namespace="default",policy="web-fast"}' in metrics


def test_a_policy_that_cannot_be_evaluated_says_why(cluster: Cluster, controller: str) -> None:
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "aviatorpolicies", policy("web-broken", {"algorithm": "Percentage"})
    )
    message = wait_for(
        lambda: (read_policy(cluster, "web-broken").get("status") or {}).get("message"), timeout_s=30, what="message"
    )
    assert message == "invalid policy: spec.selection.percentage is required by algorithm Percentage"
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "aviatorpolicies", "web-broken")


def test_deleting_the_policy_removes_what_it_owned(cluster: Cluster, controller: str) -> None:
    assert slice_addresses(cluster)
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "aviatorpolicies", "web-fast")

    def gone() -> bool:
        try:
            read_policy(cluster, "web-fast")
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, timeout_s=30, what="the policy to be finalized and deleted")
    assert slice_addresses(cluster) == set()
    with pytest.raises(ApiException) as raised:
        cluster.core.read_namespaced_service("web-aviator", NAMESPACE)
    assert raised.value.status == 404


def test_router_manifests_apply_and_grant_what_the_controller_does(cluster: Cluster) -> None:
    apply_namespaces(cluster)
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-k", str(REPO / "router"))
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/netaware-aviator" in result.stdout
    deployment = json.loads(
        kubectl(cluster, "-n", NETAWARE_NAMESPACE, "get", "deploy", "netaware-aviator", "-o", "json").stdout
    )
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["netaware-router", "controller"]
    account = f"system:serviceaccount:{NETAWARE_NAMESPACE}:netaware-aviator"
    for verb, resource in [
        ("list", "aviatorpolicies.netaware.io"), ("patch", "aviatorpolicies.netaware.io/status"),
        ("patch", "aviatorpolicies.netaware.io"), ("create", "endpointslices.discovery.k8s.io"),
        ("update", "endpointslices.discovery.k8s.io"), ("delete", "services"), ("create", "services"),
    ]:  # fmt: skip
        answer = kubectl(cluster, "auth", "can-i", verb, resource, "--as", account, "-n", NAMESPACE)
        assert answer.stdout.strip() == "yes", (verb, resource, answer.stderr)
    assert kubectl(cluster, "auth", "can-i", "delete", "pods", "--as", account).stdout.strip() == "no"


FOLLOWED = [ReplicaSpec(port=PORTS + 10 + i, work_ms=5.0, capacity=8, host=REPLICA_HOST, netns=NETNS) for i in range(4)]
"""The replicas behind the Service `back` that `netaware-router proxy --service` follows."""


def back_slice(spec: ReplicaSpec, *, ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    """One replica's EndpointSlice of the Service `back` (each replica has its own port, so its own slice)."""
    conditions = {"ready": ready, "serving": True, "terminating": terminating}
    return {"metadata": {"name": f"back-{spec.port}", "labels": {"kubernetes.io/service-name": "back"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [REPLICA_HOST], "conditions": conditions}],
            "ports": [{"name": "http", "port": spec.port, "protocol": "TCP"}]}  # fmt: skip


def router_state(admin: str) -> dict[str, Any]:
    return requests.get(f"http://{admin}/v1/state", timeout=5).json()  # type: ignore[no-any-return]


def test_the_proxy_follows_a_service_scaled_up_and_down_under_load(
    cluster: Cluster, replica_network: None, tmp_path: Path
) -> None:
    """`--service default/back:http` before the Service exists: /healthz says it waits for it, a request is a 503
    naming it. Then, under 100 requests/s: two replicas; two more join (each gets traffic within 2 s); one turns
    terminating (gets no new request); its slice and another's are deleted (both out at once). No request fails."""
    discovery = client.DiscoveryV1Api(cluster.api)
    with running(tmp_path) as testbed:
        for spec in FOLLOWED:
            testbed.start_replica(spec, threads=32)
        router = testbed.start_router(
            [], "prequal", "--service", "default/back:http", "--kubeconfig", cluster.status["kubeconfig"],
            wait_healthy=False,
        )  # fmt: skip
        waiting = requests.get(f"http://{router.admin}/healthz", timeout=5)
        assert waiting.status_code == 503
        assert waiting.json() == {"status": "starting", "waiting_for": "Service default/back:http"}
        early = requests.get(f"http://{router.listen}/", timeout=5)
        assert early.status_code == 503 and "Service default/back:http" in early.json()["error"]

        cluster.core.create_namespaced_service(
            NAMESPACE, {"metadata": {"name": "back"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
        )  # type: ignore[arg-type]
        for spec in FOLLOWED[:2]:
            discovery.create_namespaced_endpoint_slice(NAMESPACE, back_slice(spec))  # type: ignore[arg-type]
        wait_for(lambda: requests.get(f"http://{router.admin}/healthz", timeout=5).ok, timeout_s=30,
                 what="the router to list the Service's slices")  # fmt: skip
        assert sorted(router_state(router.admin)["replicas"]) == [s.address for s in FOLLOWED[:2]]

        reports: list[LoadReport] = []
        load = threading.Thread(target=lambda: reports.append(uvloop.run(
            open_loop(f"http://{router.listen}/", rate_per_s=100, duration_s=16, seed=3))))  # fmt: skip
        load.start()
        time.sleep(2)
        joined_at = time.monotonic()
        for spec in FOLLOWED[2:]:
            discovery.create_namespaced_endpoint_slice(NAMESPACE, back_slice(spec))  # type: ignore[arg-type]
        new = [s.address for s in FOLLOWED[2:]]
        wait_for(lambda: all(attempts_per_replica(router.admin).get(a, 0) > 0 for a in new), timeout_s=10,
                 what="both new replicas to receive traffic")  # fmt: skip
        join_s = time.monotonic() - joined_at

        leaving = FOLLOWED[0]
        discovery.replace_namespaced_endpoint_slice(
            f"back-{leaving.port}", NAMESPACE, back_slice(leaving, ready=False, terminating=True)
        )  # type: ignore[arg-type]
        wait_for(lambda: router_state(router.admin)["draining"] == [leaving.address], timeout_s=5,
                 what="the terminating replica to drain")  # fmt: skip
        # Picks are counted when a request is sent (attempts when it ends: one sent just before the drain may end
        # after it), so they show whether the draining replica is still chosen.
        drained = router_counts(router.admin).picks[leaving.address]
        time.sleep(2)
        assert router_counts(router.admin).picks[leaving.address] == drained  # no new request to it
        for spec in FOLLOWED[:2]:
            discovery.delete_namespaced_endpoint_slice(f"back-{spec.port}", NAMESPACE)
        wait_for(lambda: sorted(router_state(router.admin)["replicas"]) == new, timeout_s=5,
                 what="the deleted replicas to leave")  # fmt: skip
        testbed.kill_replica(leaving.address)  # scaled down: its process goes too
        load.join(timeout=60)
        counts = attempts_per_replica(router.admin)
        metrics = requests.get(f"http://{router.admin}/metrics", timeout=5).text
    (report,) = reports
    assert report.errors == 0, report.error_samples
    assert report.requests > 1000
    assert join_s < 2.0, f"new replicas received traffic only after {join_s:.2f} s"
    assert all(counts[a] > 50 for a in new), counts
    assert 'netaware_router_replicas{state="routable"} 2.0' in metrics
    print(f"\nfollowing: {report.requests} requests, none failed; new replicas served within {join_s * 1e3:.0f} ms")


ROUTED_FAST = ReplicaSpec(port=PORTS + 20, work_ms=2.0, capacity=4, host=REPLICA_HOST, netns=NETNS)
ROUTED_SLOW = ReplicaSpec(port=PORTS + 21, work_ms=40.0, capacity=4, host=REPLICA_HOST, netns=NETNS)


def served_requests(address: str) -> float:
    text = requests.get(f"http://{address}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "netaware_workload_requests":
            return sum(s.value for s in family.samples if s.name.endswith("_total") and s.labels["code"] == "200")
    return 0.0


def test_a_workload_routing_its_own_calls_with_prequal_sends_more_of_them_to_the_fast_replica(
    cluster: Cluster, replica_network: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`netaware-workload serve --routing prequal` and `--routing random` (real processes, side by side) calling the
    Service `fast-slow`, whose two replicas take 2 and 40 ms: each caller follows the Service's EndpointSlices itself;
    /healthz is 503 until it has listed them; no call fails; Prequal sends a clearly larger share of its calls to the
    fast replica than the random choice (kube-proxy's) does."""
    discovery = client.DiscoveryV1Api(cluster.api)
    monkeypatch.setenv("KUBECONFIG", cluster.status["kubeconfig"])
    monkeypatch.setenv("POD_NAMESPACE", NAMESPACE)
    fronts = {policy: f"{HOST}:{unused_port()}" for policy in ("prequal", "random")}
    shares: dict[str, float] = {}
    with running(tmp_path) as testbed:
        for spec in (ROUTED_FAST, ROUTED_SLOW):
            testbed.start_replica(spec, threads=16)
        for policy, front in fronts.items():
            testbed.start(f"front-{policy}", [
                sys.executable, "-m", "netaware.workloads.commands", "serve", "--name", "front", "--host", HOST,
                "--port", front.rsplit(":", 1)[1], "--work-ms", "0", "--call", "fast-slow:80", "--routing", policy,
            ])  # fmt: skip
            url = f"http://{front}/healthz"
            status, body = wait_for(lambda: _answer(url), timeout_s=30, what=f"the {policy} front")  # noqa: B023
            assert status == 503 and body["waiting_for"] == "downstream endpoints"
        cluster.core.create_namespaced_service(
            NAMESPACE, {"metadata": {"name": "fast-slow"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
        )  # type: ignore[arg-type]
        for spec in (ROUTED_FAST, ROUTED_SLOW):
            discovery.create_namespaced_endpoint_slice(NAMESPACE, {
                "metadata": {"name": f"fast-slow-{spec.port}", "labels": {"kubernetes.io/service-name": "fast-slow"}},
                "addressType": "IPv4", "endpoints": [{"addresses": [REPLICA_HOST], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": spec.port, "protocol": "TCP"}],
            })  # type: ignore[arg-type]  # fmt: skip
        for policy, front in fronts.items():
            wait_until_answering(f"http://{front}/healthz", testbed, f"front-{policy}")
            before = served_requests(ROUTED_FAST.address), served_requests(ROUTED_SLOW.address)
            report = uvloop.run(open_loop(f"http://{front}/", rate_per_s=40, duration_s=8, seed=11))
            fast = served_requests(ROUTED_FAST.address) - before[0]
            slow = served_requests(ROUTED_SLOW.address) - before[1]
            assert report.errors == 0, (policy, report.error_samples)
            assert fast + slow >= report.requests  # every request made one call
            shares[policy] = fast / (fast + slow)
            counted = requests.get(f"http://{front}/metrics", timeout=5).text
            assert 'netaware_workload_downstream_calls_total{node="",service="fast-slow"}' in counted
            routing = requests.get(f"http://{front}/v1/routing", timeout=5).json()
            downstream = routing["downstreams"]["fast-slow:80"]
            assert routing["routing"] == policy and downstream["policy"] == policy, routing
            assert sorted(downstream["replicas"]) == sorted([ROUTED_FAST.address, ROUTED_SLOW.address]), routing
            assert policy == "random" or downstream["pool"], routing  # Prequal shows the probes it chooses by
    # 320 calls each: a binomial share's standard deviation is under 3 points, so 15 points apart is no accident.
    assert shares["prequal"] >= shares["random"] + 0.15, shares
    print(f"\nthe fast replica's share of the calls: {', '.join(f'{p} {s:.0%}' for p, s in shares.items())}")


def _answer(url: str) -> tuple[int, Any] | None:
    """Status and JSON body, or None while nothing listens (a Response is falsy when not ok: wait_for needs this)."""
    try:
        answer = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return answer.status_code, answer.json()
