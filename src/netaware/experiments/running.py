"""`netaware experiment run NAME`: deploy a workload graph on the running lab once per placement policy, drive the
same load through it, and record what the network and the application saw.

Per policy, in its own namespace `exp-<policy>`:
1. render the graph's manifests for the policy (default scheduler; netaware's scheduler with the dependency-order
   gate and one of its strategies; or a placement computed here, random or optimal, pinned by node selector) and
   apply them with server-side apply. A policy is `PLACEMENT[+ROUTING]`: with `+prequal` (or another of the router's
   policies) every caller routes its own calls with it, without it calls go through kube-proxy;
2. wait until every replica is Ready (the lab's kubelets run them) and every Service has its endpoints;
3. warm up, then send `requests` requests at `rate` per second (open loop) to the entry service from the namespace
   of the node that runs it (the client sits next to the entry, as an ingress would; with `clients_in_every_zone`
   one client next to each entry replica, sending to it directly, its share of the rate);
4. read the link emulator's byte counters before and after: bytes that crossed zones;
5. delete the namespace and wait until its pods are gone (so the next policy finds the nodes empty).

The network-level figures are the links as the lab measured them (ICMP, iperf3) and the traffic-weighted RTT of each
placement: predicted from the call graph where each service has one replica, and where some have more (the routing
then decides which pair of nodes a call crosses) measured, from the calls each caller counted per answering node
(`netaware_workload_downstream_calls_total`) times the RTT between the two nodes. The application-level figures are
latency percentiles, throughput and errors from the load driver.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netaware.core.placement import PlacementProblem, network_cost, optimal_placement, random_placement
from netaware.core.quantities import cpu_millicores
from netaware.kube import api as kube
from netaware.kube.api import ApiException
from netaware.kube.applying import apply_manifests
from netaware.kube.clients import api_client
from netaware.lab.running import status as lab_status
from netaware.scraping import counter_totals
from netaware.workloads.graphs import ServiceGraph, graph_named
from netaware.workloads.load import LoadResult
from netaware.workloads.manifests import PORT, render
from netaware.workloads.routing import KUBE_PROXY, MANIFEST_ROUTINGS

POLICIES = ("default", "netaware", "random", "optimal")
"""The placement policies; `netaware-<strategy>` picks one of the extender's strategies too."""
READY_TIMEOUT_S = 240.0
DELETE_TIMEOUT_S = 120.0


class ExperimentError(RuntimeError):
    """A problem the user can act on."""


def split_policy(policy: str) -> tuple[str, str]:
    """`PLACEMENT[+ROUTING]` -> (placement, routing); ExperimentError naming what is known if either is not."""
    placement, _, routing = policy.partition("+")
    if placement not in POLICIES and not placement.startswith("netaware-"):
        raise ExperimentError(f"unknown placement {placement!r} in {policy!r}; known: {', '.join(POLICIES)}, "
                              "netaware-<strategy>")  # fmt: skip
    routing = routing or KUBE_PROXY
    if routing not in MANIFEST_ROUTINGS:
        raise ExperimentError(f"unknown routing {routing!r} in {policy!r}; known: {', '.join(MANIFEST_ROUTINGS)}")
    return placement, routing


@dataclass(frozen=True)
class Experiment:
    name: str
    workload: str
    profile: str
    rate_per_s: float = 20.0
    requests: int = 400
    warmup: int = 40
    description: str = ""
    policies: tuple[str, ...] = POLICIES
    """What `experiment run` compares unless told otherwise."""
    clients_in_every_zone: bool = False
    """One load client next to each replica of the entry service, sending it its share of the rate directly (a
    zonal ingress per zone); otherwise one client next to the entry's first replica, through its Service."""


EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment(
            "online-boutique",
            "online-boutique",
            "three-zones",
            description="the standard experiment: Online Boutique's 11 services on three zones",
        ),
        Experiment("chain", "chain", "three-zones", description="A -> B -> C -> D"),
        Experiment("star", "star", "three-zones", description="A -> B1..B4"),
        Experiment("cross", "cross", "three-zones", description="A -> B <- C"),
        Experiment("cloud-edge", "cloud-edge", "cloud-edge", description="an edge sensor pipeline into the cloud"),
        Experiment(
            "routing",
            "replicated",
            "three-zones",
            description="routing on netaware's placement: kube-proxy's random replica, kube-proxy preferring the "
            "caller's zone (PreferClose) and each caller's Prequal router, over two replicas per service spread "
            "across zones",
            policies=("netaware", "netaware+prefer-close", "netaware+prequal"),
        ),
        Experiment(
            "joint",
            "zonal",
            "three-zones",
            description="placement and routing together: a frontend in every zone with its own clients, three "
            "replicas per callee placed by the policy (default, netaware's mean, netaware-routed), routed by "
            "kube-proxy or Prequal",
            policies=(
                "default",
                "default+prequal",
                "netaware",
                "netaware+prequal",
                "netaware-routed",
                "netaware-routed+prequal",
            ),
            clients_in_every_zone=True,
        ),
    )
}


