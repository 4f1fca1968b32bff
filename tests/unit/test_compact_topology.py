"""The compact NetworkTopology form (kube/converters.compact_networktopology_resources): measured links, each node's
offset and the zone pairs, from which every reader estimates the other pairs.

Checks: a reader of the compact resources (the dense one the extender uses and the object one) finds every pair the
aggregator's own GET presents, with the same source and figures, silent and unanswered pairs left unknown; a mix
of full and compact origins (an upgrade) reads each as written; a zone model nobody refreshed stops estimating once
its zone pairs are older than the TTL; a malformed zone model is reported and only the measured links are kept;
the resources pass the CRD schema; at 10,000 nodes the largest object stays far below etcd's limit, where the full
form's row would pass it.
"""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from netaware.core.telemetry import TelemetrySnapshot, ZoneModel, estimated_topology
from netaware.core.topology import LinkMetrics, Topology
from netaware.kube.converters import (
    ZONES_RESOURCE,
    compact_networktopology_resources,
    dense_topology_from_resources,
    networktopology_resources,
    topology_from_resources,
)
from netaware.kube.schemas import load_crd_schemas, validate_resource
from tests.unit.test_crds import CRDS

ETCD_LIMIT_BYTES = int(1.5 * 1024 * 1024)


def network(
    count: int, zone_count: int, *, measured_share: float, seed: int
) -> tuple[TelemetrySnapshot, dict[str, str]]:
    """A snapshot of a base-plus-offsets network with `measured_share` of its pairs measured, one node silent and
    one pair unanswered."""
    rng = random.Random(seed)
    names = [f"node-{i:05d}" for i in range(count)]
    zones = {name: f"zone-{i % zone_count}" for i, name in enumerate(names)}
    base = {(a, b): 0.3 if a == b else 10.0 + 7 * abs(a - b) for a in range(zone_count) for b in range(zone_count)}
    access = {name: rng.uniform(0.0, 0.2) for name in names}
    now = 1_800_000_000.0
    measured = {}
    for origin in names:
        for destination in rng.sample(names, max(1, int(measured_share * count))):
            if destination == origin:
                continue
            cell = (int(zones[origin][5:]), int(zones[destination][5:]))
            rtt = base[cell] + access[origin] + access[destination] + rng.gauss(0, 0.01)
            measured[(origin, destination)] = LinkMetrics(
                bandwidth_mbps=rng.choice([None, None, 900.0 if cell[0] == cell[1] else 90.0]),
                rtt_ms=rtt, loss_ratio=rng.choice([0.0, 0.0, 0.01]), jitter_ms=0.1, samples=2,
                measured_at_s=now - rng.uniform(0, 50),
            )  # fmt: skip
    silent = names[3]
    measured = {pair: m for pair, m in measured.items() if pair[0] != silent}
    unanswered = (names[1], names[2])
    measured.pop(unanswered, None)
    snapshot = TelemetrySnapshot(now_s=now, measured=measured, unanswered=frozenset({unanswered}),
                                 silent=frozenset({silent}))  # fmt: skip
    return snapshot, zones


def aggregator_view(snapshot: TelemetrySnapshot, zones: dict[str, str]) -> tuple[list[dict[str, Any]], Topology]:
    names = sorted(zones)
    model = ZoneModel.fit(snapshot, names, zones)
    resources = compact_networktopology_resources(snapshot, model, names, zones=zones, ttl_s=60)
    return resources, estimated_topology(snapshot, names, zones=zones, model=model)


