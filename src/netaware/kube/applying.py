"""Apply manifests (any kind, CRDs included) with server-side apply, and wait for CRDs to be established."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, dynamic

FIELD_MANAGER = "netaware"


def load_manifests(paths: Iterable[Path]) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document and "kind" in document and document.get("kind") != "Kustomization":
                documents.append(document)
    return documents


_dynamic_clients: weakref.WeakKeyDictionary[client.ApiClient, dynamic.DynamicClient] = weakref.WeakKeyDictionary()


def _dynamic_client(api: client.ApiClient) -> dynamic.DynamicClient:
    """One DynamicClient per ApiClient: building one runs API discovery (several requests), which callers that
    apply again and again (the aggregator's publisher, the AviatorPolicy controller) should not repeat."""
    if api not in _dynamic_clients:
        _dynamic_clients[api] = dynamic.DynamicClient(api)
    return _dynamic_clients[api]


def apply_manifests(
    api: client.ApiClient, documents: Iterable[dict[str, Any]], *, field_manager: str = FIELD_MANAGER
) -> list[str]:
    """Server-side apply each document (idempotent) as `field_manager`; returns `kind/name` of each."""
    dyn = _dynamic_client(api)
    applied = []
    for document in documents:
        resource = dyn.resources.get(api_version=document["apiVersion"], kind=document["kind"])
        metadata = document["metadata"]
        resource.server_side_apply(
            body=document,
            name=metadata["name"],
            namespace=metadata.get("namespace") if resource.namespaced else None,
            field_manager=field_manager,
            force_conflicts=True,
        )
        applied.append(f"{document['kind']}/{metadata['name']}")
    return applied


def wait_for_crds_established(api: client.ApiClient, names: Iterable[str], *, timeout_s: float = 60) -> None:
    extensions = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending:
        for name in list(pending):
            crd = extensions.read_custom_resource_definition(name)
            conditions = (crd.status and crd.status.conditions) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRDs not established after {timeout_s:.0f}s: {', '.join(sorted(pending))}")
            time.sleep(0.2)


def write_networktopologies(
    api: client.ApiClient, resources: Iterable[dict[str, Any]], *, field_manager: str = FIELD_MANAGER
) -> list[str]:
    """Server-side apply NetworkTopology resources (spec), then patch their status: conflict-safe, idempotent. Both
    carry `field_manager`, so `kubectl get -o yaml --show-managed-fields` tells who wrote the figures."""
    from netaware.kube.converters import GROUP, VERSION

    documents = list(resources)
    written = apply_manifests(
        api, [{k: v for k, v in r.items() if k != "status"} for r in documents], field_manager=field_manager
    )
    custom = client.CustomObjectsApi(api)
    for resource in documents:
        if "status" in resource:
            custom.patch_cluster_custom_object_status(
                GROUP,
                VERSION,
                "networktopologies",
                resource["metadata"]["name"],
                {"status": resource["status"]},
                field_manager=field_manager,
            )
    return written
