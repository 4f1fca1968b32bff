"""What the AviatorPolicy controller writes (router/aviatorobjects.py), built without a cluster.

Checks: the shadow Service is selector-less, owned by the policy, and keeps only the target ports' own fields; the
shadow slices hold exactly the selected endpoints, one slice per address type and port group with stable names,
each endpoint with its node, zone and target and nothing else, IPv6 addresses unbracketed, labelled so kube-proxy
routes the shadow Service to them; the status counts active of total, takes latency estimates from the pool, and
names this round's failed probes.
"""

from __future__ import annotations

from typing import Any

import pytest

from netaware.core.endpoints import EndpointProbe
from netaware.core.slices import slice_endpoints
from netaware.router.aviatorobjects import evaluated_status, owner_reference, shadow_service, shadow_slices

POLICY: dict[str, Any] = {"metadata": {"name": "web-fast", "namespace": "shop", "uid": "u-1"}}
SLICES = [
    {"metadata": {"name": "web-a"}, "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
     "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n1", "zone": "zone-a", "hints": {"x": 1}},
                   {"addresses": ["10.0.0.2"], "nodeName": "n2", "zone": "zone-b"}]},
    {"metadata": {"name": "web-b"}, "addressType": "IPv4", "ports": [{"name": "http", "port": 9090}],
     "endpoints": [{"addresses": ["10.0.0.3"], "nodeName": "n3"}]},
    {"metadata": {"name": "web-6"}, "addressType": "IPv6", "ports": [{"name": "http", "port": 8080}],
     "endpoints": [{"addresses": ["fd00::4"], "nodeName": "n4"}]},
]  # fmt: skip
ENDPOINTS = {e.address: e for e in slice_endpoints(SLICES)}


def test_the_shadow_service_is_selector_less_owned_and_keeps_the_port_fields() -> None:
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080, "appProtocol": "h"}]
    service = shadow_service(POLICY, "web", ports)
    assert service["metadata"]["name"] == "web-aviator" and service["metadata"]["namespace"] == "shop"
    assert "selector" not in service["spec"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert service["metadata"]["ownerReferences"] == [owner_reference(POLICY)]
    assert owner_reference(POLICY)["controller"] is True and owner_reference(POLICY)["kind"] == "AviatorPolicy"


def test_shadow_slices_hold_the_selected_endpoints_grouped_by_address_type_and_port() -> None:
    slices = shadow_slices(POLICY, "web", ENDPOINTS, ["10.0.0.1:8080", "10.0.0.3:9090", "[fd00::4]:8080"])
    by_name = {s["metadata"]["name"]: s for s in slices}
    assert sorted(by_name) == ["web-aviator-ipv4-8080", "web-aviator-ipv4-9090", "web-aviator-ipv6-8080"]
    first = by_name["web-aviator-ipv4-8080"]
    assert first["endpoints"] == [{"nodeName": "n1", "zone": "zone-a", "addresses": ["10.0.0.1"],
                                   "conditions": {"ready": True}}]  # fmt: skip
    assert by_name["web-aviator-ipv6-8080"]["endpoints"][0]["addresses"] == ["fd00::4"]
    assert first["metadata"]["labels"]["kubernetes.io/service-name"] == "web-aviator"
    assert first["metadata"]["labels"]["netaware.io/aviator-policy"] == "web-fast"
    assert first["ports"] == [{"name": "http", "port": 8080}]
    assert shadow_slices(POLICY, "web", ENDPOINTS, []) == []


@pytest.mark.parametrize(
    ("probes", "message"),
    [
        pytest.param([EndpointProbe("10.0.0.1:8080", ok=True)], "ok", id="every probe answered"),
        pytest.param(
            [EndpointProbe("10.0.0.1:8080", ok=True), EndpointProbe("10.0.0.2:8080", ok=False)],
            "1 of 2 probes failed",
            id="one failed",
        ),
    ],
)
def test_the_status_counts_and_takes_latency_from_the_pool(probes: list[EndpointProbe], message: str) -> None:
    pooled = [EndpointProbe("10.0.0.1:8080", ok=True, latency_ms=4.0), EndpointProbe("10.0.0.3:9090", ok=True,
                                                                                    latency_ms=8.0)]  # fmt: skip
    status = evaluated_status(target_name="web", selected=["10.0.0.1:8080", "10.0.0.3:9090"], total=4,
                              probes=probes, pooled=pooled)  # fmt: skip
    assert (status["activeEndpoints"], status["totalEndpoints"], status["service"]) == (2, 4, "web-aviator")
    assert status["p50LatencyMs"] == 6.0 and status["message"] == message
