"""ClusterStore: the incrementally maintained placements always equal a fresh scan of the pods, whatever the
sequence of pod creations, bindings, relabels and deletions; workload membership honours the namespace and the
`netaware.io/appgroup` label; bad AppGroups are ignored with a reason instead of breaking the store; a pod brings
what the planner needs (its controller, node constraints, planned node, since when it is unschedulable).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netaware.kube.stores import PLANNED_NODE_ANNOTATION, ClusterStore, pod_info

GROUP = {
    "metadata": {"name": "shop", "namespace": "default"},
    "spec": {
        "workloads": [
            {"name": "fe", "selector": {"matchLabels": {"app": "fe"}}, "dependencies": [{"workload": "db"}]},
            {"name": "db", "selector": {"matchLabels": {"app": "db"}}},
        ]
    },
}


def pod(name: str, app: str, node: str | None, namespace: str = "default", deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {"app": app}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"nodeName": node} if node else {}, "status": {}}


operations = st.lists(
    st.tuples(
        st.sampled_from(["upsert", "delete"]),
        st.sampled_from(["p1", "p2", "p3", "p4"]),
        st.sampled_from(["fe", "db", "other"]),
        st.sampled_from([None, "n1", "n2"]),
        st.sampled_from(["default", "elsewhere"]),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_incremental_placements_equal_a_fresh_scan(ops: list[tuple[str, str, str, str | None, str, bool]]) -> None:
    store = ClusterStore()
    store.replace("appgroups", [GROUP])
    store.replace("pods", [])
    group = store.appgroups()[0]
    store.placements(group)  # prime the cache so every change goes through the incremental path
    for op, name, app, node, namespace, deleting in ops:
        obj = pod(name, app, node, namespace, deleting)
        if op == "upsert":
            store.upsert("pods", obj)
        else:
            store.delete("pods", obj)
    incremental = {w: sorted(nodes) for w, nodes in store.placements(group).items()}
    fresh = ClusterStore()
    fresh.replace("appgroups", [GROUP])
    fresh.replace("pods", [pod_obj for pod_obj in _as_objects(store)])
    assert incremental == {w: sorted(nodes) for w, nodes in fresh.placements(group).items()}


def _as_objects(store: ClusterStore) -> list[dict[str, Any]]:
    return [pod(p.name, p.labels["app"], p.node_name, p.namespace, p.deleting) for p in store.pods()]


def test_membership_honours_namespace_and_appgroup_label() -> None:
    store = ClusterStore()
    store.replace("appgroups", [GROUP])
    store.replace(
        "pods",
        [
            pod("a", "fe", "n1"),
            pod("b", "fe", "n2", namespace="elsewhere"),
            {
                **pod("c", "fe", "n3"),
                "metadata": {
                    "name": "c",
                    "namespace": "default",
                    "labels": {"app": "fe", "netaware.io/appgroup": "other"},
                },
            },
        ],
    )
    assert store.placements(store.appgroups()[0]) == {"fe": ["n1"], "db": []}


def test_a_bad_appgroup_is_ignored_with_a_reason() -> None:
    store = ClusterStore()
    bad = {
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"workloads": [{"name": "x", "dependencies": [{"workload": "ghost"}]}]},
    }
    store.replace("appgroups", [GROUP, bad])
    assert [g.name for g in store.appgroups()] == ["shop"]
    assert "unknown workload" in store.conversion_errors["default/bad"]


def test_a_pod_carries_what_the_plan_needs_owner_constraints_planned_node_and_unschedulable_time() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    info = pod_info({
        "metadata": {
            "name": "web-1", "annotations": {PLANNED_NODE_ANNOTATION: "n2"},
            "ownerReferences": [{"kind": "Deployment", "name": "x"},
                                {"kind": "ReplicaSet", "name": "web-5d4", "controller": True}],
        },
        "spec": {"nodeSelector": {"disk": "ssd"}, "affinity": affinity, "containers": []},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "lastTransitionTime": "2026-01-01T00:00:10Z"}]},
    })  # fmt: skip
    assert info.owner == "ReplicaSet/web-5d4"  # the controller, not any owner
    assert info.node_constraints == {"nodeSelector": {"disk": "ssd"}, "affinity": affinity}
    assert info.planned_node == "n2"
    assert info.unschedulable_since_s == 1767225610.0
    bare = pod_info({"metadata": {"name": "b"}, "spec": {}, "status": {"conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}})  # fmt: skip
    assert (bare.owner, bare.node_constraints, bare.planned_node, bare.unschedulable_since_s) == (None, {}, None, None)
