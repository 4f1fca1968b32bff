"""Workload graphs, their manifests, the dummy service and the load driver.

Checks: calls per request multiply along paths; broken graphs are refused; every graph renders manifests whose
AppGroup passes the CRD schema and converts to the same dependency weights; the netaware variant carries the
scheduler name and the gate, the default one neither, a pinned one a hostname selector; client-side routing gives
the callers `--routing` and a service account whose Role may read EndpointSlices, and a downstream host names its
Service (bare, name.namespace, or the full cluster name); the committed YAML in
workloads/ is what the renderer writes now; Service names resolve through the lab's table; two real dummy services
on loopback answer a request through a real HTTP call chain, and a dead downstream turns into a 502 naming it; the
open-loop driver counts successes and errors.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from werkzeug.serving import make_server

from netaware.kube.converters import appgroup_from_resource
from netaware.kube.schemas import load_crd_schemas, validate_resource
from netaware.workloads.graphs import GRAPHS, Call, Service, ServiceGraph, graph_named
from netaware.workloads.load import drive
from netaware.workloads.manifests import GATE, render, rendered_yaml
from netaware.workloads.routing import service_reference
from netaware.workloads.service import Downstream, Resolver, ServiceSettings, create_app

REPO = Path(__file__).resolve().parents[2]


def test_calls_per_request_multiply_along_paths() -> None:
    weights = graph_named("online-boutique").calls_per_request()
    assert weights[("frontend", "currencyservice")] == 2
    assert weights[("cartservice", "redis-cart")] == 2  # cart is called by frontend and by checkout
    assert weights[("recommendationservice", "productcatalogservice")] == 1
    assert sum(weights.values()) == 18  # the calls one request causes (the load driver sees the same)


def test_broken_graphs_are_refused() -> None:
    with pytest.raises(ValueError, match="cycle"):
        ServiceGraph("loop", "a", (Service("a", (Call("b"),)), Service("b", (Call("a"),))))
    with pytest.raises(ValueError, match="unknown services"):
        ServiceGraph("dangling", "a", (Service("a", (Call("ghost"),)),))
    with pytest.raises(ValueError, match="unknown workload"):
        graph_named("nope")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_manifests_are_valid_and_carry_the_graph(name: str) -> None:
    graph = GRAPHS[name]
    documents = render(graph, namespace="exp", scheduler="netaware")
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Deployment") == kinds.count("Service") == len(graph.services)
    appgroup = next(d for d in documents if d["kind"] == "AppGroup")
    assert validate_resource(appgroup, load_crd_schemas(REPO / "crds")) == []
    group = appgroup_from_resource(appgroup)
    weights = {(w.name, d.workload): d.weight for w in group.workloads for d in w.dependencies}
    assert weights == {edge: float(calls) for edge, calls in graph.calls_per_request().items()}
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["schedulerName"] == "netaware-scheduler"
        assert spec["schedulingGates"] == [{"name": GATE}]
        assert spec["containers"][0]["command"] == ["netaware-workload"]


def test_default_and_pinned_variants() -> None:
    graph = graph_named("chain")
    for deployment in (d for d in render(graph, scheduler="default") if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert "schedulerName" not in spec and "schedulingGates" not in spec
    pinned = render(graph, scheduler="default", pinned={"a": "node-x"})
    selectors = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"].get("nodeSelector")
        for d in pinned
        if d["kind"] == "Deployment"
    }
    assert selectors["a"] == {"kubernetes.io/hostname": "node-x"}
    assert selectors["b"] is None
    with pytest.raises(ValueError, match="scheduler"):
        render(graph, scheduler="volcano")


def test_client_side_routing_gives_callers_the_flag_and_an_account_that_may_read_endpoint_slices() -> None:
    documents = render(graph_named("chain"), routing="prequal")
    kinds = [d["kind"] for d in documents]
    assert kinds[:3] == ["ServiceAccount", "Role", "RoleBinding"]
    rules = documents[1]["rules"]
    assert {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]} in rules
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents if d["kind"] == "Deployment"}
    callers = {name for name, spec in pods.items() if "--routing=prequal" in spec["containers"][0]["args"]}
    assert callers == {s.name for s in graph_named("chain").services if s.calls}  # the last one calls nobody
    assert all(pods[name]["serviceAccountName"] == "netaware-workload" for name in callers)
    assert not any(d["kind"] == "Role" for d in render(graph_named("chain")))  # kube-proxy: nothing extra
    with pytest.raises(ValueError, match="routing must be one of kube-proxy, prefer-close, random"):
        render(graph_named("chain"), routing="istio")


def test_prefer_close_routing_is_kube_proxy_over_services_that_prefer_the_callers_zone() -> None:
    documents = render(graph_named("replicated"), routing="prefer-close")
    services = [d for d in documents if d["kind"] == "Service"]
    assert services and all(s["spec"]["trafficDistribution"] == "PreferClose" for s in services)
    pods = [d["spec"]["template"]["spec"] for d in documents if d["kind"] == "Deployment"]
    assert not any("--routing" in " ".join(p["containers"][0]["args"]) or "serviceAccountName" in p for p in pods)
    assert not any(d["kind"] == "Role" for d in documents)
    assert not any(
        "trafficDistribution" in d["spec"] for d in render(graph_named("replicated")) if d["kind"] == "Service"
    )


def test_spread_replicas_carry_a_zone_spread_constraint_over_their_own_pods() -> None:
    graph = graph_named("replicated")
    pods = {d["metadata"]["name"]: d for d in render(graph) if d["kind"] == "Deployment"}
    assert "topologySpreadConstraints" not in pods["frontend"]["spec"]["template"]["spec"]
    for name in ("catalog", "currency", "cart"):
        assert pods[name]["spec"]["replicas"] == 2
        (constraint,) = pods[name]["spec"]["template"]["spec"]["topologySpreadConstraints"]
        own_pods = {"matchLabels": pods[name]["spec"]["selector"]["matchLabels"]}
        assert constraint == {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                              "whenUnsatisfiable": "DoNotSchedule", "labelSelector": own_pods}  # fmt: skip


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("cart", ("shop", "cart"), id="a bare name is in the caller's namespace"),
        pytest.param("cart.store", ("store", "cart"), id="name.namespace"),
        pytest.param("cart.store.svc.cluster.local", ("store", "cart"), id="a full cluster name"),
    ],
)
def test_a_downstream_host_names_its_service(host: str, expected: tuple[str, str]) -> None:
    reference = service_reference(host, 8080, "shop")
    assert (reference.namespace, reference.name, reference.port) == (*expected, 8080)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_committed_workload_yaml_is_current(name: str) -> None:
    path = REPO / "workloads" / f"{name}.yaml"
    assert path.read_text() == rendered_yaml(GRAPHS[name]), f"regenerate with: netaware workload render --all ({path})"


def test_downstream_parsing() -> None:
    assert Downstream.parse("cart:8080") == Downstream("cart", 8080, 1)
    assert Downstream.parse("cart.shop:8080*3") == Downstream("cart.shop", 8080, 3)
    for bad in ("cart", "cart:http", "cart:8080*0", ":8080"):
        with pytest.raises(ValueError):
            Downstream.parse(bad)


def test_resolver_reads_the_lab_table_and_follows_changes(tmp_path: Path) -> None:
    table = tmp_path / "services.json"
    table.write_text(
        json.dumps({"shop/cart:8080": ["10.0.1.2:8080", "10.0.2.2:8080"], "other/db:5432": ["10.0.3.2:5432"]})
    )
    resolver = Resolver(table, "shop", random.Random(1))
    assert {resolver.resolve("cart", 8080) for _ in range(50)} == {"10.0.1.2:8080", "10.0.2.2:8080"}
    assert resolver.resolve("db.other", 5432) == "10.0.3.2:5432"
    assert resolver.resolve("db.other.svc.cluster.local", 5432) == "10.0.3.2:5432"
    with pytest.raises(LookupError, match="shop/ghost:80"):
        resolver.resolve("ghost", 80)
    table.write_text(json.dumps({"shop/cart:8080": []}))
    os.utime(table, ns=(1, 1))  # a new mtime even within the same clock tick
    with pytest.raises(LookupError, match="no ready endpoint"):
        resolver.resolve("cart", 8080)
    assert Resolver(None, "shop").resolve("cart", 8080) == "cart:8080"  # no table: cluster DNS


class Served:
    def __init__(self, settings: ServiceSettings, resolver: Resolver):
        self.name = settings.name
        self.server = make_server("127.0.0.1", 0, create_app(settings, resolver), threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    table = tmp_path / "services.json"
    leaf = Served(ServiceSettings(name="leaf", payload_bytes=300), Resolver(table, "t"))
    table.write_text(json.dumps({f"t/leaf:{leaf.port}": [f"127.0.0.1:{leaf.port}"]}))
    head = Served(
        ServiceSettings(name="head", payload_bytes=2000, downstreams=(Downstream("leaf", leaf.port, 2),)),
        Resolver(table, "t"),
    )
    table.write_text(
        json.dumps(
            {f"t/leaf:{leaf.port}": [f"127.0.0.1:{leaf.port}"], f"t/head:{head.port}": [f"127.0.0.1:{head.port}"]}
        )
    )
    yield head, table
    head.stop()
    leaf.stop()


def test_a_request_walks_the_call_chain_over_real_http(chain: tuple[Served, Path]) -> None:
    head, _ = chain
    answer = requests.get(f"http://127.0.0.1:{head.port}/", timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    assert body["service"] == "head" and body["calls"] == 2
    assert 1900 <= len(answer.content) <= 2100
    probe = requests.get(f"http://127.0.0.1:{head.port}/netaware/probe", timeout=5).json()
    assert probe["rif"] == 0 and probe["latencyMs"] > 0
    metrics = requests.get(f"http://127.0.0.1:{head.port}/metrics", timeout=5).text
    assert 'netaware_workload_requests_total{code="200"} 1.0' in metrics


def test_a_dead_downstream_is_a_502_naming_it(tmp_path: Path) -> None:
    table = tmp_path / "services.json"
    table.write_text(json.dumps({"t/leaf:1": ["127.0.0.1:1"]}))  # nothing listens on port 1
    head = Served(ServiceSettings(name="head", downstreams=(Downstream("leaf", 1),)), Resolver(table, "t"))
    try:
        answer = requests.get(f"http://127.0.0.1:{head.port}/", timeout=15)
    finally:
        head.stop()
    assert answer.status_code == 502
    assert answer.json()["error"].startswith("leaf:")


def test_the_load_driver_counts_successes_and_errors(chain: tuple[Served, Path]) -> None:
    head, table = chain
    result = drive("head", head.port, Resolver(table, "t"), rate_per_s=100, count=30)
    summary = result.summary()
    assert summary["ok"] == 30 and summary["errors"] == 0
    assert summary["callsPerRequest"] == 2
    assert summary["p50Ms"] <= summary["p95Ms"] <= summary["p99Ms"]
    failing = drive("ghost", 80, Resolver(table, "t"), rate_per_s=100, count=5).summary()
    assert failing["errors"] == 5 and failing["ok"] == 0 and failing["errorRate"] == 1.0


def test_rendered_yaml_round_trips() -> None:
    documents = list(yaml.safe_load_all(rendered_yaml(graph_named("star"))))
    assert documents == render(graph_named("star"))


def test_faults_change_while_the_service_runs_and_bad_changes_are_refused_with_reasons() -> None:
    served = Served(ServiceSettings(name="leaf", work_ms=0.0), Resolver(None, "t"))
    base = f"http://127.0.0.1:{served.port}"
    try:
        assert requests.get(f"{base}/", timeout=5).status_code == 200
        assert requests.get(f"{base}/v1/faults", timeout=5).json() == {"workMs": 0.0, "failRatio": 0.0}
        changed = requests.put(f"{base}/v1/faults", json={"failRatio": 1.0}, timeout=5)
        assert changed.status_code == 200 and changed.json() == {"workMs": 0.0, "failRatio": 1.0}
        assert requests.get(f"{base}/", timeout=5).status_code == 503  # every request fails now
        refused = {
            "not an object": [1, 2],
            "unknown field": {"failRatio": 0.5, "latency": 3},
            "ratio above 1": {"failRatio": 1.5},
            "negative work": {"workMs": -1},
            "boolean": {"workMs": True},
            "string": {"workMs": "5"},
        }
        for case, body in refused.items():
            answer = requests.put(f"{base}/v1/faults", json=body, timeout=5)
            assert answer.status_code == 400, case
            assert answer.json()["error"], case
        not_json = requests.put(f"{base}/v1/faults", data="{oops", timeout=5)
        assert not_json.status_code == 400
        # Nothing refused changed anything.
        assert requests.get(f"{base}/v1/faults", timeout=5).json() == {"workMs": 0.0, "failRatio": 1.0}
        requests.put(f"{base}/v1/faults", json={"failRatio": 0, "workMs": 30}, timeout=5).raise_for_status()
        slowed = requests.get(f"{base}/", timeout=5)
        assert slowed.status_code == 200 and slowed.elapsed.total_seconds() >= 0.03
        # Fault changes are not traffic: the probe's latency estimate stays the requests' own.
        assert requests.get(f"{base}/netaware/probe", timeout=5).json()["rif"] == 0
    finally:
        served.stop()
