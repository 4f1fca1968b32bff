"""Replica selection after Prequal (Wydrowski et al., "Load is not what you should balance", NSDI 2024).

A client keeps a small pool of recent probe results (replica, requests in flight, latency estimate). Each query
issues a few probes to random replicas (answered asynchronously, they refill the pool) and picks a replica from
the pool by the hot-cold lexicographic (HCL) rule:

    hot  = probes whose RIF is above the Q_RIF quantile of the pool's RIFs
    if some probe is cold: choose the cold probe with the lowest latency estimate
    else:                  choose the probe with the lowest RIF
    if the pool is empty:  choose a replica uniformly at random

Pool upkeep: a replica has at most one probe (the newest); a probe used `reuse_budget` times is dropped (each use
also counts one more request in flight on it, since we just sent one); probes older than `max_age_s` are
dropped; a full pool drops its oldest; and every `remove_worst_every` selections the worst probe (hottest, then
slowest) is dropped so a pool of stale good news cannot herd traffic.

Error aversion: a replica that fails fast looks like the fastest one and would attract ever more traffic
(sinkholing). Replicas whose recent error ratio exceeds `error_threshold` are treated as hot, whatever their
probe says, and are chosen from the pool only when every probe is of such a replica.

Pure: the clock (`now_s`) and the random source are passed in, so every rule is testable without sockets.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What a replica answered to a probe (`GET /netaware/probe`), and the probe's round trip."""

    rif: int
    """Requests in flight at the replica."""
    latency_ms: float
    """The replica's latency estimate for a query arriving now."""
    rtt_ms: float = 0.0
    """The probe's own round trip as the caller measured it (the network, and the replica's accept queue)."""
    yours: int = 0
    """How many of the requests in flight were the prober's."""
    per_request_ms: float = 0.0
    """How much one more request in flight adds to the replica's latency estimate."""


@dataclass(slots=True)
class Probe:
    replica: str
    rif: float
    """Requests in flight at the replica when it answered (plus what we sent since, `at_replica` each)."""
    latency_ms: float
    """The replica's latency estimate for a query arriving at `priced_rif` requests in flight, plus the probe's round
    trip (see `expected_latency_ms`)."""
    received_at_s: float
    uses: int = 0
    ours: int = 0
    """Our requests to the replica still in flight (those it had when it answered, less the replica's own count of
    them, and those sent since): counted in `rif` until each ends."""
    at_replica: float = 1.0
    """How much one of our requests adds to `rif`: the share of its time it spends at the replica rather than on the
    way there and back. A request to a replica 20 ms away that serves it in 1 ms is at the replica for 1 ms of 21:
    counted whole, it made the near replica hot for the whole round trip, and the next query went to the far one."""
    per_request_ms: float = 0.0
    """How much one more request in flight adds to the replica's latency estimate (0 from replicas that do not say)."""
    priced_rif: float = 0.0
    """The requests in flight the replica's estimate was for (its own count when it answered)."""

    def expected_latency_ms(self) -> float:
        """The latency estimate for a query sent now: the replica's estimate moved by `per_request_ms` for each
        request in flight we count there now beyond those it was for (ours sent since, less ours that ended).
        Without it, eight equal one-slot replicas at half load were all cold, a replica we had just sent a request to
        kept the estimate it had when idle, and the next query often joined its queue: p99 2.1x round-robin's."""
        return max(0.0, self.latency_ms + self.per_request_ms * (self.rif - self.priced_rif))


