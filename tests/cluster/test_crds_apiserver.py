"""The CRDs against a real kube-apiserver.

Checks: the three CRDs are established; every valid example is accepted; every invalid example is rejected by
the apiserver on the field and for the reason its annotations name (the same claim the offline tier checks
with jsonschema); `kubectl get` (server-side Table) shows the printer columns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes.client import ApiException

from netaware.kube.converters import GROUP, NAMESPACE, VERSION

from .conftest import Cluster, apply_namespaces, kubectl

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "crds" / "examples"
PLURALS = {"NetworkTopology": "networktopologies", "AppGroup": "appgroups", "AviatorPolicy": "aviatorpolicies"}
# How the apiserver words each JSON-schema failure.
APISERVER_PHRASES = {
    "minimum": "greater than or equal to",
    "maximum": "less than or equal to",
    "enum": "Unsupported value",
    "required": "Required value",
    "pattern": "should match",
    "type": "must be of type",
    "minItems": "should have at least",
}


def create(cluster: Cluster, resource: dict[str, Any]) -> dict[str, Any]:
    plural = PLURALS[resource["kind"]]
    namespace = resource["metadata"].get("namespace")
    if namespace:
        return cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, resource)  # type: ignore[no-any-return]
    return cluster.custom.create_cluster_custom_object(GROUP, VERSION, plural, resource)  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_examples_are_accepted(cluster: Cluster, path: Path) -> None:
    resource = yaml.safe_load(path.read_text())
    created = create(cluster, resource)
    assert created["spec"]["workloads" if resource["kind"] == "AppGroup" else next(iter(resource["spec"]))]


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_examples_are_rejected_with_their_reason(cluster: Cluster, path: Path) -> None:
    resource = yaml.safe_load(path.read_text())
    annotations = resource["metadata"]["annotations"]
    with pytest.raises(ApiException) as raised:
        create(cluster, resource)
    assert raised.value.status == 422
    message = json.loads(raised.value.body)["message"]
    assert annotations["netaware.io/expected-field"] in message, message
    assert APISERVER_PHRASES[annotations["netaware.io/expected-reason"]] in message, message


def test_kubectl_get_shows_printer_columns(cluster: Cluster) -> None:
    configuration = cluster.api.configuration
    response = requests.get(
        f"{configuration.host}/apis/{GROUP}/{VERSION}/networktopologies",
        headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
            "Authorization": configuration.get_api_key_with_prefix("BearerToken"),
        },
        verify=configuration.ssl_ca_cert,
        timeout=10,
    )
    response.raise_for_status()
    table = response.json()
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:3] == ["Name", "Origin", "Zone"]
    assert "Max-RTT-ms" in columns
    # the valid example (created above) shows its origin and zone
    assert any(row["cells"][1:3] == ["node-a", "zone-a"] for row in table["rows"])


def test_scheduler_extender_manifests_apply_with_kubectl(cluster: Cluster) -> None:
    apply_namespaces(cluster)
    result = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-k", str(REPO / "scheduler-extender"))
    assert result.returncode == 0, result.stderr
    for created in (
        "deployment.apps/netaware-scheduler",
        "service/netaware-extender",
        "configmap/netaware-scheduler-config",
    ):
        assert created in result.stdout
    config = kubectl(cluster, "-n", NAMESPACE, "get", "configmap", "netaware-scheduler-config", "-o", "json")
    data = json.loads(config.stdout)["data"]["kube-scheduler-config.yaml"]
    assert yaml.safe_load(data) == yaml.safe_load((REPO / "scheduler-extender/kube-scheduler-config.yaml").read_text())
    deployment = json.loads(
        kubectl(cluster, "-n", NAMESPACE, "get", "deploy", "netaware-scheduler", "-o", "json").stdout
    )
    containers = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert containers == ["kube-scheduler", "extender", "webhook"]


def test_kubectl_get_appgroups_shows_the_essentials_and_wide_adds_the_algorithm(cluster: Cluster) -> None:
    result = kubectl(cluster, "get", "ag", "-n", "default")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "STRATEGY", "WORKLOADS", "PODS", "NETWORK-MS"]
    assert any(row.split()[0] == "shop" for row in rows)
    wide = kubectl(cluster, "get", "ag", "-n", "default", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    header, *rows = wide.stdout.splitlines()
    assert header.split()[5:8] == ["PLANNED-MS", "ALGORITHM", "ORDER"], header
    assert any(row.split()[0] == "shop" and "KahnSort" in row.split() for row in rows)
