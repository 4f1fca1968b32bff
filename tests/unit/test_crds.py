"""CRDs and their examples, offline.

Checks: every CRD is structural enough to load (group, version, schema, status subresource, printer columns,
short names); every valid example passes its schema and converts to core types; every invalid example fails
on exactly the field and for the reason its annotations name (the cluster tier checks the apiserver agrees).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from netaware.core.appgroup import Rebalance
from netaware.core.planning import PlanningProblem, plan
from netaware.core.topology import DenseTopology
from netaware.kube.converters import (
    ConversionError,
    appgroup_from_resource,
    appgroup_status,
    networktopology_resources,
    topology_from_resources,
)
from netaware.kube.schemas import load_crd_schemas, validate_resource

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
VALID = sorted((CRDS / "examples" / "valid").glob("*.yaml"))
INVALID = sorted((CRDS / "examples" / "invalid").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    return load_crd_schemas(CRDS)


def test_three_crds_with_status_printer_columns_and_short_names() -> None:
    kinds = {}
    for path in CRDS.glob("*.yaml"):
        document = load(path)
        if document.get("kind") != "CustomResourceDefinition":
            continue
        spec = document["spec"]
        version = spec["versions"][0]
        assert spec["group"] == "netaware.io" and version["name"] == "v1alpha1"
        assert version["subresources"] == {"status": {}}
        assert len(version["additionalPrinterColumns"]) >= 4
        assert spec["names"]["shortNames"]
        kinds[spec["names"]["kind"]] = spec["scope"]
    assert kinds == {"NetworkTopology": "Cluster", "AppGroup": "Namespaced", "AviatorPolicy": "Namespaced"}


def test_there_are_valid_and_invalid_examples_of_every_kind() -> None:
    for examples in (VALID, INVALID):
        assert {load(p)["kind"] for p in examples} == {"NetworkTopology", "AppGroup", "AviatorPolicy"}


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_examples_pass_their_schema(path: Path, schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert validate_resource(load(path), schemas) == []


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_examples_fail_for_their_stated_reason(
    path: Path, schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    resource = load(path)
    annotations = resource["metadata"]["annotations"]
    violations = validate_resource(resource, schemas)
    assert [(v.field, v.reason) for v in violations] == [
        (annotations["netaware.io/expected-field"], annotations["netaware.io/expected-reason"])
    ], violations


def test_appgroup_example_converts_to_core() -> None:
    group = appgroup_from_resource(load(CRDS / "examples" / "valid" / "appgroup-shop.yaml"))
    assert group.workload_names == ("frontend", "cart")
    dependency = group.workload("frontend").dependencies[0]
    assert (dependency.workload, dependency.max_latency_ms, dependency.min_bandwidth_mbps) == ("cart", 50, 10)
    status = appgroup_status(group, {"cart": ["node-b"]})
    assert status["orderSummary"] == "frontend > cart"
    assert status["placedWorkloads"] == 1


def test_networktopology_round_trips_per_origin() -> None:
    resource = load(CRDS / "examples" / "valid" / "networktopology-node-a.yaml")
    topology = topology_from_resources([resource])
    assert topology.link("node-a", "node-c").loss_ratio == pytest.approx(0.01)  # type: ignore[union-attr]
    assert topology.link("node-a", "node-d").source == "estimated"  # type: ignore[union-attr]
    written = networktopology_resources(topology, zones={"node-a": "zone-a"})
    assert [r["metadata"]["name"] for r in written] == ["node-a"]
    again = topology_from_resources(written)
    assert again.links == topology.links


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda r: r["spec"].pop("workloads"), "spec.workloads", id="no workloads"),
        pytest.param(
            lambda r: r["spec"]["workloads"][0]["dependencies"][0].update(workload="ghost"),
            "unknown workload",
            id="dependency on an unknown workload",
        ),
        pytest.param(
            lambda r: r["spec"]["workloads"][0]["dependencies"][0].update(weight="heavy"),
            "spec.workloads[0].dependencies[0].weight: expected a number",
            id="weight not a number",
        ),
        pytest.param(
            lambda r: r["spec"].update(topologySortingAlgorithm="BubbleSort"),
            "unknown 'BubbleSort'",
            id="unknown algorithm",
        ),
    ],
)
def test_bad_appgroups_fail_conversion_with_the_field(mutate: Any, message: str) -> None:
    from netaware.kube.converters import ConversionError

    resource = load(CRDS / "examples" / "valid" / "appgroup-shop.yaml")
    mutate(resource)
    with pytest.raises(ConversionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        appgroup_from_resource(resource)


def test_dense_conversion_agrees_with_the_object_path_and_drops_stale_links() -> None:
    from netaware.kube.converters import dense_topology_from_resources, parse_timestamp

    resource = load(CRDS / "examples" / "valid" / "networktopology-node-a.yaml")
    dense, problems = dense_topology_from_resources([resource], nodes=["node-z"])
    expected = topology_from_resources([resource], nodes=["node-z"]).dense()
    assert problems == []
    assert dense.nodes == expected.nodes
    for ours, theirs in ((dense.rtt_ms, expected.rtt_ms), (dense.bandwidth_mbps, expected.bandwidth_mbps)):
        assert ((ours == theirs) | (np.isnan(ours) & np.isnan(theirs))).all()
    # 10:00 measurements are stale at 10:20 with a 15-minute TTL; the estimated link stays
    now = parse_timestamp("2026-11-24T10:20:00Z", "now")
    fresh, _ = dense_topology_from_resources([resource], now_s=now, ttl_s=900)
    a = fresh.index["node-a"]
    assert np.isnan(fresh.rtt_ms[a, fresh.index["node-b"]])
    assert fresh.rtt_ms[a, fresh.index["node-d"]] == 30.0


def test_malformed_links_are_reported_not_fatal() -> None:
    from netaware.kube.converters import dense_topology_from_resources

    resource = {
        "spec": {"origin": "a", "links": [{"destination": "b", "rttMs": "x"}, {"destination": "c", "rttMs": 2}]}
    }
    dense, problems = dense_topology_from_resources([resource])
    assert len(problems) == 1 and "spec.links[0]" in problems[0]
    assert dense.rtt_ms[dense.index["a"], dense.index["c"]] == 2


def test_one_origins_networktopology_at_1000_nodes_fits_etcd(schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Per-origin split: the largest object at 1,000 nodes (999 measured links, every field set) stays far
    under etcd's 1.5 MiB request limit, and is valid against the CRD schema."""
    import json
    import time

    from netaware.core.topology import LinkMetrics, Topology

    now = time.time()
    nodes = [f"node-{i:04d}.zone-{i % 10}.example.internal" for i in range(1000)]
    links = {
        (nodes[0], other): LinkMetrics(rtt_ms=123.456, bandwidth_mbps=9876.54, loss_ratio=0.01234, jitter_ms=1.234,
                                       samples=200, measured_at_s=now)
        for other in nodes[1:]
    }  # fmt: skip
    (resource,) = networktopology_resources(Topology.from_links(links, nodes=nodes), now_s=now, ttl_s=60)
    size = len(json.dumps(resource).encode())
    assert size < 1.5 * 1024 * 1024 / 4, f"{size} bytes"  # a 4x margin under etcd's limit
    assert validate_resource(resource, schemas) == []


