"""Service graphs built from the one dummy service: who calls whom, how often per request, with what payload.

A request to a graph's entry service walks the graph: each service does its work, then calls each of its callees
`calls` times in order, and answers with `payload_bytes`. The same graph renders to Deployments, Services and an
AppGroup (manifests.py), and its call counts are the AppGroup's traffic weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import networkx as nx


@dataclass(frozen=True)
class Call:
    callee: str
    calls: int = 1
    """Calls per request the caller serves (the AppGroup weight of the edge)."""


@dataclass(frozen=True)
class Service:
    name: str
    calls: tuple[Call, ...] = ()
    work_ms: float = 1.0
    payload_bytes: int = 1024
    replicas: int = 1
    cpu: str = "500m"
    memory: str = "128Mi"
    spread: bool = False
    """Spread the replicas over zones, as a user does for availability: no zone holds two more than another (a
    topology spread constraint kube-scheduler enforces, whichever scheduler scores)."""


@dataclass(frozen=True)
class ServiceGraph:
    name: str
    entry: str
    services: tuple[Service, ...]
    description: str = ""
    zones: Mapping[str, str] = field(default_factory=dict)
    """Optional zone pinning (service -> zone) the cloud-edge graph needs: sensors sit at the edge."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate service names")
        unknown = {c.callee for s in self.services for c in s.calls} - set(names)
        if unknown:
            raise ValueError(f"{self.name}: calls to unknown services {sorted(unknown)}")
        if self.entry not in names:
            raise ValueError(f"{self.name}: entry {self.entry!r} is not a service")
        if not nx.is_directed_acyclic_graph(self.graph()):
            raise ValueError(f"{self.name}: the call graph has a cycle (a request would never end)")

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(s.name for s in self.services)
        for service in self.services:
            for call in service.calls:
                graph.add_edge(service.name, call.callee, weight=call.calls)
        return graph

    def calls_per_request(self) -> dict[tuple[str, str], int]:
        """How many times each edge is used by one request to the entry service (calls multiply along paths)."""
        graph = self.graph()
        visits = {self.entry: 1}
        for name in nx.topological_sort(graph):
            for callee in graph.successors(name):
                visits[callee] = visits.get(callee, 0) + visits.get(name, 0) * graph.edges[name, callee]["weight"]
        return {
            (caller, callee): visits.get(caller, 0) * graph.edges[caller, callee]["weight"]
            for caller, callee in graph.edges
        }


def _chain() -> ServiceGraph:
    names = ["a", "b", "c", "d"]
    services = tuple(Service(name, (Call(names[i + 1]),) if i + 1 < len(names) else ()) for i, name in enumerate(names))
    return ServiceGraph("chain", "a", services, "A -> B -> C -> D")


def _star() -> ServiceGraph:
    leaves = [f"b{i}" for i in range(1, 5)]
    return ServiceGraph(
        "star",
        "a",
        (Service("a", tuple(Call(leaf) for leaf in leaves)), *(Service(leaf) for leaf in leaves)),
        "A -> B1..B4",
    )


def _cross() -> ServiceGraph:
    return ServiceGraph(
        "cross",
        "gateway",
        (
            Service("gateway", (Call("a"), Call("c"))),
            Service("a", (Call("b"),)),
            Service("c", (Call("b"),)),
            Service("b"),
        ),
        "A -> B <- C (a gateway calls A and C)",
    )


def _online_boutique() -> ServiceGraph:
    # The 11 services of Google's Online Boutique (microservices-demo) and its real call edges; the load generator
    # is the experiment's driver. One request = a home page view plus a checkout, so every edge carries traffic.
    return ServiceGraph(
        "online-boutique",
        "frontend",
        (
            Service(
                "frontend",
                (
                    Call("currencyservice", 2),
                    Call("productcatalogservice", 2),
                    Call("cartservice"),
                    Call("recommendationservice"),
                    Call("adservice"),
                    Call("shippingservice"),
                    Call("checkoutservice"),
                ),
                work_ms=2.0,
                payload_bytes=8192,
            ),
            Service(
                "checkoutservice",
                (
                    Call("cartservice"),
                    Call("productcatalogservice"),
                    Call("currencyservice"),
                    Call("shippingservice"),
                    Call("paymentservice"),
                    Call("emailservice"),
                ),
                work_ms=2.0,
            ),
            Service("recommendationservice", (Call("productcatalogservice"),)),
            Service("cartservice", (Call("redis-cart"),)),
            Service("productcatalogservice", payload_bytes=4096),
            Service("currencyservice", payload_bytes=256),
            Service("shippingservice", payload_bytes=256),
            Service("paymentservice", payload_bytes=256),
            Service("emailservice", payload_bytes=256),
            Service("adservice", payload_bytes=512),
            Service("redis-cart", work_ms=0.2, payload_bytes=512),
        ),
        "Online Boutique: frontend, checkout, cart (+ redis-cart), product catalog, currency, shipping, payment, "
        "email, recommendation, ad",
    )


def _replicated() -> ServiceGraph:
    # Where routing matters: every callee has two replicas spread over zones, so each caller has a replica nearby
    # and one across a zone boundary; kube-proxy picks either at random, a client-side router can pick the near one.
    return ServiceGraph(
        "replicated",
        "frontend",
        (
            Service("frontend", (Call("catalog", 2), Call("currency", 2), Call("cart")), work_ms=2.0),
            *(Service(name, replicas=2, cpu="250m", spread=True) for name in ("catalog", "currency", "cart")),
        ),
        "a frontend over catalog, currency and cart, two replicas each spread over zones",
    )


def _zonal() -> ServiceGraph:
    # Placement and routing together: a frontend in every zone (its clients there too), each callee with three
    # replicas the placement policy may spread or pack; each frontend's calls go where its routing sends them.
    return ServiceGraph(
        "zonal",
        "frontend",
        (
            Service(
                "frontend",
                (Call("catalog", 2), Call("currency", 2), Call("cart")),
                work_ms=2.0,
                replicas=3,
                spread=True,
            ),
            *(Service(name, replicas=3, cpu="250m") for name in ("catalog", "currency", "cart")),
        ),
        "a frontend in every zone over catalog, currency and cart, three replicas each placed by the policy",
    )


def _cloud_edge() -> ServiceGraph:
    # Sensors at the edge push readings through a filter; aggregation and storage live in the cloud.
    return ServiceGraph(
        "cloud-edge",
        "sensor",
        (
            Service("sensor", (Call("filter"),), work_ms=0.5, payload_bytes=256),
            Service("filter", (Call("aggregator"),), work_ms=1.0, payload_bytes=256),
            Service("aggregator", (Call("store"), Call("analytics")), work_ms=2.0, payload_bytes=1024),
            Service("store", work_ms=1.0, payload_bytes=256),
            Service("analytics", work_ms=3.0, payload_bytes=512),
        ),
        "edge sensor -> filter -> cloud aggregator -> store, analytics",
        zones={"sensor": "edge-1"},
    )


GRAPHS: dict[str, ServiceGraph] = {
    graph.name: graph
    for graph in (_chain(), _star(), _cross(), _online_boutique(), _replicated(), _zonal(), _cloud_edge())
}


def graph_named(name: str) -> ServiceGraph:
    try:
        return GRAPHS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(GRAPHS)}") from None
