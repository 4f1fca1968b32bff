"""Applications for the simulator: the graphs of workloads/ plus larger ones, with replicas and CPU requests.

- the lab's graphs (chain, star, cross, online-boutique, cloud-edge), one replica each;
- `social-network` and `hotel-reservation`: the call graphs of DeathStarBench's two best-known applications (their
  main services and edges; storage tiers folded into the service that owns them);
- `random`: DAGs shaped like published microservice call traces (Alibaba 2021: most services call one or two
  others, a few fan out wide; depth 3-5), heavy-tailed call counts, 1-3 replicas, 250m-1000m CPU.

Each becomes a core AppGroup whose dependency weights are the calls per request to the entry (as the manifests'
AppGroups), so the simulator scores with exactly the extender's inputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from netaware.core.appgroup import AppGroup, Dependency, Workload
from netaware.workloads.graphs import GRAPHS, Call, Service, ServiceGraph


@dataclass(frozen=True)
class SimApp:
    name: str
    graph: ServiceGraph
    appgroup: AppGroup
    calls_per_request: dict[tuple[str, str], float]

    @property
    def pods(self) -> int:
        return sum(s.replicas for s in self.graph.services)


def from_graph(graph: ServiceGraph, name: str | None = None) -> SimApp:
    calls = {edge: float(count) for edge, count in graph.calls_per_request().items()}
    group = AppGroup(
        name=name or graph.name,
        workloads=tuple(
            Workload(
                s.name,
                {"app": s.name},
                tuple(Dependency(c.callee, weight=calls[(s.name, c.callee)]) for c in s.calls),
            )
            for s in graph.services
        ),
    )
    return SimApp(name or graph.name, graph, group, calls)


def social_network() -> ServiceGraph:
    s = Service
    return ServiceGraph(
        "social-network",
        "nginx",
        (
            s("nginx", (Call("compose-post"), Call("home-timeline", 3), Call("user-timeline", 2), Call("user"))),
            s(
                "compose-post",
                (
                    Call("text"),
                    Call("media"),
                    Call("unique-id"),
                    Call("user"),
                    Call("post-storage"),
                    Call("user-timeline"),
                    Call("write-home-timeline"),
                ),
            ),
            s("text", (Call("url-shorten"), Call("user-mention"))),
            s("write-home-timeline", (Call("social-graph"),)),
            s("home-timeline", (Call("post-storage"), Call("social-graph"))),
            s("user-timeline", (Call("post-storage"),)),
            s("user", (Call("social-graph"),)),
            s("media"),
            s("unique-id"),
            s("url-shorten"),
            s("user-mention"),
            s("post-storage", replicas=2),
            s("social-graph"),
        ),
        "DeathStarBench social network",
    )


def hotel_reservation() -> ServiceGraph:
    s = Service
    return ServiceGraph(
        "hotel-reservation",
        "frontend",
        (
            s(
                "frontend",
                (Call("search"), Call("profile"), Call("recommendation"), Call("reservation"), Call("user")),
                replicas=2,
            ),
            s("search", (Call("geo"), Call("rate"))),
            s("recommendation", (Call("profile"),)),
            s("reservation", (Call("user"),)),
            s("profile"),
            s("geo"),
            s("rate"),
            s("user"),
        ),
        "DeathStarBench hotel reservation",
    )


def random_dag(rng: random.Random, name: str, *, services: int | None = None) -> ServiceGraph:
    count = services or rng.randint(5, 25)
    names = [f"s{i}" for i in range(count)]
    depth = min(count - 1, rng.randint(3, 5))
    level = {names[0]: 0}
    for name_ in names[1:]:
        level[name_] = rng.randint(1, depth)
    calls: dict[str, list[Call]] = {n: [] for n in names}
    for callee in names[1:]:  # every service is called by one in the level above (or the entry)
        callers = [n for n in names if level[n] < level[callee]] or [names[0]]
        caller = rng.choice([n for n in callers if level[n] == max(level[c] for c in callers)])
        calls[caller].append(Call(callee, max(1, int(rng.paretovariate(2.0)))))  # mostly 1, a heavy tail
    for caller in names:  # a few extra edges downwards (shared backends)
        lower = [n for n in names if level[n] > level[caller] and all(c.callee != n for c in calls[caller])]
        if lower and rng.random() < 0.3:
            calls[caller].append(Call(rng.choice(lower), 1))
    return ServiceGraph(
        name,
        names[0],
        tuple(
            Service(n, tuple(calls[n]), replicas=rng.choice([1, 1, 1, 2, 3]), cpu=f"{rng.choice([250, 500, 1000])}m")
            for n in names
        ),
        "random DAG shaped like microservice call traces",
    )


NAMED = {**GRAPHS, "social-network": social_network(), "hotel-reservation": hotel_reservation()}


def apps_for(workload: str, *, pods: int, seed: int) -> list[SimApp]:
    """Copies of a named graph (or random DAGs) until `pods` pods are reached (at least one app)."""
    rng = random.Random(seed)
    apps: list[SimApp] = []
    total = 0
    while not apps or total < pods:
        index = len(apps)
        if workload == "random":
            graph = random_dag(rng, f"random-{index}")
        elif workload in NAMED:
            graph = NAMED[workload]
        else:
            raise ValueError(f"unknown workload {workload!r}; known: {', '.join([*NAMED, 'random'])}")
        app = from_graph(graph, f"{graph.name}-{index}")
        apps.append(app)
        total += app.pods
    return apps
