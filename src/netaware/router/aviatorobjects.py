"""What the AviatorPolicy controller writes, built as plain objects (pure: no client, no clock), as
lab/kubeobjects.py builds the lab's: the selection settings a policy's spec asks for, the selector-less Service
`<target>-aviator` and its EndpointSlices holding the chosen endpoints (owned by the policy), and the policy's
status. router/controller.py reads the cluster, probes, and writes what these return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netaware.core.endpoints import EndpointProbe, SelectionPolicy, latency_percentiles
from netaware.core.quantities import duration_seconds
from netaware.core.slices import SERVICE_NAME_LABEL, SliceEndpoint
from netaware.kube.converters import GROUP, VERSION

PLURAL = "aviatorpolicies"
FINALIZER = "netaware.io/aviator-cleanup"
MANAGED_BY = "aviator.netaware.io"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
POLICY_LABEL = "netaware.io/aviator-policy"
SUFFIX = "-aviator"
DEFAULT_INTERVAL_S = 5.0


class PolicyError(ValueError):
    """The policy cannot be evaluated as written (shown in its status message)."""


def selection_policy(spec: dict[str, Any]) -> SelectionPolicy:
    """The core selection settings an AviatorPolicy spec asks for; PolicyError naming the field otherwise."""
    selection = spec.get("selection") or {}
    algorithm = selection.get("algorithm", "PrequalHCL")
    breaker = spec.get("circuitBreaker") or {}
    dampening = spec.get("dampening") or {}
    threshold_ms = selection.get("latencyThresholdMs")
    try:
        if threshold_ms is None and spec.get("latencyThreshold"):
            threshold_ms = duration_seconds(spec["latencyThreshold"]) * 1e3
        required = {"TopN": "topN", "Percentage": "percentage"}.get(algorithm)
        if required and required not in selection:
            raise PolicyError(f"spec.selection.{required} is required by algorithm {algorithm}")
        if algorithm == "Threshold" and threshold_ms is None:
            raise PolicyError("algorithm Threshold needs spec.selection.latencyThresholdMs or spec.latencyThreshold")
        return SelectionPolicy(
            algorithm=algorithm,
            top_n=int(selection.get("topN", 1)),
            percentage=int(selection.get("percentage", 50)),
            latency_threshold_ms=float(threshold_ms) if threshold_ms is not None else float("inf"),
            hot_quantile=float(spec.get("hotQuantile", 0.8)),
            breaker_error_ratio=float(breaker.get("errorRatio", 0.5)),
            breaker_min_requests=int(breaker.get("minRequests", 3)),
            breaker_open_s=duration_seconds(breaker.get("openDuration", "30s")),
            min_change_interval_s=duration_seconds(dampening.get("minChangeInterval", "0s")),
            hysteresis_ratio=float(dampening.get("hysteresisRatio", 0.0)),
            probe_pool_size=int(spec.get("probePoolSize", 16)),
            probes_per_evaluation=float(spec.get("probesPerQuery", 3)),
        )
    except PolicyError:
        raise
    except (TypeError, ValueError) as error:
        raise PolicyError(str(error)) from None


def owner_reference(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The policy as the controlling owner of what it makes (the garbage collector removes them with it)."""
    meta = policy["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AviatorPolicy", "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def shadow_service(
    policy: Mapping[str, Any], target_name: str, service_ports: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The selector-less Service `<target>-aviator` with the target's ports."""
    meta = policy["metadata"]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": target_name + SUFFIX, "namespace": meta["namespace"],
                     "labels": {POLICY_LABEL: meta["name"]}, "ownerReferences": [owner_reference(policy)]},
        "spec": {"ports": [{k: v for k, v in port.items() if k in ("name", "port", "protocol", "targetPort")}
                           for port in service_ports]},
    }  # fmt: skip


def shadow_slices(
    policy: Mapping[str, Any], target_name: str, endpoints: Mapping[str, SliceEndpoint], selected: Sequence[str]
) -> list[dict[str, Any]]:
    """The EndpointSlices of `<target>-aviator` holding the `selected` endpoints: one per (address type, ports)
    group, named after its first port so names stay stable; each endpoint keeps its node, zone and target."""
    meta = policy["metadata"]
    name = target_name + SUFFIX
    labels = {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY, POLICY_LABEL: meta["name"]}
    owners = [owner_reference(policy)]
    groups: dict[str, dict[str, Any]] = {}
    for address in selected:
        source = endpoints[address]
        slice_name = f"{name}-{source.address_type.lower()}-{source.ports[0]['port']}"
        group = groups.setdefault(slice_name, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": meta["namespace"], "ownerReferences": owners,
                         "labels": labels},
            "addressType": source.address_type, "endpoints": [], "ports": list(source.ports),
        })  # fmt: skip
        endpoint = {k: v for k, v in source.endpoint.items() if k in ("nodeName", "zone", "targetRef", "hostname")}
        endpoint["addresses"] = [address.rsplit(":", 1)[0].strip("[]")]
        endpoint["conditions"] = {"ready": True}
        group["endpoints"].append(endpoint)
    return list(groups.values())


def evaluated_status(
    *,
    target_name: str,
    selected: Sequence[str],
    total: int,
    probes: Sequence[EndpointProbe],
    pooled: Sequence[EndpointProbe],
) -> dict[str, Any]:
    """The status after an evaluation: active of total endpoints, the chosen ones' latency estimates (from the
    pool), and this round's failed probes if any."""
    p50, p99 = latency_percentiles(pooled, set(selected))
    failed = sum(not p.ok for p in probes)
    return {"activeEndpoints": len(selected), "totalEndpoints": total, "p50LatencyMs": round(p50, 3),
            "p99LatencyMs": round(p99, 3), "selectedEndpoints": list(selected), "service": target_name + SUFFIX,
            "message": f"{failed} of {len(probes)} probes failed" if failed else "ok"}  # fmt: skip
