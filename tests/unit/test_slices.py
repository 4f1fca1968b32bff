"""A Service's endpoints from its EndpointSlices (core/slices.py) and the router's use of them (router/proxy.py).

Checks: conditions as the API defines their defaults (unset ready is ready, unset serving follows ready); the
Service port is matched to the slice port by name, so slices mapping it to different target ports each give their
own; FQDN slices and slices without the port give nothing; IPv6 addresses are bracketed; an address in two slices is
kept once; routing falls back to serving-terminating endpoints only when none is ready; a Service port is found by
number or name, with an error listing the ports otherwise; NAMESPACE/NAME:PORT parses or says what it expected; a
router following a Service answers 503 naming it while it has no endpoint, and routes to what set_endpoints gave it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import uvloop

from netaware.core.balancing import make_balancer
from netaware.core.slices import ServiceReference, routable, service_port_name, slice_endpoints
from netaware.router.proxy import Router


def endpoint(address: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions, "nodeName": "n1"}


def endpoint_slice(*endpoints: dict[str, Any], port: int = 8080, name: str = "http", kind: str = "IPv4") -> dict:
    return {"metadata": {"name": f"s-{port}"}, "addressType": kind, "ports": [{"name": name, "port": port}],
            "endpoints": list(endpoints)}  # fmt: skip


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param({}, (True, True, False), id="no conditions: ready, serving, not terminating"),
        pytest.param({"ready": False}, (False, False, False), id="not ready: serving follows ready"),
        pytest.param(
            {"ready": False, "serving": True, "terminating": True},
            (False, True, True),
            id="terminating but still serving",
        ),
        pytest.param({"ready": True, "serving": True, "terminating": False}, (True, True, False), id="all explicit"),
    ],
)
def test_conditions_take_the_api_defaults(conditions: dict[str, bool], expected: tuple[bool, bool, bool]) -> None:
    (found,) = slice_endpoints([endpoint_slice(endpoint("10.0.0.1", **conditions))], "http")
    assert (found.ready, found.serving, found.terminating) == expected
    assert found.address == "10.0.0.1:8080" and found.endpoint["nodeName"] == "n1"


def test_the_service_port_is_matched_by_name_in_each_slice() -> None:
    slices = [
        endpoint_slice(endpoint("10.0.0.1"), port=8080),
        endpoint_slice(endpoint("10.0.0.2"), port=9090),  # the same Service port, another target port
        endpoint_slice(endpoint("10.0.0.3"), port=7070, name="metrics"),  # another Service port
        endpoint_slice(endpoint("example.org"), kind="FQDN"),
        endpoint_slice(endpoint("fd00::5"), port=8080, kind="IPv6"),
        endpoint_slice(endpoint("10.0.0.1"), port=8080),  # listed twice
    ]
    assert [e.address for e in slice_endpoints(slices, "http")] == ["10.0.0.1:8080", "10.0.0.2:9090",
                                                                      "[fd00::5]:8080"]  # fmt: skip
    assert [e.address for e in slice_endpoints(slices, "metrics")] == ["10.0.0.3:7070"]
    assert "10.0.0.3:7070" in [e.address for e in slice_endpoints(slices)]  # None: each slice's first port


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param(
            [{}, {"ready": False, "serving": True, "terminating": True}],
            ["10.0.0.0:8080"],
            id="ready ones only while there are any",
        ),
        pytest.param(
            [{"ready": False}, {"ready": False, "serving": True, "terminating": True}],
            ["10.0.0.1:8080"],
            id="none ready: the serving terminating ones",
        ),
        pytest.param(
            [{"ready": False}, {"ready": False, "serving": False, "terminating": True}],
            [],
            id="none ready or serving: nothing",
        ),
    ],
)
def test_routable_falls_back_to_serving_terminating_endpoints(
    conditions: list[dict[str, bool]], expected: list[str]
) -> None:
    slices = [endpoint_slice(*(endpoint(f"10.0.0.{i}", **c) for i, c in enumerate(conditions)))]
    assert routable(slice_endpoints(slices, "http")) == expected


def test_a_service_port_is_found_by_number_or_name() -> None:
    service = {"metadata": {"name": "back"}, "spec": {"ports": [{"name": "http", "port": 80}, {"port": 9090}]}}
    assert service_port_name(service, 80) == "http" and service_port_name(service, "http") == "http"
    assert service_port_name(service, 9090) == ""
    with pytest.raises(ValueError, match=r"Service back has no port 81 \(its ports: http=80, \(unnamed\)=9090\)"):
        service_port_name(service, 81)


def test_service_references_parse_or_say_what_they_expect() -> None:
    assert ServiceReference.parse("default/back:8080") == ServiceReference("default", "back", 8080)
    assert ServiceReference.parse("shop/cart:http").port == "http"
    for text in ("back:8080", "default/back", "default/Back:80", "default/back:"):
        with pytest.raises(ValueError, match="expected NAMESPACE/NAME:PORT"):
            ServiceReference.parse(text)


def test_a_following_router_without_endpoints_answers_503_naming_its_service() -> None:
    async def use() -> tuple[int, dict[str, Any], list[str], list[str]]:
        router = Router([], make_balancer("prequal", seed=1))
        router.source = "Service default/back:80"
        await router.start()
        try:
            empty = await router.send("GET", "/")
            terminating = endpoint("10.0.0.9", ready=False, serving=False, terminating=True)
            router.set_endpoints(slice_endpoints([endpoint_slice(endpoint("10.0.0.1"), terminating)], "http"))
        finally:
            await router.close()
        return empty.status, json.loads(empty.body), router.replicas, router.draining

    status, body, replicas, draining = uvloop.run(use())
    assert status == 503 and body == {"error": "no ready endpoints (Service default/back:80)", "draining": []}
    assert replicas == ["10.0.0.1:8080"] and draining == ["10.0.0.9:8080"]
