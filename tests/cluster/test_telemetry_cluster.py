"""The aggregator against the local control plane: it publishes what agents report as NetworkTopology resources
and recovers from them after a restart; the aggregator and probe-agent manifests apply.

Checks: a report posted to the aggregator shows up, within its publishing period, as the origin's NetworkTopology
with the measured link, in the compact form (the reverse pair estimated by a reader of the resources); an unchanged
topology is not written again; a new aggregator process with no journal recovers the measured link from the
resources; the `netaware-aggregator` process with a kubeconfig takes its known nodes and their zones from the
cluster (a report about an unknown node is 422; an unmeasured pair between two zones is estimated from the zones'
measured mean); `kubectl apply -k aggregator/` and `-k probe-agent/` succeed and their ServiceAccounts may do what
the programs do, and no more.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes.client import ApiException

from netaware.aggregator.app import create_app
from netaware.kube.converters import GROUP, NAMESPACE, PROBE_NAMESPACE, VERSION, ZONES_RESOURCE, topology_from_resources
from netaware.router.testbed import gunicorn_listening, running, wait_until_answering

from .conftest import Cluster, apply_namespaces, kubectl, wait_for

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
        writers = {(entry["manager"], entry.get("subresource", "")) for entry in resource["metadata"]["managedFields"]}
        assert writers == {("netaware-aggregator", ""), ("netaware-aggregator", "status")}  # who wrote the figures
        reverse = wait_for(lambda: published(cluster, "probe-b"), timeout_s=15, what="NetworkTopology probe-b")
        # The compact form: probe-b measured nothing, so its object says only that its pairs are estimated; a
        # reader of the resources prices probe-b -> probe-a from the measured reverse, as the aggregator does.
        assert (reverse["spec"]["links"], reverse["spec"]["estimates"]) == ([], {})
        everything = cluster.custom.list_cluster_custom_object(GROUP, VERSION, "networktopologies")["items"]
        read = topology_from_resources([r for r in everything if r["metadata"]["name"] in [*NODES, ZONES_RESOURCE]])
        assert (read.links[("probe-b", "probe-a")].source, read.links[("probe-b", "probe-a")].rtt_ms) == (
            "estimated", 7.5,
        )  # fmt: skip
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
    ("folder", "namespace", "account", "allowed", "denied"),
    [
        ("aggregator", NAMESPACE, "netaware-aggregator",
         [("patch", "networktopologies.netaware.io"), ("patch", "networktopologies.netaware.io/status"),
          ("list", "nodes")],
         [("delete", "networktopologies.netaware.io"), ("list", "secrets")]),
        ("probe-agent", PROBE_NAMESPACE, "netaware-probe", [("list", "nodes")], [("patch", "nodes"), ("list", "pods")]),
    ],
)  # fmt: skip
def test_manifests_apply_with_least_privilege(
    cluster: Cluster,
    folder: str,
    namespace: str,
    account: str,
    allowed: list[tuple[str, str]],
    denied: list[tuple[str, str]],
) -> None:
    apply_namespaces(cluster)
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-k", str(REPO / folder))
    assert result.returncode == 0, result.stderr
    who = f"system:serviceaccount:{namespace}:{account}"
    for verb, resource in allowed:
        assert kubectl(cluster, "auth", "can-i", verb, resource, "--as", who).stdout.strip() == "yes", (verb, resource)
    for verb, resource in denied:
        assert kubectl(cluster, "auth", "can-i", verb, resource, "--as", who).stdout.strip() == "no", (verb, resource)


def test_the_aggregator_process_takes_nodes_and_zones_from_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with running(tmp_path / "logs") as processes:
        processes.start(
            "aggregator",
            [sys.executable, "-m", "netaware.aggregator", "--host", "127.0.0.1", "--port", "0", "--kubeconfig",
             cluster.status["kubeconfig"], "--token-file", str(token), "--journal", str(tmp_path / "journal.jsonl")],
        )  # fmt: skip
        url = f"http://{processes.logged('aggregator', gunicorn_listening)['address']}"  # the port the kernel picked
        wait_until_answering(f"{url}/healthz", processes, "aggregator")
        nodes = cluster.core.list_node().items
        names = sorted(n.metadata.name for n in nodes)
        assert sorted(requests.get(f"{url}/v1/topology", timeout=5).json()["nodes"]) == names
        by_zone: dict[str, list[str]] = {}
        for node in nodes:
            by_zone.setdefault(node.metadata.labels["topology.kubernetes.io/zone"], []).append(node.metadata.name)
        (a1, a2), (b1, b2) = (sorted(members)[:2] for _, members in sorted(by_zone.items())[:2])
        peer = {"peer": b1, "sent": 10, "received": 10, "rttMs": 30.0}
        answer = requests.post(
            f"{url}/v1/reports", json={"node": a1, "measuredAt": time.time(), "peers": [peer]},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5,
        )  # fmt: skip
        assert answer.status_code == 202, answer.text
        links = requests.get(f"{url}/v1/topology", timeout=5).json()["links"]
        unmeasured = next(k for k in links if (k["origin"], k["destination"]) == (a2, b2))
        assert (unmeasured["source"], unmeasured["rttMs"]) == ("estimated", 30.0)  # the two zones' measured mean
        unknown = requests.post(
            f"{url}/v1/reports", json={"node": "not-a-node", "measuredAt": 1, "peers": []},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5,
        )  # fmt: skip
        assert unknown.status_code == 422
