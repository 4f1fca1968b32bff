"""Kubernetes API clients from a kubeconfig (or the in-cluster service account)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config


def api_client(kubeconfig: Path | None = None) -> client.ApiClient:
    """An ApiClient for `kubeconfig`, else the in-cluster service account, else ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def _nodes(api: client.ApiClient) -> list[dict[str, Any]]:
    from netaware.kube.watching import list_raw

    return list(list_raw(lambda **kw: client.CoreV1Api(api).list_node(**kw)).get("items") or [])


def node_names(api: client.ApiClient) -> list[str]:
    return [node["metadata"]["name"] for node in _nodes(api)]


def node_zones(api: client.ApiClient) -> dict[str, str]:
    """Every Node's name -> its `topology.kubernetes.io/zone` label, where it has one."""
    zones = {}
    for node in _nodes(api):
        zone = (node["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone")
        if zone:
            zones[node["metadata"]["name"]] = zone
    return zones


def node_addresses(api: client.ApiClient) -> dict[str, str]:
    """Every Node's name -> its InternalIP (the address probes go to); nodes without one are left out."""
    addresses = {}
    for node in _nodes(api):
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                addresses[node["metadata"]["name"]] = address["address"]
                break
    return addresses
