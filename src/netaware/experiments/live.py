"""The demo's second act: a live link change, followed end to end on the running lab.

1. deploy the workload under netaware and drive load at a steady rate;
2. a few seconds in, degrade the inter-zone link its placement uses most (`lab shape`: one-way delay + N ms, both
   directions), and measure (a) how long until the published NetworkTopology shows it;
3. once the load ends, deploy the workload again (pods created after the change) and see where they land: the calls
   per request that still cross the degraded zone pair, before and after.

(b), the router moving traffic away, needs callers with a choice, and the workload's graph runs one replica per
service. So beside it runs a small routed pair (`routed_manifests`): a front in one zone of the degraded pair routing
its calls with Prequal over two back replicas, one across the degraded link (the nearer one before the change) and
one in the third zone; its front's own call counts per answering node, sampled four times a second, show when most
calls have moved to the third zone. The per-second latency timeline (p50 and p99 by send time) shows what the users
of the old placement saw.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netaware.core.nodeselection import ZONE_LABEL
from netaware.core.placement import network_cost
from netaware.experiments.running import Experiment, ExperimentError, ExperimentRunner, first_replicas
from netaware.lab.running import LabError
from netaware.lab.running import shape as lab_shape
from netaware.scraping import counter_totals
from netaware.workloads.graphs import Call, Service, ServiceGraph, graph_named
from netaware.workloads.manifests import PORT, render

PUBLISHED_TIMEOUT_S = 90.0
ROUTED_NAMESPACE = "exp-live-routed"

ROUTED = ServiceGraph("routed", "routed-front", (
    Service("routed-front", (Call("routed-back"),), work_ms=0.0, cpu="100m", memory="64Mi"),
    Service("routed-back", replicas=2, cpu="100m", memory="64Mi"),
), description="a front routing its calls with Prequal over two back replicas in two other zones")  # fmt: skip


def routed_manifests(namespace: str, front_zone: str, back_zones: Sequence[str]) -> list[dict[str, Any]]:
    """ROUTED with `--routing prequal`: its front pinned to `front_zone`, its back as one Deployment of one replica
    per zone of `back_zones`, all behind the one Service (kube-scheduler places them; nothing here needs netaware)."""
    documents = []
    for document in render(ROUTED, namespace=namespace, scheduler="default", routing="prequal"):
        name = document["metadata"]["name"]
        if document["kind"] != "Deployment":
            documents.append(document)
        elif name == "routed-front":
            document["spec"]["template"]["spec"]["nodeSelector"] = {ZONE_LABEL: front_zone}
            documents.append(document)
        else:
            for zone in back_zones:
                per_zone = copy.deepcopy(document)  # its labels, selector and template labels are one dict
                per_zone["metadata"]["name"] = f"{name}-{zone}"
                per_zone["spec"]["replicas"] = 1
                per_zone["spec"]["selector"]["matchLabels"]["lab-zone"] = zone
                per_zone["spec"]["template"]["spec"]["nodeSelector"] = {ZONE_LABEL: zone}
                documents.append(per_zone)
    return documents


def calls_by_zone(metrics_url: str, zone_of: Mapping[str, str]) -> dict[str, float]:
    """A workload's downstream calls so far (its /metrics), by the zone of the node that answered."""
    counts: dict[str, float] = {}
    for (node,), count in counter_totals(metrics_url, "netaware_workload_downstream_calls", ("node",)).items():
        zone = zone_of.get(node, "?")
        counts[zone] = counts.get(zone, 0.0) + count
    return counts


