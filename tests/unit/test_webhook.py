"""The gate's admission webhook, offline: which pods it gates (an AppGroup workload's, created for netaware-scheduler,
not bound, not gated yet), the AdmissionReview it answers (always allowed; a JSON patch only when it gates), and a
clear 400 for what is not an AdmissionReview. The cluster tier runs it against a real API server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from netaware.core.release import DEPENDENCY_ORDER_GATE
from netaware.extender.webhook import create_webhook_app
from netaware.kube.stores import ClusterStore

GROUP = {
    "metadata": {"name": "shop", "namespace": "apps"},
    "spec": {"workloads": [{"name": "web", "selector": {"matchLabels": {"app": "web"}}}]},
}


def review(**pod_spec: Any) -> dict[str, Any]:
    spec = {"schedulerName": "netaware-scheduler", "containers": [], **pod_spec}
    labels = {"app": "web", "netaware.io/appgroup": "shop"}
    pod = {"kind": "Pod", "metadata": {"generateName": "web-5d4-", "labels": labels}, "spec": spec}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "operation": "CREATE", "namespace": "apps", "object": pod}}  # fmt: skip


@pytest.fixture
def webhook() -> Any:
    store = ClusterStore()
    store.replace("appgroups", [GROUP])
    return create_webhook_app(store).test_client()


def answer(webhook: Any, body: Any) -> dict[str, Any]:
    response = webhook.post("/mutate", json=body)
    assert response.status_code == 200, response.get_json()
    reply: dict[str, Any] = response.get_json()["response"]
    assert reply["uid"] == "u1" and reply["allowed"] is True
    return reply


def test_a_pod_of_an_appgroup_workload_gets_the_gate_after_its_own(webhook: Any) -> None:
    reply = answer(webhook, review(schedulingGates=[{"name": "other.io/wait"}]))
    assert reply["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(reply["patch"])) == [
        {
            "op": "add",
            "path": "/spec/schedulingGates",
            "value": [{"name": "other.io/wait"}, {"name": DEPENDENCY_ORDER_GATE}],
        }
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"spec": {"schedulerName": "default-scheduler"}},
        {"spec": {"nodeName": "n1"}},
        {"spec": {"schedulingGates": [{"name": DEPENDENCY_ORDER_GATE}]}},
        {"namespace": "elsewhere"},  # the AppGroup is namespaced
        {"labels": {"app": "db", "netaware.io/appgroup": "shop"}},  # no such workload
        {"operation": "UPDATE"},
    ],
    ids=["other-scheduler", "bound", "gated", "other-namespace", "no-workload", "update"],
)
def test_everything_else_is_admitted_unchanged(webhook: Any, changes: dict[str, Any]) -> None:
    body = review(**changes.get("spec", {}))
    if "namespace" in changes:
        body["request"]["namespace"] = changes["namespace"]
    if "labels" in changes:
        body["request"]["object"]["metadata"]["labels"] = changes["labels"]
    if "operation" in changes:
        body["request"]["operation"] = changes["operation"]
    assert "patch" not in answer(webhook, body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "must be an AdmissionReview"),
        ({"request": {"object": {}}}, "request.uid is missing"),
        ({"request": {"uid": "u1", "operation": "CREATE", "object": {"kind": "Pod", "spec": [], "metadata": {}}}},
         "spec and .metadata must be objects"),
    ],
)  # fmt: skip
def test_what_is_not_an_admission_review_gets_a_reason(webhook: Any, body: Any, reason: str) -> None:
    response = webhook.post("/mutate", data=body if isinstance(body, str) else json.dumps(body))
    assert response.status_code == 400
    assert reason in response.get_json()["error"]


def test_it_is_ready_once_appgroups_are_listed_and_counts_its_answers(webhook: Any) -> None:
    assert webhook.get("/readyz").status_code == 200
    answer(webhook, review())
    assert 'netaware_webhook_reviews_total{outcome="gated"} 1.0' in webhook.get("/metrics").get_data(as_text=True)
    assert create_webhook_app(ClusterStore()).test_client().get("/readyz").status_code == 503