def test_readers_of_the_compact_form_find_what_the_aggregator_presents() -> None:
    snapshot, zones = network(60, 4, measured_share=0.1, seed=1)
    resources, expected = aggregator_view(snapshot, zones)
    names = sorted(zones)
    topology = topology_from_resources(resources, names)
    assert set(topology.links) == set(expected.links)
    for pair, metrics in expected.links.items():
        got = topology.links[pair]
        assert got.source == metrics.source, pair
        assert got.rtt_ms == pytest.approx(metrics.rtt_ms, abs=2e-3), pair
        assert got.loss_ratio == pytest.approx(metrics.loss_ratio, abs=1e-4), pair
        assert got.bandwidth_mbps == pytest.approx(metrics.bandwidth_mbps, abs=0.01), pair
    silent, (origin, destination) = next(iter(snapshot.silent)), next(iter(snapshot.unanswered))
    assert topology.link(origin, destination) is None and topology.link(names[0], silent) is None
    estimated = [m for m in topology.links.values() if m.source == "estimated"]
    assert len(estimated) > 10 * len(snapshot.measured) // 10, "most pairs come from the model"

    dense, problems = dense_topology_from_resources(resources, nodes=names)
    reference = expected.dense()
    assert problems == [] and dense.nodes == reference.nodes
    np.testing.assert_array_equal(np.isnan(dense.rtt_ms), np.isnan(reference.rtt_ms))
    np.testing.assert_allclose(dense.rtt_ms, reference.rtt_ms, atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(dense.loss_ratio, reference.loss_ratio, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(dense.bandwidth_mbps, reference.bandwidth_mbps, atol=0.01, equal_nan=True)
    assert np.count_nonzero(~np.isnan(dense.bandwidth_mbps)) > 0.9 * np.count_nonzero(~np.isnan(dense.rtt_ms))


def test_an_upgrade_mixes_the_forms_and_each_reads_as_written() -> None:
    snapshot, zones = network(30, 3, measured_share=0.2, seed=2)
    names = sorted(zones)
    resources, expected = aggregator_view(snapshot, zones)
    full = networktopology_resources(expected, zones=zones)
    old_writer = {r["metadata"]["name"]: r for r in full}
    # One origin still written by the old aggregator, with a figure the model would not give.
    legacy = json.loads(json.dumps(old_writer[names[5]]))
    for item in legacy["spec"]["links"]:
        item["rttMs"] = 99.0
    mixed = [legacy if r["metadata"]["name"] == names[5] else r for r in resources]
    topology = topology_from_resources(mixed, names)
    dense, _ = dense_topology_from_resources(mixed, nodes=names)
    for destination in names:
        if destination != names[5] and destination not in snapshot.silent:
            assert topology.links[(names[5], destination)].rtt_ms == 99.0
            assert dense.rtt_ms[dense.index[names[5]], dense.index[destination]] == 99.0
    assert topology.links[(names[0], names[6])].rtt_ms == pytest.approx(
        expected.links[(names[0], names[6])].rtt_ms, abs=2e-3
    )


def test_a_zone_model_nobody_refreshes_stops_estimating() -> None:
    snapshot, zones = network(30, 3, measured_share=0.2, seed=3)
    resources, _ = aggregator_view(snapshot, zones)
    names = sorted(zones)
    fresh, _ = dense_topology_from_resources(resources, nodes=names, now_s=snapshot.now_s, ttl_s=120)
    later = snapshot.now_s + 3600
    stale, _ = dense_topology_from_resources(resources, nodes=names, now_s=later, ttl_s=120)
    assert np.count_nonzero(~np.isnan(fresh.rtt_ms)) > 0.9 * (30 * 29 - 29 - 1)
    assert np.count_nonzero(~np.isnan(stale.rtt_ms)) == 0, "stale measurements and stale estimates: all unknown"
    assert topology_from_resources(resources, names, now_s=later, ttl_s=120).links == {}


def test_compact_resources_pass_the_crd_schema() -> None:
    snapshot, zones = network(20, 3, measured_share=0.3, seed=4)
    resources, _ = aggregator_view(snapshot, zones)
    schemas = load_crd_schemas(CRDS)
    assert {r["metadata"]["name"] for r in resources} == set(zones) | {ZONES_RESOURCE}
    for resource in resources:
        assert validate_resource(resource, schemas) == [], resource["metadata"]["name"]
    silent = next(r for r in resources if r["metadata"]["name"] in snapshot.silent)
    assert silent["spec"]["estimates"] == {"silent": True}


def test_at_10000_nodes_the_largest_compact_object_is_small() -> None:
    names = [f"ip-10-{i // 250}-{i % 250}.eu-west-1.compute.internal" for i in range(10_000)]
    zones = {name: f"eu-west-1{'abcdefghij'[i % 10]}" for i, name in enumerate(names)}
    now = 1_800_000_000.0
    rng = random.Random(5)
    measured = {
        (origin, destination): LinkMetrics(
            rtt_ms=rng.uniform(0.2, 40),
            loss_ratio=0.0,
            jitter_ms=0.1,
            samples=2,
            measured_at_s=now - rng.uniform(0, 50),
        )
        for origin in names[:200]
        for destination in rng.sample(names, 30)  # what 60 s of the default budget measures per node
        if destination != origin
    }
    snapshot = TelemetrySnapshot(now_s=now, measured=measured, unanswered=frozenset(), silent=frozenset())
    model = ZoneModel.fit(snapshot, names, zones)
    resources = compact_networktopology_resources(snapshot, model, names, zones=zones, ttl_s=60)
    sizes = sorted(len(json.dumps(r)) for r in resources)
    assert len(resources) == 10_001
    assert sizes[-1] < 20_000 < ETCD_LIMIT_BYTES, sizes[-5:]
    # The full form's row at 10,000 nodes: 9,999 links, which its schema refuses (and ~1.5 MB, etcd's limit).
    row = {(names[0], d): LinkMetrics(rtt_ms=12.345, jitter_ms=0.1, samples=0, source="estimated") for d in names[1:]}
    (full,) = networktopology_resources(Topology.from_links(row), zones=zones)
    assert len(json.dumps(full)) > 0.9 * ETCD_LIMIT_BYTES
    assert [v.reason for v in validate_resource(full, load_crd_schemas(CRDS))] == ["maxItems"]


def test_a_malformed_zone_model_is_reported_and_leaves_the_measured_links() -> None:
    snapshot, zones = network(12, 3, measured_share=0.3, seed=6)
    resources, _ = aggregator_view(snapshot, zones)
    broken = json.loads(json.dumps(resources))
    zones_object = next(r for r in broken if r["metadata"]["name"] == ZONES_RESOURCE)
    zones_object["spec"]["zonePairs"][0]["links"] = "many"
    zones_object["spec"]["zonePairs"][1]["zones"] = ["zone-0"]
    dense, problems = dense_topology_from_resources(broken, nodes=sorted(zones))
    assert len(problems) == 1 and "estimates ignored" in problems[0], problems
    assert np.count_nonzero(~np.isnan(dense.rtt_ms)) == len(snapshot.measured)  # measured links only