@dataclass(frozen=True, slots=True)
class SelectionSettings:
    pool_size: int = 16
    """Probes kept at most (Prequal's default)."""
    probes_per_query: float = 3.0
    """r_probe: probes issued per query; a fraction is issued with that probability."""
    hot_quantile: float = 0.8
    """Q_RIF: probes above this quantile of the pool's RIF are hot."""
    reuse_budget: int | None = 3
    """A probe is dropped after being chosen this many times. None: the paper's budget for the pool and replica
    count, b = max{1, (1 + delta) / ((1 - m/n) r_probe - r_remove)}, unlimited (up to `max_age_s`) when the
    denominator is not positive (a pool as large as the replica set cannot be refilled faster than it drains)."""
    reuse_margin: float = 1.0
    """delta of the paper's reuse budget."""
    max_age_s: float = 1.0
    """Probes older than this are dropped."""
    remove_worst_every: int = 8
    """Every this many selections, a probe is dropped: the worst, or (`alternate_removals`) the oldest and the worst
    in turn, as the paper's r_remove = 1 per query with `remove_worst_every` 1."""
    alternate_removals: bool = False
    min_probes: int = 1
    """Fewer usable probes than this: a random replica (the paper: 2)."""
    error_window: int = 20
    """Outcomes per replica remembered for error aversion."""
    error_threshold: float = 0.5
    """Replicas failing more than this share of recent requests are treated as hot."""
    error_memory_s: float = 5.0
    """Outcomes older than this are forgotten, so an avoided replica that recovered gets traffic again."""
    count_probe_rtt: bool = True
    """A probe's latency is the replica's estimate plus the probe's round trip as the caller measured it: the caller
    waits for the network too, so of two idle replicas the near one wins. Prequal's replicas report server-side
    latency only (its paper's setting, `False`), which cannot tell a replica in the caller's zone from one across a
    degraded link."""
    idle_probe_interval_s: float = 0.05
    """With no query for this long, the router still issues one probe, so the pool is fresh when traffic returns."""
    fresh_probe_s: float = 0.005
    """A replica probed this recently (answer in the pool or still awaited) is not probed again: with few
    replicas, r_probe per query would otherwise probe the same replica on every query, costing it as much as the
    traffic itself for no news."""

    def __post_init__(self) -> None:
        if self.pool_size < 1 or (self.reuse_budget is not None and self.reuse_budget < 1) or self.error_window < 1:
            raise ValueError("pool_size, reuse_budget and error_window must be >= 1")
        if not 0.0 <= self.hot_quantile <= 1.0 or not 0.0 <= self.error_threshold <= 1.0:
            raise ValueError("hot_quantile and error_threshold must be within 0..1")
        if self.probes_per_query < 0 or self.max_age_s <= 0 or self.fresh_probe_s < 0:
            raise ValueError("probes_per_query must be >= 0 and max_age_s > 0")


PAPER_UPKEEP: dict[str, Any] = {"reuse_budget": None, "remove_worst_every": 1, "alternate_removals": True,
                                 "min_probes": 2, "count_probe_rtt": False}  # fmt: skip
"""The Prequal paper's pool upkeep and latency signal (server-side only), as SelectionSettings fields (the router's
--paper-parameters)."""


