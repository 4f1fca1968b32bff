"""The aggregator against the local control plane: it publishes what agents report as NetworkTopology resources
and recovers from them after a restart; the aggregator and probe-agent manifests apply.

Checks: a report posted to the aggregator shows up, within its publishing period, as the origin's NetworkTopology
with the measured link (and the reverse pair estimated); an unchanged topology is not written again; a new
aggregator process with no journal recovers the measured link from the resources; `kubectl apply -k aggregator/`
and `-k probe-agent/` succeed and their ServiceAccounts may do what the programs do, and no more.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from netaware.aggregator.app import create_app
from netaware.kube.converters import GROUP, VERSION

from .conftest import Cluster, kubectl, wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TOKEN = "cluster-token"
NODES = ["probe-a", "probe-b"]


def aggregator(cluster: Cluster) -> Any:
    return create_app(token=TOKEN, nodes=lambda: NODES, api=cluster.api, publish_every_s=0.5, ttl_s=600)


def published(cluster: Cluster, origin: str) -> dict[str, Any] | None:
    try:
        return cluster.custom.get_cluster_custom_object(GROUP, VERSION, "networktopologies", origin)  # type: ignore[no-any-return]
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_reports_are_published_and_recovered(cluster: Cluster) -> None:
    app = aggregator(cluster)
    publisher, stop = app.extensions["netaware-publisher"]
    try:
        peer = {"peer": "probe-b", "sent": 20, "received": 20, "rttMs": 7.5, "jitterMs": 0.2}
        report = {"node": "probe-a", "measuredAt": time.time(), "peers": [peer]}
        answer = app.test_client().post("/v1/reports", json=report, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202
        resource = wait_for(lambda: published(cluster, "probe-a"), timeout_s=15, what="NetworkTopology probe-a")
        link = resource["spec"]["links"][0]
        assert (link["destination"], link["rttMs"], link["source"]) == ("probe-b", 7.5, "measured")
        reverse = wait_for(lambda: published(cluster, "probe-b"), timeout_s=15, what="NetworkTopology probe-b")
        assert reverse["spec"]["links"][0]["source"] == "estimated"
        writes = publisher.writes
        time.sleep(1.5)  # three publishing periods with nothing new
        assert publisher.writes == writes
    finally:
        stop.set()
    restarted = aggregator(cluster)  # no journal: only the resources remember
    try:
        links = restarted.test_client().get("/v1/topology").get_json()["links"]
        recovered = next(k for k in links if (k["origin"], k["destination"]) == ("probe-a", "probe-b"))
        assert (recovered["source"], recovered["rttMs"]) == ("measured", 7.5)
    finally:
        restarted.extensions["netaware-publisher"][1].set()


@pytest.mark.parametrize(
    ("folder", "account", "allowed", "denied"),
    [
        ("aggregator", "netaware-aggregator",
         [("patch", "networktopologies.netaware.io"), ("patch", "networktopologies.netaware.io/status"),
          ("list", "nodes")],
         [("delete", "networktopologies.netaware.io"), ("list", "secrets")]),
        ("probe-agent", "netaware-probe", [("list", "nodes")], [("patch", "nodes"), ("list", "pods")]),
    ],
)  # fmt: skip
def test_manifests_apply_with_least_privilege(
    cluster: Cluster, folder: str, account: str, allowed: list[tuple[str, str]], denied: list[tuple[str, str]]
) -> None:
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-k", str(REPO / folder))
    assert result.returncode == 0, result.stderr
    who = f"system:serviceaccount:kube-system:{account}"
    for verb, resource in allowed:
        assert kubectl(cluster, "auth", "can-i", verb, resource, "--as", who).stdout.strip() == "yes", (verb, resource)
    for verb, resource in denied:
        assert kubectl(cluster, "auth", "can-i", verb, resource, "--as", who).stdout.strip() == "no", (verb, resource)
