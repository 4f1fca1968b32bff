"""The extender's HTTP API with an in-memory ClusterStore (Flask's test client; the real scheduler is in the
cluster tier).

Checks: exact wire format (capitalised keys, bare list of {"Host","Score"}, 0..10); node-cache mode (NodeNames)
and full-NodeList mode; hard-limit failures in FailedAndUnresolvableNodes with a reason; a pod of no AppGroup
passes untouched with equal scores; bad input (malformed JSON, missing Pod, bad node lists, huge bodies) gets a
4xx with a reason; fuzzing with random and malformed payloads never yields a 5xx; readiness follows the caches.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netaware.core.appgroup import CostWeights
from netaware.core.telemetry import TelemetrySnapshot, ZoneModel
from netaware.core.topology import LinkMetrics, Topology
from netaware.extender.app import create_app
from netaware.kube.converters import compact_networktopology_resources, networktopology_resources
from netaware.kube.stores import ClusterStore

NODES = {"a1": "zone-a", "a2": "zone-a", "b1": "zone-b", "c1": "zone-c"}


def node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": NODES[name]}}}


def pod(name: str, labels: dict[str, str], node_name: str | None = None, namespace: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels},
        "spec": {"schedulerName": "netaware-scheduler", **({"nodeName": node_name} if node_name else {})},
        "status": {"phase": "Running" if node_name else "Pending"},
    }


def make_store(*, with_topology: bool = True, form: str = "full") -> ClusterStore:
    """The store of a 4-node, 3-zone cluster; in the compact form, the links to and from b1 (where cart runs) and
    one link of each other zone pair are measured, and the rest come from the reverse or the zone model: the same
    figures, so every test holds for both forms."""
    store = ClusterStore(topology_ttl_s=600)
    store.replace("nodes", [node(n) for n in NODES])
    links = {}
    now = time.time()
    for a, za in NODES.items():
        for b, zb in NODES.items():
            if a != b:
                rtt = 1.0 if za == zb else 30.0
                links[(a, b)] = LinkMetrics(rtt_ms=rtt, bandwidth_mbps=1000 if za == zb else 100, measured_at_s=now)
    resources = networktopology_resources(Topology.from_links(links)) if with_topology else []
    if with_topology and form == "compact":
        measured = {pair: m for pair, m in links.items() if "b1" in pair or pair in {("a1", "a2"), ("a1", "c1")}}
        snapshot = TelemetrySnapshot(now_s=now, measured=measured, unanswered=frozenset(), silent=frozenset())
        model = ZoneModel.fit(snapshot, NODES, NODES)
        resources = compact_networktopology_resources(snapshot, model, NODES, zones=NODES)
    store.replace("networktopologies", resources)
    store.replace(
        "appgroups",
        [
            {
                "metadata": {"name": "shop", "namespace": "default"},
                "spec": {
                    "workloads": [
                        {
                            "name": "frontend",
                            "selector": {"matchLabels": {"app": "frontend"}},
                            "dependencies": [{"workload": "cart", "maxLatencyMs": 10}],
                        },
                        {"name": "cart", "selector": {"matchLabels": {"app": "cart"}}},
                        {
                            "name": "web",
                            "selector": {"matchLabels": {"app": "web"}},
                            "dependencies": [{"workload": "cart"}],
                        },
                    ]
                },
            }
        ],
    )
    store.replace("pods", [pod("cart-0", {"app": "cart"}, "b1")])
    return store


@pytest.fixture(params=["full", "compact"])
def http(request: pytest.FixtureRequest) -> FlaskClient:
    app = create_app(
        store=make_store(form=request.param), default_weights=CostWeights(), default_strategy="seed",
        max_body_bytes=1024 * 1024,
    )  # fmt: skip
    return app.test_client()


def args(pod_obj: Any, names: list[str] | None = None, nodes: list[str] | None = None) -> dict[str, Any]:
    return {
        "Pod": pod_obj,
        "NodeNames": names,
        "Nodes": None if nodes is None else {"items": [node(n) for n in nodes]},
    }


def test_filter_in_node_cache_mode_fails_far_nodes_with_a_reason(http: FlaskClient) -> None:
    response = http.post("/filter", json=args(pod("fe", {"app": "frontend"}), names=list(NODES)))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"NodeNames", "Nodes", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert body["NodeNames"] == ["b1"]  # only the co-located node is within maxLatencyMs 10 (30 ms elsewhere)
    assert body["Nodes"] is None and body["Error"] == ""
    assert set(body["FailedAndUnresolvableNodes"]) == {"a1", "a2", "c1"}
    assert "RTT 30.0 ms > maxLatencyMs 10" in body["FailedAndUnresolvableNodes"]["a1"]


def test_filter_with_a_full_node_list_returns_node_objects(http: FlaskClient) -> None:
    response = http.post("/filter", json=args(pod("fe", {"app": "frontend"}), nodes=list(NODES)))
    body = response.get_json()
    assert body["NodeNames"] is None
    assert [n["metadata"]["name"] for n in body["Nodes"]["items"]] == ["b1"]


def test_prioritize_answers_a_bare_list_with_scores_0_to_10(http: FlaskClient) -> None:
    response = http.post("/prioritize", json=args(pod("cart-1", {"app": "cart"}), names=list(NODES)))
    body = response.get_json()
    assert isinstance(body, list)
    assert [set(item) for item in body] == [{"Host", "Score"}] * len(NODES)
    assert all(0 <= item["Score"] <= 10 for item in body)
    # cart-1 has no dependencies and no placed dependants: the best-connected nodes win (a1, a2: 1 ms to each
    # other, 30 ms to the rest; b1 and c1 are 30 ms from everything)
    assert {item["Host"]: item["Score"] for item in body} == {"a1": 10, "a2": 10, "b1": 0, "c1": 0}
    body = http.post("/prioritize", json=args(pod("web-0", {"app": "web"}), names=list(NODES))).get_json()
    scores = {item["Host"]: item["Score"] for item in body}
    assert scores == {"b1": 10, "a1": 0, "a2": 0, "c1": 0}


def test_a_pod_of_no_appgroup_passes_with_equal_scores(http: FlaskClient) -> None:
    other = pod("x", {"app": "unrelated"})
    body = http.post("/filter", json=args(other, names=list(NODES))).get_json()
    assert body["NodeNames"] == list(NODES) and body["FailedAndUnresolvableNodes"] == {}
    scores = http.post("/prioritize", json=args(other, names=list(NODES))).get_json()
    assert {s["Score"] for s in scores} == {0}


def test_missing_topology_is_never_preferred() -> None:
    app = create_app(
        store=make_store(with_topology=False),
        default_weights=CostWeights(),
        default_strategy="seed",
        max_body_bytes=10**6,
    )
    client = app.test_client()
    frontend = pod("fe", {"app": "frontend"})
    body = client.post("/filter", json=args(frontend, names=list(NODES))).get_json()
    assert body["NodeNames"] == ["b1"]  # no measurement cannot prove maxLatencyMs: only co-location passes
    assert "no RTT measurement" in body["FailedAndUnresolvableNodes"]["a1"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"{not json", "request body must be JSON", id="malformed JSON"),
        pytest.param(json.dumps([1, 2]).encode(), "must be a JSON object", id="JSON but not an object"),
        pytest.param(json.dumps({"NodeNames": ["a1"]}).encode(), "Pod must be a Pod object", id="missing Pod"),
        pytest.param(
            json.dumps({"Pod": {"metadata": {}}, "NodeNames": ["a1"]}).encode(), "metadata.name", id="Pod without name"
        ),
        pytest.param(json.dumps({"Pod": {"metadata": {"name": "p"}}}).encode(), "needs NodeNames", id="no nodes"),
        pytest.param(
            json.dumps({"Pod": {"metadata": {"name": "p"}}, "NodeNames": [1, 2]}).encode(),
            "list of node names",
            id="bad names",
        ),
        pytest.param(
            json.dumps({"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": [{}]}}).encode(),
            "needs metadata.name",
            id="node without a name",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_bad_requests_get_400_with_a_reason(http: FlaskClient, verb: str, payload: bytes, reason: str) -> None:
    response = http.post(f"/{verb}", data=payload, content_type="application/json")
    assert response.status_code == 400
    assert reason in response.get_json()["Error"]


def test_a_huge_body_is_refused_with_413(http: FlaskClient) -> None:
    response = http.post("/filter", data=b"[" + b"1," * 600_000 + b"1]", content_type="application/json")
    assert response.status_code == 413
    assert "Error" in response.get_json()


def test_unknown_nodes_are_scored_pessimistically_not_crashed(http: FlaskClient) -> None:
    body = http.post("/prioritize", json=args(pod("web-0", {"app": "web"}), names=["b1", "ghost"])).get_json()
    assert body == [{"Host": "b1", "Score": 10}, {"Host": "ghost", "Score": 0}]


def test_readiness_follows_the_caches() -> None:
    store = ClusterStore()
    client = create_app(
        store=store, default_weights=CostWeights(), default_strategy="seed", max_body_bytes=10**6
    ).test_client()
    assert client.get("/readyz").status_code == 503
    for kind in ("nodes", "pods", "appgroups", "networktopologies"):
        store.replace(kind, [])
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'netaware_extender_cache_synced{kind="pods"} 1.0' in metrics


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
pod_like = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {"name": st.text(min_size=0, max_size=5) | json_values},
            optional={
                "labels": st.dictionaries(st.sampled_from(["app", "x"]), st.sampled_from(["frontend", "cart", "y"]))
                | json_values,
                "namespace": st.sampled_from(["default", "other"]) | json_values,
            },
        )
    },
    optional={"spec": json_values, "status": json_values},
)
extender_args = st.fixed_dictionaries(
    {},
    optional={
        "Pod": pod_like | json_values,
        "NodeNames": st.lists(st.sampled_from([*NODES, "ghost", ""]), max_size=6) | json_values,
        "Nodes": st.fixed_dictionaries(
            {"items": st.lists(st.just({"metadata": {"name": "a1"}}) | json_values, max_size=3)}
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=extender_args | json_values, verb=st.sampled_from(["filter", "prioritize"]))
def test_fuzzed_requests_never_get_a_5xx(http: FlaskClient, body: Any, verb: str) -> None:
    response = http.post(f"/{verb}", json=body)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    answer = response.get_json()
    if response.status_code == 400:
        assert answer["Error"]
    elif verb == "prioritize":
        assert all(0 <= item["Score"] <= 10 for item in answer)
    else:
        assert answer["Error"] == ""


def with_cpu(obj: dict[str, Any], cpu: str, *, allocatable: bool = False) -> dict[str, Any]:
    if allocatable:
        obj["status"] = {"allocatable": {"cpu": cpu}}
    else:
        obj["spec"]["containers"] = [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]
    return obj


@pytest.mark.parametrize(("strategy", "best"), [("seed", "a1"), ("lookahead", "a2"), ("plan", "a2")])
def test_the_lookahead_keeps_room_for_a_heavy_neighbour(strategy: str, best: str) -> None:
    """web (placed on a1) -> api -> db, api-db five times the traffic of web-api. a1 has room for one more pod:
    seed puts api there, next to web; the lookahead sees db would then have to leave a1 and puts api on a2 (1 ms
    from web), where db fits too; the plan of the whole group puts api and db together on a2 as well, and db's pod
    then follows the same plan."""
    store = make_store()
    store.replace("nodes", [with_cpu(node(n), "1000m" if n == "a1" else "1", allocatable=True) for n in NODES])
    store.replace(
        "appgroups",
        [
            {
                "metadata": {"name": "tiers", "namespace": "default"},
                "spec": {
                    "strategy": strategy,
                    "workloads": [
                        {"name": "web", "selector": {"matchLabels": {"app": "web"}},
                         "dependencies": [{"workload": "api", "weight": 1}]},
                        {"name": "api", "selector": {"matchLabels": {"app": "api"}},
                         "dependencies": [{"workload": "db", "weight": 5}]},
                        {"name": "db", "selector": {"matchLabels": {"app": "db"}}},
                    ],
                },
            }
        ],
    )  # fmt: skip
    api = with_cpu(pod("api-0", {"app": "api"}), "500m")
    store.replace(
        "pods",
        [with_cpu(pod("web-0", {"app": "web"}, "a1"), "500m"), api, with_cpu(pod("db-0", {"app": "db"}), "500m")],
    )
    http = create_app(store=store, default_weights=CostWeights(), default_strategy="seed", max_body_bytes=1 << 20)
    scores = http.test_client().post("/prioritize", json=args(api, names=list(NODES))).get_json()
    by_node = {item["Host"]: item["Score"] for item in scores}
    assert by_node[best] == 10, by_node
    if strategy in ("lookahead", "plan"):  # the best stands alone (seed's linear spread ties a1 and a2 at 10)
        assert list(by_node.values()).count(10) == 1 and by_node["a1"] < 10, by_node
    if strategy == "plan":  # db's pod follows the same plan, to api's planned node
        db = with_cpu(pod("db-0", {"app": "db"}), "500m")
        scores = http.test_client().post("/prioritize", json=args(db, names=list(NODES))).get_json()
        assert {item["Host"]: item["Score"] for item in scores}["a2"] == 10
