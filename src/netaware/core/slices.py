"""A Service's endpoints as its EndpointSlices list them (pure: plain dicts in, addresses out).

Conditions follow the EndpointSlice API (discovery.k8s.io/v1): `ready` unset means ready; `serving` unset means
the same as `ready`; `terminating` unset means not terminating. A client routes to the ready endpoints; when there
are none it may fall back to endpoints that are terminating but still serving, as kube-proxy does
(ProxyTerminatingEndpoints): a rolling update that briefly has no ready endpoint must not turn into an outage.

An endpoint's port comes from its slice, not from the Service: one Service's slices may map the same Service port to
different target ports (a named targetPort resolved per pod). Slices are matched to the Service port by its name
(unnamed Service ports have the empty name in slices too). FQDN slices carry names, not addresses, and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label every EndpointSlice of a Service carries with the Service's name."""

SERVICE_REFERENCE = re.compile(r"^(?P<namespace>[a-z0-9-]+)/(?P<name>[a-z0-9-]+):(?P<port>[A-Za-z0-9-]+)$")


@dataclass(frozen=True)
class ServiceReference:
    namespace: str
    name: str
    port: int | str
    """The Service's port, by number or by name."""

    @classmethod
    def parse(cls, text: str) -> ServiceReference:
        """`NAMESPACE/NAME:PORT` (PORT a number or a port name); ValueError saying what was expected."""
        found = SERVICE_REFERENCE.match(text)
        if not found:
            raise ValueError(f"{text!r}: expected NAMESPACE/NAME:PORT, e.g. default/back:8080 or default/back:http")
        port = found["port"]
        return cls(found["namespace"], found["name"], int(port) if port.isdigit() else port)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}"


@dataclass(frozen=True)
class SliceEndpoint:
    address: str
    """host:port ("[v6]:port" for IPv6): where to send a request."""
    ready: bool
    serving: bool
    terminating: bool
    endpoint: Mapping[str, Any]
    """The endpoint as its slice holds it (nodeName, zone, targetRef)."""
    ports: tuple[Mapping[str, Any], ...]
    """Its slice's ports."""
    address_type: str = "IPv4"


def service_port_name(service: Mapping[str, Any], port: int | str) -> str:
    """The name of the Service's port given by number or by name; ValueError listing the Service's ports if none
    matches."""
    ports = (service.get("spec") or {}).get("ports") or []
    for entry in ports:
        if entry.get("port") == port or (entry.get("name") or "") == port:
            return str(entry.get("name") or "")
    listed = ", ".join(f"{entry.get('name') or '(unnamed)'}={entry.get('port')}" for entry in ports) or "none"
    name = (service.get("metadata") or {}).get("name", "?")
    raise ValueError(f"Service {name} has no port {port!r} (its ports: {listed})")


def slice_endpoints(slices: Iterable[Mapping[str, Any]], port_name: str | None = None) -> list[SliceEndpoint]:
    """Every address of every endpoint in `slices`, with its conditions, on the port named `port_name` (None: each
    slice's first port). A slice without that port contributes nothing; an address listed twice is kept once."""
    found: dict[str, SliceEndpoint] = {}
    for endpoint_slice in slices:
        address_type = endpoint_slice.get("addressType", "IPv4")
        ports = tuple(endpoint_slice.get("ports") or ())
        if address_type == "FQDN" or not ports:
            continue
        if port_name is None:
            port = ports[0].get("port")
        else:
            port = next((p.get("port") for p in ports if (p.get("name") or "") == port_name), None)
        if port is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving", ready) is not False
            terminating = conditions.get("terminating") is True
            for host in endpoint.get("addresses") or []:
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                found.setdefault(address, SliceEndpoint(address, ready, serving, terminating, endpoint, ports,
                                                        address_type))  # fmt: skip
    return list(found.values())


def routable(endpoints: Iterable[SliceEndpoint]) -> list[str]:
    """The addresses to route new requests to: the ready ones, else those terminating but still serving."""
    listed = list(endpoints)
    ready = [e.address for e in listed if e.ready]
    return ready or [e.address for e in listed if e.serving and e.terminating]