def test_an_appgroup_status_with_its_plan_passes_the_crd_schema(schemas: dict[tuple[str, str], dict[str, Any]]) -> None:
    """What the controller writes (strategy, placed/expected pods, predicted ms, the plan and its largest edges) is
    what the CRD's status schema and printer columns name."""
    resource = load(CRDS / "examples" / "valid" / "appgroup-shop.yaml")
    group = appgroup_from_resource(resource)
    problem = PlanningProblem.from_appgroup(
        group, replicas={"frontend": 2, "cart": 1}, cpu_m={}, nodes=["node-a", "node-b"], free_cpu_m=[1000, 1000],
        topology=DenseTopology(
            nodes=("node-a", "node-b"), index={"node-a": 0, "node-b": 1},
            rtt_ms=np.array([[0.2, 5.0], [5.0, 0.2]], dtype=np.float32),
            bandwidth_mbps=np.full((2, 2), 1000.0, dtype=np.float32), loss_ratio=np.zeros((2, 2), dtype=np.float32),
        ),
    )  # fmt: skip
    planned = plan(problem)
    status = appgroup_status(group, {"cart": ["node-b"]}, strategy="plan", pods=3, predicted_ms=4.5, plan=planned)
    assert status["placedSummary"] == "1/3"
    assert status["plan"]["largestEdges"][0]["caller"] == "frontend"
    assert validate_resource({**resource, "status": status}, schemas) == []
    columns = {
        c["name"]: c["jsonPath"]
        for c in load(CRDS / "appgroup.yaml")["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    for path in (columns["Strategy"], columns["Pods"], columns["Network-ms"], columns["Planned-ms"]):
        value: Any = {"status": status}
        for part in path.strip(".").split("."):
            value = value[part]
        assert value is not None, path


def test_rebalance_converts_with_its_defaults_and_disabled_means_none() -> None:
    resource = load(CRDS / "examples" / "valid" / "appgroup-shop.yaml")
    on = appgroup_from_resource({**resource, "spec": {**resource["spec"], "rebalance": {"maxPods": 2}}})
    assert on.rebalance == Rebalance(min_improvement_percent=20.0, max_pods=2, period_s=60.0)
    off = appgroup_from_resource({**resource, "spec": {**resource["spec"], "rebalance": {"enabled": False}}})
    assert off.rebalance is None and appgroup_from_resource(resource).rebalance is None
    with pytest.raises(ConversionError, match="maxPods"):
        appgroup_from_resource({**resource, "spec": {**resource["spec"], "rebalance": {"maxPods": 0}}})