@dataclass
class CallShares:
    """A caller's cumulative calls per zone of the answering node, sampled over time (monotonic seconds)."""

    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def sample_every(self, period_s: float, seconds: float, read: Callable[[], dict[str, float]]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.samples.append((time.monotonic(), read()))
            time.sleep(period_s)

    def share(self, zone: str, since: float, until: float) -> float:
        """`zone`'s share of the calls answered between the first sample at or after `since` and the last at or
        before `until` (NaN without calls between them)."""
        first = next(counts for at, counts in self.samples if at >= since)
        last = [counts for at, counts in self.samples if at <= until][-1]
        delta = {z: last.get(z, 0.0) - first.get(z, 0.0) for z in last}
        total = sum(delta.values())
        return delta.get(zone, 0.0) / total if total else float("nan")

    def majority_after(self, zone: str, since: float, window_s: float = 1.0) -> float | None:
        """Seconds from `since` to the end of the first `window_s` window, wholly after `since`, in which `zone`
        answered most calls (None: never)."""
        return next((at - since for at, _ in self.samples
                     if at >= since + window_s and self.share(zone, at - window_s, at) > 0.5), None)  # fmt: skip


@dataclass(frozen=True)
class Reroute:
    """(b): a front in `front_zone` over back replicas in `near_zone` (across the degraded link) and `far_zone`."""

    front_zone: str
    near_zone: str
    far_zone: str
    far_share_before: float
    far_share_after: float
    """The far zone's share of the front's calls: in the 10 s before the change; from 5 s after it to the end."""
    moved_after_s: float | None
    """From the change to the end of the first 1-s window in which the far zone answered most calls."""


@dataclass
class LiveChangeResult:
    zones: tuple[str, str]
    """The zone pair degraded (both directions)."""
    added_delay_ms: float
    """One-way delay added to each direction."""
    rate_per_s: float
    changed_at_s: float
    """Seconds after the load's first request."""
    published_after_s: float | None
    """(a): seconds from the change until every changed link's published RTT showed it; None if not within the
    timeout."""
    before: dict[str, str]
    after: dict[str, str]
    """Placements (service -> node) of the pods deployed before and after the change."""
    calls_before: float
    calls_after: float
    """Calls per request over the degraded zone pair, in each placement."""
    network_ms_before: float
    network_ms_after: float
    """Network time per request of each placement on the links as published after the change."""
    timeline: list[dict[str, float]] = field(default_factory=list)
    """Per second of send time: requests, p50 and p99 (ms)."""
    reroute: Reroute | None = None
    not_rerouted: str = ""
    """(b), or why it was not measured."""


def reroute_zones(
    pair: tuple[str, str], one_way_ms: Mapping[tuple[str, str], float], added_ms: float
) -> tuple[str, str, str] | None:
    """(front, near, far) for the routed pair: the front in a zone of the degraded `pair` for which the pair's other
    end is nearer than the third zone before the change (`added_ms` more one-way delay) and farther after it, so the
    change turns its preferred replica into the slow one; None when neither zone of the pair is such a zone, or the
    profile has not three zones. `one_way_ms`: (zone, zone) -> one-way delay."""
    zones = sorted({zone for link in one_way_ms for zone in link})
    if len(zones) != 3:
        return None
    (far,) = set(zones) - set(pair)
    for front, near in (pair, pair[::-1]):
        if one_way_ms[(front, near)] < one_way_ms[(front, far)] < one_way_ms[(front, near)] + added_ms:
            return front, near, far
    return None


def per_second(sent_s: Sequence[float], latencies_ms: Sequence[float]) -> list[dict[str, float]]:
    """p50 and p99 of the requests sent in each whole second (seconds without a completed request are left out)."""
    by_second: dict[int, list[float]] = {}
    for sent, latency in zip(sent_s, latencies_ms, strict=True):
        by_second.setdefault(int(sent), []).append(latency)
    return [
        {"second": float(second), "requests": float(len(values)),
         "p50Ms": float(np.percentile(values, 50)), "p99Ms": float(np.percentile(values, 99))}
        for second, values in sorted(by_second.items())
    ]  # fmt: skip


def calls_between(
    calls: Mapping[tuple[str, str], float], placement: Mapping[str, str], zone_of: Mapping[str, str], zones: set[str]
) -> float:
    """Calls per request between two services whose nodes are in the two zones of `zones` (either way round)."""
    return sum(n for (a, b), n in calls.items() if {zone_of[placement[a]], zone_of[placement[b]]} == zones)


def busiest_zone_pair(
    calls: Mapping[tuple[str, str], float], placement: Mapping[str, str], zone_of: Mapping[str, str]
) -> tuple[str, str] | None:
    """The pair of distinct zones with the most calls per request between them in `placement` (None: all in one)."""
    totals: dict[tuple[str, str], float] = {}
    for (a, b), n in calls.items():
        pair = tuple(sorted((zone_of[placement[a]], zone_of[placement[b]])))
        if pair[0] != pair[1]:
            totals[(pair[0], pair[1])] = totals.get((pair[0], pair[1]), 0.0) + n
    return max(sorted(totals), key=lambda pair: totals[pair]) if totals else None


def follow_link_change(
    runner: ExperimentRunner,
    experiment: Experiment,
    *,
    added_delay_ms: float = 40.0,
    rate_per_s: float = 10.0,
    routed_rate_per_s: float = 20.0,
    seconds: float = 60.0,
    change_after_s: float = 15.0,
) -> LiveChangeResult:
    lab = runner.lab()
    graph = graph_named(experiment.workload)
    problem = runner.problem(graph, lab)
    zone_of = {node: spec["zone"] for node, spec in lab["nodes"].items()}
    calls = {edge: float(n) for edge, n in graph.calls_per_request().items()}
    before = first_replicas(runner.deploy(graph, problem, "netaware", "exp-live", lab)[0])
    pair = busiest_zone_pair(calls, before, zone_of)
    if pair is None:
        raise ExperimentError("netaware placed the whole graph in one zone: no inter-zone link to degrade")
    shapes = {(link["origin"], link["destination"]): link["shape"] for link in lab["links"]}
    changed = [(o, d) for (o, d) in shapes if {zone_of[o], zone_of[d]} == set(pair)]
    one_way = {link: float(shapes[link]["delayMs"]) for link in changed}
    if len(set(one_way.values())) != 1:
        raise ExperimentError(f"the links between {pair[0]} and {pair[1]} differ in delay; cannot restore them as one")
    original_ms = next(iter(one_way.values()))
    degraded_rtt_ms = 2 * (original_ms + added_delay_ms)
    zone_delay = {(zone_of[o], zone_of[d]): float(shape["delayMs"]) for (o, d), shape in shapes.items()}
    routed_zones = reroute_zones(pair, zone_delay, added_delay_ms)
    routed_front = ""
    if routed_zones:
        front_zone, near_zone, far_zone = routed_zones
        documents = routed_manifests(ROUTED_NAMESPACE, front_zone, (near_zone, far_zone))
        runner.delete_namespace(ROUTED_NAMESPACE)  # a fresh one, as deploy() makes (a failed run may have left it)
        routed_nodes, _ = runner.deploy_documents(documents, ROUTED, "routed pair", ROUTED_NAMESPACE, lab)
        routed_front = routed_nodes["routed-front"][0]
        pods: list[Any] = runner.core.list_namespaced_pod(ROUTED_NAMESPACE, label_selector="app=routed-front").items
        front_metrics = f"http://{pods[0].status.pod_ip}:{PORT}/metrics"

    entry_namespace = lab["nodes"][before[graph.entry]]["namespace"]
    count = int(rate_per_s * seconds)
    load: dict[str, Any] = {}
    routed_load: dict[str, Any] = {}
    shares = CallShares()

    def drive(into: dict[str, Any], client_namespace: str, namespace: str, entry: str, rate: float) -> None:
        try:
            into.update(runner.drive(client_namespace, namespace, entry, rate=rate, count=int(rate * seconds), lab=lab))
        except ExperimentError as error:  # raised again below, in the caller's thread
            into["failure"] = str(error)

    runner.progress(f"live change: {count} requests at {rate_per_s:g}/s on netaware's placement")
    threads = [threading.Thread(target=drive, args=(load, entry_namespace, "exp-live", graph.entry, rate_per_s),
                                name="live-load", daemon=True)]  # fmt: skip
    if routed_zones:
        routed_namespace = lab["nodes"][routed_front]["namespace"]
        threads.append(threading.Thread(
            target=drive, args=(routed_load, routed_namespace, ROUTED_NAMESPACE, "routed-front", routed_rate_per_s),
            name="routed-load", daemon=True))  # fmt: skip

        def sample() -> None:
            try:
                shares.sample_every(0.25, seconds, lambda: calls_by_zone(front_metrics, zone_of))
            except OSError as error:  # requests' errors are OSErrors; reported as (b) not measured, below
                routed_load["samplingFailure"] = f"reading {front_metrics}: {error}"

        threads.append(threading.Thread(target=sample, name="routed-shares", daemon=True))
    load_started = time.time()
    for thread in threads:
        thread.start()
    time.sleep(change_after_s)
    change = {"fromZone": pair[0], "toZone": pair[1], "delayMs": original_ms + added_delay_ms}
    published_after_s: float | None = None
    try:
        changed_at, changed_at_monotonic = time.time(), time.monotonic()
        lab_shape(runner.lab_state_dir, change)
        runner.progress(f"live change: {pair[0]} <-> {pair[1]} one-way delay {original_ms:g} -> "
                        f"{original_ms + added_delay_ms:g} ms; waiting for the NetworkTopology")  # fmt: skip
        deadline = changed_at + PUBLISHED_TIMEOUT_S
        while time.time() < deadline:
            published = {(link["origin"], link["destination"]): link["rttMs"] for link in runner.lab()["links"]}
            if all((published.get(link) or 0.0) >= 0.9 * degraded_rtt_ms for link in changed):
                published_after_s = time.time() - changed_at
                break
            time.sleep(0.5)
        for thread in threads:
            thread.join(timeout=seconds + 180)
        for name, result in (("live change", load), ("routed pair", routed_load)):
            if (result is load or routed_zones) and not result.get("latenciesMs"):
                reason = result.get("failure") or result.get("errorSamples") or "the load driver did not finish"
                raise ExperimentError(f"the {name}'s load returned no latencies: {reason}")
        runner.progress("live change: deploying netaware again (pods created after the change)")
        runner.delete_namespace("exp-live")
        runner.delete_namespace(ROUTED_NAMESPACE)
        lab_after = runner.lab()
        problem_after = runner.problem(graph, lab_after)
        after = first_replicas(runner.deploy(graph, problem_after, "netaware", "exp-live-after", lab_after)[0])
        runner.delete_namespace("exp-live-after")
    finally:
        try:
            lab_shape(runner.lab_state_dir, {**change, "delayMs": original_ms})
        except LabError as error:
            runner.progress(f"live change: could not restore the link: {error}")
    reroute, not_rerouted = None, ""
    if not routed_zones:
        not_rerouted = f"no zone of {pair[0]} <-> {pair[1]} prefers the other before the change and the third after"
    elif "samplingFailure" in routed_load:
        not_rerouted = f"the routed front's call counts stopped: {routed_load['samplingFailure']}"
    else:
        front_zone, near_zone, far_zone = routed_zones
        reroute = Reroute(
            front_zone=front_zone,
            near_zone=near_zone,
            far_zone=far_zone,
            far_share_before=shares.share(far_zone, changed_at_monotonic - 10.0, changed_at_monotonic),
            far_share_after=shares.share(far_zone, changed_at_monotonic + 5.0, shares.samples[-1][0]),
            moved_after_s=shares.majority_after(far_zone, changed_at_monotonic),
        )
    return LiveChangeResult(
        zones=pair,
        added_delay_ms=added_delay_ms,
        rate_per_s=rate_per_s,
        changed_at_s=changed_at - float(load.get("startedAt", load_started)),
        published_after_s=published_after_s,
        before=before,
        after=after,
        calls_before=calls_between(calls, before, zone_of, set(pair)),
        calls_after=calls_between(calls, after, zone_of, set(pair)),
        network_ms_before=network_cost(problem_after, before),
        network_ms_after=network_cost(problem_after, after),
        timeline=per_second(load["sentS"], load["latenciesMs"]),
        reroute=reroute,
        not_rerouted=not_rerouted,
    )