@dataclass
class ProbePool:
    settings: SelectionSettings = field(default_factory=SelectionSettings)
    probes: list[Probe] = field(default_factory=list)
    selections: int = 0
    outcomes: dict[str, deque[tuple[float, bool]]] = field(default_factory=dict)
    """Per replica: (time, ok) of its recent requests."""

    # --- probing ------------------------------------------------------------------------------------------

    def probe_targets(self, replicas: Sequence[str], rng: random.Random) -> list[str]:
        """Replicas to probe for one query: r_probe of them, sampled without replacement."""
        whole = math.floor(self.settings.probes_per_query)
        count = whole + (1 if rng.random() < self.settings.probes_per_query - whole else 0)
        return rng.sample(list(replicas), min(count, len(replicas)))

    def add(self, probe: Probe) -> None:
        """A probe answer arrived: it replaces the replica's older probe; a full pool drops its oldest."""
        self.probes = [p for p in self.probes if p.replica != probe.replica]
        self.probes.append(probe)
        if len(self.probes) > self.settings.pool_size:
            self._remove_oldest()

    # --- outcomes (error aversion) ------------------------------------------------------------------------

    def request_ended(self, replica: str) -> None:
        """One of our requests to `replica` ended: the replica's probe in the pool stops counting it. Without this,
        where probes take longer to come back than queries take to arrive (a replica across a 20-ms link), our own
        requests kept the chosen replica hot after they had ended, and the choice alternated between a near replica
        and a far one."""
        for probe in self.probes:
            if probe.replica == replica and probe.ours:
                probe.ours -= 1
                probe.rif -= probe.at_replica
                return

    def record_outcome(self, replica: str, *, ok: bool, now_s: float = 0.0) -> None:
        window = self.outcomes.setdefault(replica, deque(maxlen=self.settings.error_window))
        window.append((now_s, ok))

    def error_ratio(self, replica: str) -> float:
        window = self.outcomes.get(replica)
        return 0.0 if not window else 1.0 - sum(ok for _, ok in window) / len(window)

    def _forget_outcomes(self, now_s: float) -> None:
        horizon = now_s - self.settings.error_memory_s
        for window in self.outcomes.values():
            while window and window[0][0] < horizon:
                window.popleft()

    def _erroring(self, replica: str) -> bool:
        return self.error_ratio(replica) > self.settings.error_threshold

    # --- selection ----------------------------------------------------------------------------------------

    def _expire(self, now_s: float) -> None:
        self.probes = [p for p in self.probes if now_s - p.received_at_s <= self.settings.max_age_s]

    def hot_threshold(self) -> float:
        """The Q_RIF quantile of the pool's RIFs, linearly interpolated (nearest-rank would make the 0.8-quantile
        of a small pool its maximum, so nothing could ever be above it)."""
        return interpolated_quantile([whole_requests(p.rif) for p in self.probes], self.settings.hot_quantile)

    def select(
        self, replicas: Sequence[str], *, now_s: float, rng: random.Random, exclude: frozenset[str] = frozenset()
    ) -> str:
        """The replica for one query, by HCL over the pool (random when the pool is empty). `exclude`: replicas
        this query already tried (a retry); their probes stay in the pool for the next query."""
        candidates = untried(replicas, exclude)
        self._expire(now_s)
        self._forget_outcomes(now_s)
        known = set(replicas)
        self.probes = [p for p in self.probes if p.replica in known]
        self.selections += 1
        if self.settings.remove_worst_every and self.selections % self.settings.remove_worst_every == 0:
            oldest = self.settings.alternate_removals and (self.selections // self.settings.remove_worst_every) % 2
            self._remove_oldest() if oldest else self._remove_worst()
        allowed = set(candidates)
        probed = [p for p in self.probes if p.replica in allowed]
        healthy = [p for p in probed if not self._erroring(p.replica)]
        if len(healthy) < self.settings.min_probes:  # too few to choose between: as with none
            healthy = []
        if not healthy:  # empty pool, or only erroring replicas in it: a random replica that is not erroring
            usable = [r for r in candidates if not self._erroring(r)]
            if usable or not probed:
                return rng.choice(usable or candidates)
            healthy = probed  # every replica is erroring: still prefer the least bad by HCL
        chosen = self._hot_cold(healthy)
        chosen.uses += 1
        chosen.rif += chosen.at_replica  # we are sending it one more request
        chosen.ours += 1
        if chosen.uses >= self.reuse_budget(len(replicas)):
            self.probes.remove(chosen)
        return chosen.replica

    def _hot_cold(self, candidates: list[Probe]) -> Probe:
        threshold = self.hot_threshold()
        cold = [p for p in candidates if whole_requests(p.rif) <= threshold]
        if cold:
            return min(cold, key=lambda p: (p.expected_latency_ms(), p.rif))
        return min(candidates, key=lambda p: (p.rif, p.expected_latency_ms()))

    def reuse_budget(self, replicas: int) -> float:
        if self.settings.reuse_budget is not None:
            return self.settings.reuse_budget
        removals = 1.0 / self.settings.remove_worst_every if self.settings.remove_worst_every else 0.0
        refill = (1.0 - self.settings.pool_size / max(1, replicas)) * self.settings.probes_per_query - removals
        return max(1.0, (1.0 + self.settings.reuse_margin) / refill) if refill > 0 else math.inf

    def _remove_oldest(self) -> None:
        if len(self.probes) > 1:
            self.probes.remove(min(self.probes, key=lambda p: p.received_at_s))

    def _remove_worst(self) -> None:
        if len(self.probes) > 1:
            # RIF in whole requests, as hot-cold compares it: a twentieth of one of ours is no reason to drop the probe
            # of the near replica and be left with the far one.
            worst = max(
                self.probes, key=lambda p: (self._erroring(p.replica), whole_requests(p.rif), p.expected_latency_ms())
            )
            self.probes.remove(worst)


def whole_requests(rif: float) -> int:
    """RIF as the hot-cold rule compares it: to the nearest whole request (half up), so that our own requests'
    shares, a twentieth of a request each across a 20-ms link, make no idle replica hot, while one of ours to a
    replica next door (most of its time spent there) still counts as the request it is."""
    return math.floor(rif + 0.5)


def untried(replicas: Sequence[str], exclude: frozenset[str]) -> list[str]:
    """The replicas a retry may go to: those not tried yet, or all of them once every one was."""
    if not replicas:
        raise ValueError("no replicas to choose from")
    return [r for r in replicas if r not in exclude] or list(replicas)


def interpolated_quantile(values: Sequence[float], quantile: float) -> float:
    """The `quantile` of `values`, linearly interpolated between the nearest ranks (numpy's default method)."""
    ordered = sorted(values)
    position = quantile * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class LatencyEstimator:
    """A replica's latency estimate for a query arriving now, from the last `window` requests' latencies and the
    requests in flight each found on arrival (RIF): the line through the median latency at each RIF (`line`).
    Prequal's replicas report the median at a similar RIF; the line prices every RIF on one scale, so a router that
    moves an estimate by what it sent since (`perRequestMs`) compares replicas fairly: in a discrete-event model of
    the benchmark, prequal's p99 on 8 equal one-slot replicas went from 1.10-1.59x round-robin's at 110-150% load to
    1.00-1.01x, and on the heterogeneous set from 0.99-1.83x P2C + peak-EWMA's at 110-150% to 0.74-0.77x."""

    window: int = 256
    samples: deque[tuple[int, float]] = field(default_factory=deque)

    def record(self, *, rif_at_arrival: int, latency_ms: float) -> None:
        self.samples.append((rif_at_arrival, latency_ms))
        while len(self.samples) > self.window:
            self.samples.popleft()

    def line(self) -> tuple[float, float]:
        """Latency against RIF at arrival as a line: (the latency at no request in flight, what each request more
        adds, at least 0). A least-squares fit to the median latency at each RIF seen, weighted by its samples
        (medians, so that one slow outlier does not tilt it); flat at the median with one RIF only; (0, 0) with no
        samples. A one-slot replica's slope is about its work time, a many-threaded one's about 0."""
        return latency_line(list(self.samples))


def latency_line(samples: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """`LatencyEstimator.line` of (RIF at arrival, latency ms) samples."""
    by_rif: dict[int, list[float]] = {}
    for rif, latency in samples:
        by_rif.setdefault(rif, []).append(latency)
    if not by_rif:
        return 0.0, 0.0
    rifs = np.fromiter(by_rif, dtype=float, count=len(by_rif))
    medians = np.fromiter((float(np.median(v)) for v in by_rif.values()), dtype=float, count=len(by_rif))
    weights = np.fromiter((len(v) for v in by_rif.values()), dtype=float, count=len(by_rif))
    mean_rif, mean_latency = np.average(rifs, weights=weights), np.average(medians, weights=weights)
    spread = rifs - mean_rif
    variance = float(weights @ spread**2)
    slope = max(0.0, float(weights @ (spread * (medians - mean_latency))) / variance) if variance > 0 else 0.0
    return float(mean_latency - slope * mean_rif), slope
