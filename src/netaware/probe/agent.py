"""`netaware-probe`: the per-node agent. Each round it pings its peers with real ICMP (icmplib, N probes each,
all peers at once), reports median RTT, jitter and loss counts to the aggregator with a bearer token, and keeps
what it could not deliver.

- Peers: every member in a small cluster, a rendezvous-hashed sample of `peer_limit` in a large one, rotating per
  round (`core/peers.py`), so each node's probing cost is bounded whatever the cluster size.
- Delivery: a report that cannot be posted (aggregator down, 5xx, timeout) waits in a bounded buffer and is
  retried with exponential backoff (0.5 s doubling to 30 s), oldest first; when the buffer is full the oldest
  report is dropped and counted. A 4xx is the report's fault: it is logged and dropped, never retried forever.
- `netns`: measure from inside this network namespace (the lab's nodes), while talking to the aggregator from
  where the agent runs (a management network, as a DaemonSet on the host network would).

- Bandwidth: the agent runs an iperf3 server, and asks the aggregator's bandwidth plan what to do in the current
  slot; when it is the client of a peer it runs one bounded iperf3 test (`-J`) and reports the Mbit/s with the
  next round. The plan never puts a node in two tests at once (a server serves one test at a time).
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import icmplib
import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from netaware import icmp
from netaware.core.peers import DEFAULT_PROBES_PER_PEER, ProbePlanner, select_peers
from netaware.iperf import OMIT_S, measure_mbps, server_command

log = logging.getLogger("netaware.probe")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


FIXED_PROBES = 20
"""Without a budget: ICMP probes per peer and round."""
FIXED_PEER_LIMIT = 50
"""Without a budget: peers per round at most."""


@dataclass(frozen=True)
class AgentSettings:
    node: str
    peers: Mapping[str, str]
    """Peer node name -> IP address to ping."""
    aggregator_url: str
    token: str
    probes: int = FIXED_PROBES
    interval_s: float = 0.05
    round_s: float = 10.0
    peer_limit: int = FIXED_PEER_LIMIT
    buffer_size: int = 360
    """Reports kept while the aggregator is unreachable (an hour of 10-s rounds)."""
    netns: str | None = None
    bandwidth: bool = True
    """Take part in the aggregator's bandwidth plan (iperf3)."""
    probes_per_second: float | None = None
    """A probe budget (`core.peers.ProbePlanner`): this many probes per second on average, spent on a duty share
    of the zone pairs and a rotation over every node, `DEFAULT_PROBES_PER_PEER` per peer; rounds are numbered from
    the clock so that every agent agrees which round it is. None: `probes` to up to `peer_limit` peers."""

    def __post_init__(self) -> None:
        if self.probes < 1 or self.interval_s <= 0 or self.round_s <= 0 or self.buffer_size < 1:
            raise ValueError("probes and buffer_size must be >= 1, interval and round > 0")
        if self.probes_per_second is not None and self.probes_per_second * self.round_s < DEFAULT_PROBES_PER_PEER:
            raise ValueError(
                f"a budget of {self.probes_per_second:g} probes/s over {self.round_s:g}-s rounds is less than one "
                f"peer's {DEFAULT_PROBES_PER_PEER} probes per round"
            )


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rtt = Histogram(
            "netaware_probe_rtt_seconds", "Median RTT per peer and round", ["peer"], registry=registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        )  # fmt: skip
        self.loss = Gauge("netaware_probe_loss_ratio", "Loss in the last round", ["peer"], registry=registry)
        self.reports = Counter("netaware_probe_reports", "Reports by outcome", ["outcome"], registry=registry)
        self.bandwidth = Gauge(
            "netaware_probe_bandwidth_mbps", "Last iperf3 result per peer", ["peer"], registry=registry
        )
        self.buffered = Gauge("netaware_probe_reports_buffered", "Reports waiting for delivery", registry=registry)


Pinger = Callable[[list[str], int, float], list[icmplib.Host]]


