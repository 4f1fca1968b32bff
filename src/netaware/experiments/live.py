"""The demo's second act: a live link change, followed end to end on the running lab.

1. deploy the workload under netaware and drive load at a steady rate;
2. a few seconds in, degrade the inter-zone link its placement uses most (`lab shape`: one-way delay + N ms, both
   directions), and measure (a) how long until the published NetworkTopology shows it;
3. once the load ends, deploy the workload again (pods created after the change) and see where they land: the calls
   per request that still cross the degraded zone pair, before and after.

(b), the router moving traffic away, needs callers with a choice: the workloads can route their own calls now
(`--routing`), but this graph runs one replica per service, so it is reported as not measured here; the lab tier
measures it on a replicated back (tests/lab/test_real_nodes.py). The per-second latency timeline (p50 and p99 by
send time) shows what the users of the old placement saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netaware.core.placement import network_cost
from netaware.experiments.running import Experiment, ExperimentError, ExperimentRunner
from netaware.lab.running import LabError
from netaware.lab.running import shape as lab_shape
from netaware.workloads.graphs import graph_named

PUBLISHED_TIMEOUT_S = 90.0


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
    rerouted_after_s: float | None = None
    """(b): not measured on a graph with one replica per service (nothing to move to)."""


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
    seconds: float = 60.0,
    change_after_s: float = 15.0,
) -> LiveChangeResult:
    lab = runner.lab()
    graph = graph_named(experiment.workload)
    problem = runner.problem(graph, lab)
    zone_of = {node: spec["zone"] for node, spec in lab["nodes"].items()}
    calls = {edge: float(n) for edge, n in graph.calls_per_request().items()}
    before, _ = runner.deploy(graph, problem, "netaware", "exp-live", lab)
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

    entry_namespace = lab["nodes"][before[graph.entry]]["namespace"]
    count = int(rate_per_s * seconds)
    load: dict[str, Any] = {}

    def drive() -> None:
        try:
            load.update(runner.drive(entry_namespace, "exp-live", graph.entry, rate=rate_per_s, count=count, lab=lab))
        except ExperimentError as error:  # raised again below, in the caller's thread
            load["failure"] = str(error)

    runner.progress(f"live change: {count} requests at {rate_per_s:g}/s on netaware's placement")
    driver = threading.Thread(target=drive, name="live-load", daemon=True)
    load_started = time.time()
    driver.start()
    time.sleep(change_after_s)
    change = {"fromZone": pair[0], "toZone": pair[1], "delayMs": original_ms + added_delay_ms}
    published_after_s: float | None = None
    try:
        changed_at = time.time()
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
        driver.join(timeout=seconds + 180)
        if not load.get("latenciesMs"):
            reason = load.get("failure") or load.get("errorSamples") or "the load driver did not finish"
            raise ExperimentError(f"the live change's load returned no latencies: {reason}")
        runner.progress("live change: deploying netaware again (pods created after the change)")
        runner.delete_namespace("exp-live")
        lab_after = runner.lab()
        problem_after = runner.problem(graph, lab_after)
        after, _ = runner.deploy(graph, problem_after, "netaware", "exp-live-after", lab_after)
        runner.delete_namespace("exp-live-after")
    finally:
        try:
            lab_shape(runner.lab_state_dir, {**change, "delayMs": original_ms})
        except LabError as error:
            runner.progress(f"live change: could not restore the link: {error}")
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
    )