@dataclass
class PolicyResult:
    policy: str
    placement: dict[str, str]
    """service -> node of its first replica (of its only one, for most graphs)"""
    zones: dict[str, str]
    """service -> zone of that node"""
    network_cost_ms: float
    """Traffic-weighted measured RTT of the placement (ms of network time per request, sequential calls): predicted
    from the call graph with one replica per service, measured from the callers' counts with more."""
    load: dict[str, Any]
    cross_zone_bytes: int
    total_link_bytes: int
    latencies_ms: list[float] = field(default_factory=list)
    seconds_to_ready: float = 0.0
    replica_nodes: dict[str, list[str]] = field(default_factory=dict)
    """service -> the nodes of all its replicas"""
    routing: str = KUBE_PROXY


@dataclass
class ExperimentResult:
    experiment: str
    workload: str
    profile: str
    seed: int
    rate_per_s: float
    requests: int
    started: str
    nodes: dict[str, str]
    """node -> zone"""
    links: list[dict[str, Any]]
    """As the lab measured them."""
    policies: list[PolicyResult] = field(default_factory=list)

    def policy(self, name: str) -> PolicyResult | None:
        return next((p for p in self.policies if p.policy == name), None)


@dataclass
class ExperimentRunner:
    kubeconfig: Path
    lab_state_dir: Path
    seed: int = 0
    progress: Callable[[str], None] = lambda _: None
    api: kube.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = api_client(self.kubeconfig)
        self.core = kube.CoreV1Api(self.api)

    def lab(self) -> dict[str, Any]:
        state = lab_status(self.lab_state_dir)
        if not state.get("running") or state.get("phase") != "ready":
            raise ExperimentError(
                "the lab is not running: start it with `netaware lab up` (after `netaware cluster up`)"
            )
        return state

    def problem(self, graph: ServiceGraph, lab: Mapping[str, Any]) -> PlacementProblem:
        """The placement problem on the lab's nodes: their free CPU (allocatable less what pods outside the
        experiments already request there, such as the cluster DNS), the measured RTTs, the graph's zones."""
        nodes = list(lab["nodes"])
        used = self.requested_cpu_m()
        capacity = {}
        for node in nodes:
            status = self.core.read_node(node).status
            allocatable = (status.allocatable if status else None) or {}
            capacity[node] = cpu_millicores(allocatable.get("cpu", "0")) - used.get(node, 0)
        rtt = {(link["origin"], link["destination"]): float(link["rttMs"]) for link in lab["links"] if link["rttMs"]}
        zone_of = {node: spec["zone"] for node, spec in lab["nodes"].items()}
        allowed = {service: [n for n in nodes if zone_of[n] == zone] for service, zone in graph.zones.items()}
        return PlacementProblem(
            services=[s.name for s in graph.services],
            cpu_m={s.name: cpu_millicores(s.cpu) for s in graph.services},
            edges={edge: float(calls) for edge, calls in graph.calls_per_request().items()},
            nodes=nodes,
            capacity_m=capacity,
            rtt_ms=rtt,
            allowed=allowed or None,
        )

    def requested_cpu_m(self) -> dict[str, int]:
        """node -> CPU millicores requested by running pods outside the experiments' namespaces."""
        used: dict[str, int] = {}
        pods: list[Any] = self.core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items
        for pod in pods:
            if pod.metadata.namespace.startswith("exp-") or not pod.spec.node_name:
                continue
            for container in pod.spec.containers:
                requests = (container.resources.requests if container.resources else None) or {}
                used[pod.spec.node_name] = used.get(pod.spec.node_name, 0) + cpu_millicores(requests.get("cpu", "0"))
        return used

    def run(self, experiment: Experiment, policies: Sequence[str]) -> ExperimentResult:
        lab = self.lab()
        if lab.get("profile") != experiment.profile:
            self.progress(
                f"note: the lab runs {lab.get('profile')!r}; {experiment.name} is meant for {experiment.profile!r}"
            )
        graph = graph_named(experiment.workload)
        replicated = [s.name for s in graph.services if s.replicas > 1]
        pinned = sorted({p for p in policies if split_policy(p)[0] in ("random", "optimal")})
        if replicated and pinned:
            raise ExperimentError(f"{', '.join(pinned)} pin one node per service; {graph.name} runs "
                                  f"{', '.join(replicated)} with more than one replica")  # fmt: skip
        problem = self.problem(graph, lab)
        result = ExperimentResult(
            experiment=experiment.name,
            workload=graph.name,
            profile=str(lab.get("profile")),
            seed=self.seed,
            rate_per_s=experiment.rate_per_s,
            requests=experiment.requests,
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            nodes={node: spec["zone"] for node, spec in lab["nodes"].items()},
            links=[
                {k: link[k] for k in ("origin", "destination", "rttMs", "bandwidthMbps", "lossRatio")}
                for link in lab["links"]
            ],
        )
        for policy in policies:
            result.policies.append(self.run_policy(experiment, graph, problem, policy, lab))
        return result

    def pinned_placement(self, policy: str, problem: PlacementProblem) -> dict[str, str] | None:
        if policy == "random":
            return random_placement(problem, random.Random(self.seed))
        if policy == "optimal":
            self.progress("optimal: solving the placement (integer program, HiGHS)")
            return optimal_placement(problem)
        return None

    def run_policy(
        self,
        experiment: Experiment,
        graph: ServiceGraph,
        problem: PlacementProblem,
        policy: str,
        lab: Mapping[str, Any],
    ) -> PolicyResult:
        namespace = f"exp-{policy.replace('+', '-')}"
        replica_nodes, seconds_to_ready = self.deploy(graph, problem, policy, namespace, lab)
        placement = first_replicas(replica_nodes)
        zones = {node: spec["zone"] for node, spec in lab["nodes"].items()}
        self.progress(f"{policy}: warming up ({experiment.warmup} requests)")
        self.drive_clients(experiment, namespace, graph, replica_nodes, experiment.warmup, lab)
        replicated = any(len(nodes) > 1 for nodes in replica_nodes.values())
        calls_before = self.calls_between_nodes(namespace) if replicated else {}
        before = self.link_bytes()
        self.progress(f"{policy}: {experiment.requests} requests at {experiment.rate_per_s:g}/s")
        load = self.drive_clients(experiment, namespace, graph, replica_nodes, experiment.requests, lab)
        after = self.link_bytes()
        if replicated:
            calls = self.calls_between_nodes(namespace)
            answered = max(1, int(load.get("requests", 0)) - int(load.get("errors", 0)))
            network_ms = (
                sum((count - calls_before.get(pair, 0.0)) * problem.rtt(*pair) for pair, count in calls.items())
                / answered
            )
        else:
            network_ms = network_cost(problem, placement)
        delta = {pair: after.get(pair, 0) - before.get(pair, 0) for pair in after}
        cross = sum(v for (o, d), v in delta.items() if zones[o] != zones[d])
        latencies = load.pop("latenciesMs", [])
        load.pop("sentS", None)
        load.pop("startedAt", None)
        self.progress(f"{policy}: p50 {load['p50Ms']:.1f} ms, p99 {load['p99Ms']:.1f} ms; cleaning up")
        self.delete_namespace(namespace)
        return PolicyResult(
            policy=policy,
            placement=placement,
            zones={service: zones[node] for service, node in placement.items()},
            network_cost_ms=network_ms,
            load=load,
            cross_zone_bytes=cross,
            total_link_bytes=sum(delta.values()),
            latencies_ms=latencies,
            seconds_to_ready=seconds_to_ready,
            replica_nodes=replica_nodes,
            routing=split_policy(policy)[1],
        )

    def calls_between_nodes(self, namespace: str) -> dict[tuple[str, str], float]:
        """(caller's node, answering node) -> downstream calls so far, summed over every pod in `namespace`, from
        each pod's own count (the host reaches pod addresses on the lab, as the API server does on any cluster)."""
        calls: dict[tuple[str, str], float] = {}
        pods: list[Any] = self.core.list_namespaced_pod(namespace, field_selector="status.phase=Running").items
        for pod in pods:
            url = f"http://{pod.status.pod_ip}:{PORT}/metrics"
            try:
                totals = counter_totals(url, "netaware_workload_downstream_calls", ("node",))
            except OSError as error:  # requests' errors are OSErrors
                raise ExperimentError(f"cannot read {pod.metadata.name}'s calls at {url}: {error}") from None
            for (node,), count in totals.items():
                if not node:
                    raise ExperimentError(f"{pod.metadata.name} counted calls answered by a replica of no node")
                pair = (pod.spec.node_name, node)
                calls[pair] = calls.get(pair, 0.0) + count
        return calls

    def deploy(
        self, graph: ServiceGraph, problem: PlacementProblem, policy: str, namespace: str, lab: Mapping[str, Any]
    ) -> tuple[dict[str, list[str]], float]:
        """The graph deployed under `policy` in a fresh `namespace`, every replica Ready and every Service routable:
        service -> the nodes of its replicas, and the seconds that took."""
        placement_policy, routing = split_policy(policy)
        self.delete_namespace(namespace)
        pinned = self.pinned_placement(placement_policy, problem)
        scheduler = "netaware" if placement_policy.startswith("netaware") else "default"
        documents = render(graph, namespace=namespace, scheduler=scheduler, pinned=pinned, routing=routing)
        if placement_policy.startswith("netaware-"):
            strategy = placement_policy.removeprefix("netaware-")
            for document in documents:
                if document["kind"] == "AppGroup":
                    document["spec"]["strategy"] = strategy
        return self.deploy_documents(documents, graph, policy, namespace, lab)

    def deploy_documents(
        self, documents: list[dict[str, Any]], graph: ServiceGraph, policy: str, namespace: str, lab: Mapping[str, Any]
    ) -> tuple[dict[str, list[str]], float]:
        """`documents` (the graph's, as rendered for `policy`) applied in `namespace`, then waited for as deploy()
        does."""
        self.progress(f"{policy}: deploying {len(graph.services)} services")
        started = time.monotonic()
        apply_manifests(self.api, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
        apply_manifests(self.api, documents)
        placement = self.wait_ready(namespace, graph, policy)
        seconds_to_ready = time.monotonic() - started
        self.wait_endpoints(namespace, graph, lab)
        return placement, seconds_to_ready

    def wait_ready(self, namespace: str, graph: ServiceGraph, policy: str) -> dict[str, list[str]]:
        """service -> the nodes of its replicas (sorted) once every replica of every service is Ready."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        wanted = {s.name: s.replicas for s in graph.services}
        while True:
            pods: list[Any] = self.core.list_namespaced_pod(namespace).items
            placement: dict[str, list[str]] = {}
            for pod in pods:
                app = (pod.metadata.labels or {}).get("app")
                conditions = {c.type: c.status for c in (pod.status.conditions or [])}
                if app in wanted and pod.spec.node_name and conditions.get("Ready") == "True":
                    placement.setdefault(app, []).append(pod.spec.node_name)
            if {app: len(nodes) for app, nodes in placement.items()} == wanted:
                return {app: sorted(nodes) for app, nodes in placement.items()}
            if time.monotonic() > deadline:
                states = sorted(
                    f"{p.metadata.name}: {p.status.phase} on {p.spec.node_name or '-'}"
                    f"{' (gated)' if p.spec.scheduling_gates else ''}"
                    for p in pods
                )
                raise ExperimentError(
                    f"{policy}: not every pod Ready after {READY_TIMEOUT_S:.0f} s: {'; '.join(states) or 'no pods'}"
                )
            ready = sum(len(nodes) for nodes in placement.values())
            self.progress(f"{policy}: {ready}/{sum(wanted.values())} pods ready")
            time.sleep(1.0)

    def wait_endpoints(self, namespace: str, graph: ServiceGraph, lab: Mapping[str, Any]) -> None:
        """Every Service of the graph has a ready endpoint in its EndpointSlices (what kube-proxy routes to), and,
        on the process runtime, in the lab's own Service table too."""
        discovery = kube.DiscoveryV1Api(self.api)
        wanted = {s.name for s in graph.services}
        table_file = Path(lab["servicesFile"]) if lab.get("runtime") == "process" else None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = set()
            slices: list[Any] = discovery.list_namespaced_endpoint_slice(namespace).items
            for item in slices:
                if any(e.conditions and e.conditions.ready for e in item.endpoints or []):
                    ready.add((item.metadata.labels or {}).get("kubernetes.io/service-name"))
            if table_file is not None:
                try:
                    table = json.loads(table_file.read_text())
                except (OSError, ValueError):
                    table = {}
                ready &= {name for name in wanted if table.get(f"{namespace}/{name}:{PORT}")}
            if wanted <= ready:
                return
            time.sleep(0.5)
        raise ExperimentError(f"Services in {namespace} still without ready endpoints after 60 s")

    def drive_clients(
        self,
        experiment: Experiment,
        namespace: str,
        graph: ServiceGraph,
        replica_nodes: Mapping[str, Sequence[str]],
        count: int,
        lab: Mapping[str, Any],
    ) -> dict[str, Any]:
        """`count` requests at the experiment's rate from its clients: one next to the entry's first replica, or
        one next to each entry replica, sending to it directly, the rate split evenly, their results merged."""
        if not experiment.clients_in_every_zone:
            client_namespace = lab["nodes"][replica_nodes[graph.entry][0]]["namespace"]
            return self.drive(client_namespace, namespace, graph.entry, rate=experiment.rate_per_s, count=count,
                              lab=lab)  # fmt: skip
        entries: list[Any] = self.core.list_namespaced_pod(namespace, label_selector=f"app={graph.entry}").items
        clients = [(lab["nodes"][pod.spec.node_name]["namespace"], f"{pod.status.pod_ip}:{PORT}") for pod in entries]
        results: list[dict[str, Any]] = [{} for _ in clients]

        def client(position: int) -> None:
            client_namespace, target = clients[position]
            try:
                share = experiment.rate_per_s / len(clients), count // len(clients)
                results[position] = self.drive(client_namespace, namespace, graph.entry, target=target, lab=lab,
                                               rate=share[0], count=share[1])  # fmt: skip
            except ExperimentError as error:  # raised again below, in the caller's thread
                results[position] = {"failure": str(error)}

        threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failures = [r["failure"] for r in results if "failure" in r]
        if failures:
            raise ExperimentError(f"{len(failures)} of {len(clients)} load clients failed: {failures[0]}")
        return merged_loads(results)

    def drive(
        self,
        client_namespace: str,
        namespace: str,
        entry: str,
        *,
        rate: float,
        count: int,
        lab: Mapping[str, Any],
        target: str | None = None,
    ) -> dict[str, Any]:
        """The open-loop load driver in `client_namespace` (the entry pod's node). To `target` (host:port) if given;
        on real nodes, else to the entry Service's ClusterIP through that node's kube-proxy (the machine's own
        resolver is never asked); on the process runtime, through the lab's Service table."""
        env = {**os.environ, "POD_NAMESPACE": namespace}
        if target is None and lab.get("runtime") == "process":
            target = f"{entry}:{PORT}"
            env["NETAWARE_LAB_SERVICES"] = lab["servicesFile"]
        elif target is None:
            service: Any = self.core.read_namespaced_service(entry, namespace)
            target = f"{service.spec.cluster_ip}:{PORT}"
        command = [
            "ip", "netns", "exec", client_namespace,
            str(Path(sys.executable).parent / "netaware-workload"), "load",
            f"--target={target}", f"--rate={rate}", f"--count={count}", "--raw",
        ]  # fmt: skip
        finished = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=count / rate + 120, check=False
        )
        if finished.returncode != 0:
            raise ExperimentError(f"the load driver failed: {finished.stderr.strip()[-500:]}")
        return json.loads(finished.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def link_bytes(self) -> dict[tuple[str, str], int]:
        """Bytes the workloads' pods sent per directed link (the telemetry's own probes and iperf3 tests excluded)."""
        state = lab_status(self.lab_state_dir)
        return {(link["origin"], link["destination"]): int(link["podBytes"]) for link in state.get("links", [])}

    def delete_namespace(self, namespace: str) -> None:
        try:
            self.core.delete_namespace(namespace)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        deadline = time.monotonic() + DELETE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                self.core.read_namespace(namespace)
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            time.sleep(0.5)
        raise ExperimentError(f"namespace {namespace} still terminating after {DELETE_TIMEOUT_S:.0f} s")


def first_replicas(replica_nodes: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """service -> the node of its first replica (its only one, in a graph of one replica per service)."""
    return {service: nodes[0] for service, nodes in replica_nodes.items()}


def merged_loads(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several load drivers' raw results as one: their requests pooled (percentiles over all of them, send times
    on the earliest driver's clock), errors summed, throughput over the longest run."""
    started = min(float(r["startedAt"]) for r in results)
    pooled = LoadResult(
        latencies_ms=[latency for r in results for latency in r["latenciesMs"]],
        sent_s=[float(r["startedAt"]) - started + sent for r in results for sent in r["sentS"]],
        started_at_s=started,
        errors=sum(int(r["errors"]) for r in results),
        error_samples=[sample for r in results for sample in r.get("errorSamples", [])],
        duration_s=max(float(r["durationS"]) for r in results),
        calls=[int(r["callsPerRequest"]) for r in results],
    )
    return {**pooled.summary(), "latenciesMs": pooled.latencies_ms, "sentS": pooled.sent_s, "startedAt": started}
