"""Chain, star and cross dependency graphs placed by the real netaware scheduler, checked against the cost function.

Three zones (two kwok nodes each; 1 ms inside a zone, 30-40 ms across). For each graph some workloads are pinned
to zones, the rest are created at once behind the dependency-order gate, and each placement is checked against
`core.scoring` evaluated on the cluster's own NetworkTopology with the placements that existed when the pod was
released: the node kube-scheduler chose must be one the cost function rates best (extender score 10). The human
reading of each case is asserted too (a chain follows its pinned end; a star's hub goes where most spokes are).
"""

from __future__ import annotations

from typing import Any

import pytest

from netaware.core.costs import build_link_costs
from netaware.core.scoring import score_candidates
from netaware.kube.converters import GROUP, VERSION, appgroup_from_resource, dense_topology_from_resources

from .conftest import (
    Cluster,
    apply_appgroup,
    create_pod,
    labels,
    pod_manifest,
    wait_bound,
    wait_extender_sees,
    workload,
    zone_of,
)

pytestmark = pytest.mark.cluster
GATE = [{"name": "netaware.io/dependency-order"}]


def best_nodes(cluster: Cluster, group_name: str, of_workload: str, placements: dict[str, list[str]]) -> set[str]:
    """Nodes the cost function rates best (extender score 10) for the next pod of `of_workload`."""
    resources = cluster.custom.list_cluster_custom_object(GROUP, VERSION, "networktopologies")["items"]
    topology, problems = dense_topology_from_resources(resources)
    assert problems == []
    group = appgroup_from_resource(
        cluster.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "appgroups", group_name)
    )
    table = score_candidates(
        link_costs=build_link_costs(topology),
        appgroup=group,
        workload=of_workload,
        placements=placements,
        candidates=list(topology.nodes),
    )
    return {node for node, score in zip(table.candidates, table.extender_score, strict=True) if score == 10}


def run_graph(
    cluster: Cluster, name: str, edges: dict[str, list[str]], pinned: dict[str, str], release_order: list[str]
) -> dict[str, str]:
    """Create the group, pin `pinned` (pod -> zone), create the rest gated; check each against the cost function."""
    # Callees first (ReverseKahn): the pinned callees are in place before their callers are scored.
    apply_appgroup(
        cluster,
        name,
        [workload(w, name, [{"workload": d} for d in ds]) for w, ds in edges.items()],
        sorting="ReverseKahn",
    )
    wait_extender_sees(cluster, name)
    nodes: dict[str, str] = {}
    for pod, zone in pinned.items():
        create_pod(
            cluster,
            pod_manifest(f"{name}-{pod}", labels(pod, name), node_selector={"topology.kubernetes.io/zone": zone}),
        )
        nodes[pod] = wait_bound(cluster, f"{name}-{pod}")
    wait_extender_sees(cluster, name, dict.fromkeys(pinned, 1))
    for pod in release_order:
        manifest = pod_manifest(f"{name}-{pod}", labels(pod, name))
        manifest["spec"]["schedulingGates"] = GATE
        create_pod(cluster, manifest)
    for pod in release_order:  # released callees first, so this is also the binding order
        placements = {w: [nodes[w]] for w in edges if w in nodes}
        expected = best_nodes(cluster, name, pod, placements)
        nodes[pod] = wait_bound(cluster, f"{name}-{pod}")
        assert nodes[pod] in expected, f"{pod} on {nodes[pod]}, the cost function prefers {sorted(expected)}"
    return {pod: zone_of(cluster, node) for pod, node in nodes.items()}


@pytest.fixture(scope="module", autouse=True)
def _topology(topology_applied: dict[str, str]) -> Any:
    return topology_applied


def test_chain_follows_its_pinned_end(cluster: Cluster) -> None:
    # A -> B -> C -> D with D pinned in zone-c: released D..A, each next to the one it calls.
    edges = {"a": ["b"], "b": ["c"], "c": ["d"], "d": []}
    zones = run_graph(cluster, "chain", edges, pinned={"d": "zone-c"}, release_order=["c", "b", "a"])
    assert set(zones.values()) == {"zone-c"}


def test_star_hub_goes_where_most_spokes_are(cluster: Cluster) -> None:
    edges = {"hub": ["s1", "s2", "s3", "s4"], "s1": [], "s2": [], "s3": [], "s4": []}
    pinned = {"s1": "zone-a", "s2": "zone-a", "s3": "zone-b", "s4": "zone-c"}
    zones = run_graph(cluster, "star", edges, pinned=pinned, release_order=["hub"])
    assert zones["hub"] == "zone-a"


def test_cross_callee_sits_with_one_of_its_two_callers(cluster: Cluster) -> None:
    # A -> B <- C with A in zone-a and C in zone-c: B pays link(A->B) + link(C->B). zone-a: 0 + 40 ms,
    # zone-b: 30 + 35 ms, zone-c: 40 + 0 ms, so B goes to zone-a or zone-c, never zone-b.
    edges = {"a": ["b"], "c": ["b"], "b": []}
    zones = run_graph(cluster, "cross", edges, pinned={"a": "zone-a", "c": "zone-c"}, release_order=["b"])
    assert zones["b"] in ("zone-a", "zone-c")