def icmp_pinger(netns: str | None) -> Pinger:
    """Ping addresses concurrently with real ICMP, inside `netns` when given."""

    def ping(addresses: list[str], count: int, interval_s: float) -> list[icmplib.Host]:
        def run() -> list[icmplib.Host]:
            return icmp.ping(addresses, count=count, interval_s=interval_s)

        if netns is None:
            return run()
        from netaware.netns import run_in

        return run_in(netns, run, timeout_s=count * interval_s + icmp.DEFAULT_TIMEOUT_S + 30)

    return ping


@dataclass
class ProbeAgent:
    settings: AgentSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    pinger: Pinger | None = None
    peer_source: Callable[[], Mapping[str, str]] | None = None
    """Where the peers come from each round (the cluster's Nodes); None: `settings.peers`."""
    zone_source: Callable[[], Mapping[str, str]] | None = None
    """Every node's zone, for the probe budget's zone duty (nodes without one share the zone "")."""
    clock: Callable[[], float] = time.time
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    round_index: int = 0
    bandwidth_mbps: dict[str, float] = field(default_factory=dict)
    """Results of bandwidth tests since the last report, per peer."""
    tested_slot: float = -1.0

    def __post_init__(self) -> None:
        self.metrics = AgentMetrics(self.registry)
        self._ping = self.pinger or icmp_pinger(self.settings.netns)
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {self.settings.token}"
        self._backoff_s = 0.0
        self._next_attempt_s = 0.0
        self.peers: dict[str, str] = dict(self.settings.peers)
        self._planner: ProbePlanner | None = None
        self._planner_key: tuple[tuple[str, str], ...] = ()
        self._zones: Mapping[str, str] = {}

    def measure(self) -> dict[str, Any]:
        """One round: ping this round's peers, return the report."""
        if self.peer_source is not None:
            try:
                self.peers = {n: a for n, a in self.peer_source().items() if n != self.settings.node}
            except Exception as error:  # the API is away: keep last round's peers
                log.warning("listing peers failed", extra={"error": str(error)})
        members = [self.settings.node, *self.peers]
        probes = self.settings.probes
        if self.settings.probes_per_second is None:
            chosen = select_peers(self.settings.node, members, limit=self.settings.peer_limit,
                                  round_index=self.round_index)  # fmt: skip
        else:
            chosen = [p for p in self.budgeted_peers(members) if p in self.peers]
            probes = DEFAULT_PROBES_PER_PEER
        self.round_index += 1
        hosts = self._ping([self.peers[p] for p in chosen], probes, self.settings.interval_s)
        # Stamped when the round's data is complete (probes x interval plus the last probe's timeout), so that
        # freshness counts from what the data describes.
        measured_at = self.clock()
        peers = []
        for peer, host in zip(chosen, hosts, strict=True):
            entry: dict[str, Any] = {"peer": peer, "sent": host.packets_sent, "received": host.packets_received}
            if host.packets_received:
                rtt_ms = statistics.median(host.rtts)  # robust to one probe delayed by a busy moment
                entry |= {"rttMs": round(rtt_ms, 4), "jitterMs": round(host.jitter, 4)}
                self.metrics.rtt.labels(peer).observe(rtt_ms / 1e3)
            self.metrics.loss.labels(peer).set(host.packet_loss)
            if peer in self.bandwidth_mbps:
                entry["bandwidthMbps"] = round(self.bandwidth_mbps.pop(peer), 3)
            peers.append(entry)
        return {"node": self.settings.node, "measuredAt": measured_at, "peers": peers}

    def budgeted_peers(self, members: list[str]) -> list[str]:
        """This round's peers under the probe budget; the planner is rebuilt only when the membership changes."""
        zones: Mapping[str, str] = {}
        if self.zone_source is not None:
            try:
                zones = self.zone_source()
            except Exception as error:  # the API is away: last round's zones
                log.warning("listing zones failed", extra={"error": str(error)})
                zones = self._zones
        self._zones = zones
        key = tuple(sorted((m, zones.get(m, "")) for m in members))
        if self._planner is None or key != self._planner_key:
            assert self.settings.probes_per_second is not None
            budget = int(self.settings.probes_per_second * self.settings.round_s)
            self._planner = ProbePlanner(dict(key), probes_per_round=budget)
            self._planner_key = key
        return self._planner.peers(self.settings.node, int(self.clock() // self.settings.round_s))

    def follow_bandwidth_plan(self) -> str | None:
        """Ask the plan for the current slot; as its client, run the test (once per slot). The peer tested, if any."""
        try:
            answer = self._session.get(
                f"{self.settings.aggregator_url}/v1/bandwidth-plan", params={"node": self.settings.node}, timeout=5
            )
            answer.raise_for_status()
            plan = answer.json()
        except (requests.RequestException, ValueError):
            return None
        peer = str(plan.get("peer"))
        if plan.get("role") != "client" or plan["slotStart"] == self.tested_slot or peer not in self.peers:
            return None
        self.tested_slot = plan["slotStart"]
        seconds = min(float(plan["seconds"]), max(1.0, plan["slotEnd"] - self.clock() - 1.0 - OMIT_S))
        mbps = measure_mbps(self.peers[peer], seconds=seconds, netns=self.settings.netns)
        if mbps is not None:
            self.bandwidth_mbps[peer] = mbps
            self.metrics.bandwidth.labels(peer).set(mbps)
        return peer

    def start_iperf_server(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            server_command(self.settings.netns), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def enqueue(self, report: dict[str, Any]) -> None:
        if len(self.pending) >= self.settings.buffer_size:
            self.pending.popleft()
            self.dropped += 1
            self.metrics.reports.labels("dropped").inc()
        self.pending.append(report)
        self.metrics.buffered.set(len(self.pending))

    def deliver(self, now_s: float | None = None) -> int:
        """Post buffered reports, oldest first, until one fails; returns how many were delivered."""
        now = time.monotonic() if now_s is None else now_s
        if now < self._next_attempt_s:
            return 0
        delivered = 0
        while self.pending:
            report = self.pending[0]
            try:
                answer = self._session.post(f"{self.settings.aggregator_url}/v1/reports", json=report, timeout=5)
            except requests.RequestException as error:
                self._back_off(now, f"{type(error).__name__}")
                break
            if answer.status_code >= 500 or answer.status_code == 429:
                self._back_off(now, f"HTTP {answer.status_code}")
                break
            self.pending.popleft()
            if answer.status_code >= 400:  # the aggregator refuses this report for what it says: never retry it
                self.metrics.reports.labels("refused").inc()
                log.warning("report refused", extra={"status": answer.status_code, "answer": answer.text[:500]})
            else:
                delivered += 1
                self.metrics.reports.labels("delivered").inc()
            self._backoff_s = 0.0
        self.metrics.buffered.set(len(self.pending))
        return delivered

    def _back_off(self, now: float, reason: str) -> None:
        self._backoff_s = min(BACKOFF_MAX_S, self._backoff_s * 2 or BACKOFF_START_S)
        self._next_attempt_s = now + self._backoff_s
        log.info("aggregator unreachable", extra={"reason": reason, "retryInS": self._backoff_s,
                                                    "buffered": len(self.pending)})  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        """Measure every `round_s`, follow the bandwidth plan and deliver (with retries in between) until `stop`."""
        server = self.start_iperf_server() if self.settings.bandwidth else None
        next_round = time.monotonic()
        try:
            while not stop.is_set():
                if time.monotonic() >= next_round:
                    next_round += self.settings.round_s
                    try:
                        self.enqueue(self.measure())
                    except (OSError, icmplib.ICMPLibError) as error:
                        log.warning("probe round failed", extra={"error": str(error)})
                self.deliver()
                if self.settings.bandwidth:
                    self.follow_bandwidth_plan()
                stop.wait(min(0.5, max(0.0, next_round - time.monotonic())))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=5)
