"""Kubernetes API clients from a kubeconfig (or the in-cluster service account)."""

from __future__ import annotations

from pathlib import Path

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


def node_addresses(api: client.ApiClient) -> dict[str, str]:
    """Every Node's name -> its InternalIP (the address probes go to); nodes without one are left out."""
    from netaware.kube.watching import list_raw

    listed = list_raw(lambda **kw: client.CoreV1Api(api).list_node(**kw))
    addresses = {}
    for node in listed.get("items") or []:
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                addresses[node["metadata"]["name"]] = address["address"]
                break
    return addresses
