"""Measure the lab's links as a probe agent would: real ICMP (icmplib) from each node namespace to every other node
for RTT, jitter and loss, and real iperf3 (`-J`) for bandwidth, one pair at a time so that tests never share the
relay's CPU. The result is a core Topology (measured, with sample counts and timestamps) the lab writes as
NetworkTopology resources, so the extender schedules on what was measured, not on what the profile says.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import icmplib

from netaware import icmp
from netaware.core.topology import LinkMetrics, Topology
from netaware.iperf import measure_mbps, server_command
from netaware.lab.emulating import EmulatedNetwork
from netaware.netns import run_in


def ping_pair(
    network: EmulatedNetwork, origin: str, destination: str, *, count: int, interval_s: float
) -> LinkMetrics | None:
    """The link's figures, or None when no probe was answered: a dead link has no RTT, and an RTT of 0 would make it
    look like the best link there is. Left out, the pair is unmeasured, which the cost function prices as the worst."""
    address = network.address_of(destination)

    def probe() -> icmplib.Host:
        (answered,) = icmp.ping([address], count=count, interval_s=interval_s)
        return answered

    host = run_in(network.namespace_of(origin), probe, timeout_s=count * interval_s + icmp.DEFAULT_TIMEOUT_S + 10)
    rtts = list(host.rtts)
    if not rtts:
        return None
    return LinkMetrics(
        # The median, robust to a probe delayed by a busy moment of the 2-core machine (what the agents report).
        rtt_ms=statistics.median(rtts),
        loss_ratio=host.packet_loss,
        jitter_ms=host.jitter,
        samples=host.packets_sent,
        measured_at_s=time.time(),
    )


def iperf_pair(network: EmulatedNetwork, origin: str, destination: str, *, seconds: float) -> float | None:
    """Mbit/s origin -> destination (the receiver's figure), or None when iperf3 failed."""
    return measure_mbps(network.address_of(destination), seconds=seconds, netns=network.namespace_of(origin))


def measure_topology(
    network: EmulatedNetwork,
    *,
    probes: int = 20,
    interval_s: float = 0.02,
    bandwidth_seconds: float = 1.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Topology:
    """Every directed pair: RTT/jitter/loss (all pairs at once; ICMP is light) then bandwidth (one pair at a time;
    `bandwidth_seconds` 0 skips it, leaving bandwidth unmeasured, which the cost function prices as the worst)."""
    pairs = [(o, d) for o in network.nodes for d in network.nodes if o != d]
    with ThreadPoolExecutor(max_workers=min(32, len(pairs) or 1)) as pool:
        answered = zip(
            pairs,
            pool.map(lambda pair: ping_pair(network, *pair, count=probes, interval_s=interval_s), pairs),
            strict=True,
        )
        pinged = {pair: metrics for pair, metrics in answered if metrics is not None}
    dead = len(pairs) - len(pinged)
    progress(
        f"ICMP: {len(pairs)} links x {probes} probes" + (f", {dead} answered nothing (left unmeasured)" if dead else "")
    )
    if bandwidth_seconds <= 0:
        return Topology.from_links(pinged, network.nodes)
    servers = [
        subprocess.Popen(
            server_command(network.namespace_of(node)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for node in network.nodes
    ]
    links = {}
    try:
        time.sleep(0.3)  # the servers bind
        for index, pair in enumerate(pinged, 1):
            rate = iperf_pair(network, *pair, seconds=bandwidth_seconds)
            metrics = pinged[pair]
            links[pair] = LinkMetrics(
                rtt_ms=metrics.rtt_ms,
                bandwidth_mbps=rate,
                loss_ratio=metrics.loss_ratio,
                jitter_ms=metrics.jitter_ms,
                samples=metrics.samples,
                measured_at_s=metrics.measured_at_s,
            )
            progress(f"iperf3 {index}/{len(pinged)}: {pair[0]} -> {pair[1]} {rate or 0:.0f} Mbit/s")
    finally:
        for server in servers:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=5)
    return Topology.from_links(links, network.nodes)
