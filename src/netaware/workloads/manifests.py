"""A service graph as Kubernetes manifests: per service a Deployment running the dummy service and a Service, plus
one AppGroup whose dependency weights are the graph's calls per request.

How pods get placed is a parameter: `netaware` (schedulerName netaware-scheduler and the dependency-order gate),
`default` (kube-scheduler), or pinned (a node per service, as nodeSelector on kubernetes.io/hostname, which the
experiments use for the random and optimal placements). The same renderer writes the YAML in workloads/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from netaware.core.nodeselection import HOSTNAME_LABEL, ZONE_LABEL
from netaware.workloads.graphs import ServiceGraph
from netaware.workloads.routing import KUBE_PROXY, MANIFEST_ROUTINGS, PREFER_CLOSE

IMAGE = "netaware/netaware:0.1.0"
PORT = 8080
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}
"""What a plain Prometheus scrapes by (monitoring/prometheus.yaml): each service serves /metrics on its own port."""
APPGROUP_LABEL = "netaware.io/appgroup"
GATE = "netaware.io/dependency-order"
NETAWARE_SCHEDULER = "netaware-scheduler"


ROUTING_ACCOUNT = "netaware-workload"
"""The service account of workloads that route their own calls: it may read Services and their EndpointSlices."""


def routing_access(namespace: str) -> list[dict[str, Any]]:
    """The ServiceAccount, Role and RoleBinding client-side routing needs in `namespace`."""
    metadata = {"name": ROUTING_ACCOUNT, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "netaware"}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata, "rules": [
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTING_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": ROUTING_ACCOUNT, "namespace": namespace}]},
    ]  # fmt: skip


def _container(graph: ServiceGraph, name: str, routing: str) -> dict[str, Any]:
    service = graph.service(name)
    args = [
        "serve",
        f"--name={name}",
        f"--port={PORT}",
        f"--work-ms={service.work_ms:g}",
        f"--payload-bytes={service.payload_bytes}",
    ]
    args += [f"--call={call.callee}:{PORT}*{call.calls}" for call in service.calls]
    if routing not in (KUBE_PROXY, PREFER_CLOSE) and service.calls:
        args.append(f"--routing={routing}")
    return {
        "name": "service",
        "image": IMAGE,
        "command": ["netaware-workload"],
        "args": args,
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": service.cpu, "memory": service.memory}},
    }


def render(
    graph: ServiceGraph,
    *,
    namespace: str = "default",
    scheduler: str = "netaware",
    pinned: Mapping[str, str] | None = None,
    routing: str = KUBE_PROXY,
) -> list[dict[str, Any]]:
    """Deployments, Services and the AppGroup. `scheduler`: `netaware` or `default`; `pinned`: service -> node
    (kube-scheduler then only checks that the pod fits there); `routing`: how callers pick a callee's replica,
    kube-proxy (at random, or `prefer-close`: the Services' PreferClose traffic distribution) or a balancing policy
    each caller runs itself (its pods then get a service account that may read EndpointSlices)."""
    if scheduler not in ("netaware", "default"):
        raise ValueError(f"scheduler must be netaware or default, got {scheduler!r}")
    if routing not in MANIFEST_ROUTINGS:
        raise ValueError(f"routing must be one of {', '.join(MANIFEST_ROUTINGS)}, got {routing!r}")
    client_side = routing not in (KUBE_PROXY, PREFER_CLOSE)
    documents: list[dict[str, Any]] = routing_access(namespace) if client_side else []
    for service in graph.services:
        labels = {"app": service.name, APPGROUP_LABEL: graph.name}
        pod_spec: dict[str, Any] = {
            "containers": [_container(graph, service.name, routing)], "terminationGracePeriodSeconds": 2
        }  # fmt: skip
        if client_side and service.calls:
            pod_spec["serviceAccountName"] = ROUTING_ACCOUNT
        if scheduler == "netaware":
            pod_spec["schedulerName"] = NETAWARE_SCHEDULER
            pod_spec["schedulingGates"] = [{"name": GATE}]
        selector = {}
        if pinned and service.name in pinned:
            selector[HOSTNAME_LABEL] = pinned[service.name]
        elif service.name in graph.zones:
            selector[ZONE_LABEL] = graph.zones[service.name]
        if selector:
            pod_spec["nodeSelector"] = selector
        if service.spread:
            pod_spec["topologySpreadConstraints"] = [
                {"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": dict(labels)}}
            ]  # fmt: skip
        documents.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": service.name, "namespace": namespace, "labels": labels},
                "spec": {
                    "replicas": service.replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels, "annotations": dict(SCRAPE_ANNOTATIONS)},
                        "spec": pod_spec,
                    },
                },
            }
        )
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service.name, "namespace": namespace, "labels": labels},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
                    **({"trafficDistribution": "PreferClose"} if routing == PREFER_CLOSE else {}),
                },
            }
        )
    documents.append(appgroup(graph, namespace=namespace))
    return documents


def appgroup(graph: ServiceGraph, *, namespace: str) -> dict[str, Any]:
    weights = graph.calls_per_request()
    return {
        "apiVersion": "netaware.io/v1alpha1",
        "kind": "AppGroup",
        "metadata": {"name": graph.name, "namespace": namespace},
        "spec": {
            "workloads": [
                {
                    "name": service.name,
                    "selector": {"matchLabels": {"app": service.name, APPGROUP_LABEL: graph.name}},
                    "dependencies": [
                        {"workload": call.callee, "weight": float(weights[(service.name, call.callee)])}
                        for call in service.calls
                    ],
                }
                for service in graph.services
            ]
        },
    }


def rendered_yaml(graph: ServiceGraph) -> str:
    """The committed workloads/<name>.yaml: the netaware variant in namespace `default`."""
    header = (
        f"# {graph.name}: {graph.description}\n"
        "# Generated by `netaware workload render --all` from src/netaware/workloads/graphs.py; do not edit.\n"
        "# Pods use schedulerName netaware-scheduler and the dependency-order gate; the AppGroup sets the order.\n"
    )
    return header + yaml.safe_dump_all(render(graph), sort_keys=False)
