"""What the lab's node agent writes and reads, offline.

Checks: a lab pod's command line needs an explicit command; env values and the supported fieldRefs resolve and an
unsupported one is refused with its name; readiness probes resolve named ports; the pod status is Running and Ready
with the pod's IP (or Pending with the reason when it cannot run); the Service table maps service ports to ready
endpoints by port name, as kube-proxy does; the relay's address plan maps node and pod addresses to their node.
"""

from __future__ import annotations

from typing import Any

import pytest

from netaware.lab.agent import service_table
from netaware.lab.emulating import AddressPlan
from netaware.lab.kubeobjects import (
    NodeCapacity,
    PodSpecError,
    ReadinessCheck,
    command_line,
    environment,
    node_manifest,
    node_status,
    pod_status,
    readiness_check,
)

POD: dict[str, Any] = {
    "metadata": {"name": "cart-1", "namespace": "shop"},
    "spec": {"nodeName": "node-a1", "containers": [{"name": "service", "image": "x"}]},
}


def test_command_line_needs_a_command() -> None:
    assert command_line({"name": "c", "command": ["netaware-workload"], "args": ["serve", "--port=80"]}) == [
        "netaware-workload", "serve", "--port=80",
    ]  # fmt: skip
    with pytest.raises(PodSpecError, match="command"):
        command_line({"name": "c", "args": ["serve"]})


def test_environment_resolves_values_and_field_refs() -> None:
    container = {
        "env": [
            {"name": "PLAIN", "value": 3},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    }
    assert environment(container, POD, pod_ip="10.1.2.3", node="node-a1") == {
        "PLAIN": "3", "POD_NAME": "cart-1", "NODE": "node-a1", "IP": "10.1.2.3",
    }  # fmt: skip
    with pytest.raises(PodSpecError, match="SECRET"):
        environment({"env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}, POD,
                    pod_ip="", node="")  # fmt: skip


def test_readiness_probes_resolve_named_ports() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}], "readinessProbe": {"httpGet": {"port": "http"}}}
    assert readiness_check(container) == ReadinessCheck(8080, "/")
    assert readiness_check({"readinessProbe": {"tcpSocket": {"port": 5432}}}) == ReadinessCheck(5432, None)
    assert readiness_check({}) is None
    with pytest.raises(PodSpecError, match="grpc"):
        readiness_check({"readinessProbe": {"httpGet": {"port": "grpc"}}})


def test_pod_status_running_ready_or_pending_with_reason() -> None:
    status = pod_status(POD, pod_ip="10.240.1.2", host_ip="10.240.0.1", started_s=0, ready=True, restarts={}, now_s=1)
    assert status["phase"] == "Running" and status["podIP"] == "10.240.1.2" and status["hostIP"] == "10.240.0.1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["containerStatuses"][0]["ready"] is True
    failed = pod_status(POD, pod_ip="10.240.1.2", host_ip="10.240.0.1", started_s=0, ready=False, restarts={},
                        now_s=1, failure="no command")  # fmt: skip
    assert failed["phase"] == "Pending"
    assert failed["containerStatuses"][0]["state"]["waiting"]["message"] == "no command"


def test_node_objects_carry_zone_labels_and_capacity() -> None:
    node = node_manifest(name="node-a1", zone="zone-a", region="r1", lab="nalab")
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-a"
    assert node["metadata"]["labels"]["netaware.io/lab"] == "nalab"
    status = node_status(address="10.240.0.1", name="node-a1", capacity=NodeCapacity(cpu="4"), now_s=0)
    assert status["allocatable"]["cpu"] == "4"
    assert {"type": "InternalIP", "address": "10.240.0.1"} in status["addresses"]


def test_service_table_maps_ports_to_ready_endpoints() -> None:
    services = [
        {"metadata": {"namespace": "shop", "name": "cart"},
         "spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}},
    ]  # fmt: skip
    slices = [
        {
            "metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": "cart"}},
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}],
            "endpoints": [
                {"addresses": ["10.240.1.2"], "conditions": {"ready": True}},
                {"addresses": ["10.240.2.2"], "conditions": {"ready": False}},
                {"addresses": ["10.240.3.2"]},
            ],
        },
        {"metadata": {"namespace": "other", "labels": {"kubernetes.io/service-name": "cart"}},
         "ports": [{"name": "http", "port": 1}], "endpoints": [{"addresses": ["10.9.9.9"]}]},
    ]  # fmt: skip
    assert service_table(services, slices) == {
        "shop/cart:80": ["10.240.1.2:8080", "10.240.3.2:8080"],
        "shop/cart:9090": ["10.240.1.2:9100", "10.240.3.2:9100"],
    }


def test_address_plan_maps_node_and_pod_addresses_to_their_node() -> None:
    plan = AddressPlan(240)

    def packet(destination: str) -> bytes:
        return bytes([0x45]) + bytes(15) + bytes(int(part) for part in destination.split("."))

    assert plan.node_of(packet(plan.node_address(2))) == 2
    assert plan.node_of(packet(plan.pod_address(2, 7))) == 2
    assert plan.node_of(packet("10.241.0.1")) is None
    assert plan.node_of(b"\x60" + bytes(39)) is None  # IPv6
    with pytest.raises(ValueError):
        plan.pod_address(0, 1)  # .1 is the node's bridge
