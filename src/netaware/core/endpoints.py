"""Which of a Service's endpoints an AviatorPolicy keeps, from one round of probes (pure; the controller does I/O).

Algorithms (`spec.selection.algorithm`):
- `PrequalHCL`: the cold endpoints, hot-cold as in Prequal: an endpoint whose requests in flight (RIF) exceed the
  Q_RIF quantile of all probed endpoints is hot. kube-proxy then spreads traffic over the cold ones. If every
  endpoint is hot, the lowest-RIF ones are kept.
- `TopN`: the N endpoints with the lowest latency estimate.
- `Percentage`: the lowest-latency P% (rounded up, at least one).
- `Threshold`: endpoints whose latency estimate is at most `latencyThresholdMs`; if none, the single best.

Around every algorithm:
- Circuit breaker: an endpoint whose probes failed at least `errorRatio` of the last `minRequests` (or more) is
  excluded for `openDuration`; it is probed again after that (half-open) and closes after one good probe.
- Hysteresis: endpoints in the current selection rank with their latency (and RIF) reduced by `hysteresisRatio`,
  so a newcomer must be clearly better to replace one.
- Dampening: the selection changes at most once per `minChangeInterval`, except to drop endpoints that
  disappeared or whose breaker opened (never keep sending traffic to what is known broken).
- Never empty: with no healthy probed endpoint, every ready endpoint is selected (fail open): an empty
  EndpointSlice would turn a probing problem into an outage.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from netaware.core.selection import interpolated_quantile

ALGORITHMS = ("PrequalHCL", "TopN", "Percentage", "Threshold")


@dataclass(frozen=True)
class EndpointProbe:
    endpoint: str
    ok: bool
    rif: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class SelectionPolicy:
    algorithm: str = "PrequalHCL"
    top_n: int = 1
    percentage: int = 50
    latency_threshold_ms: float = math.inf
    hot_quantile: float = 0.8
    breaker_error_ratio: float = 0.5
    breaker_min_requests: int = 3
    breaker_open_s: float = 30.0
    min_change_interval_s: float = 0.0
    hysteresis_ratio: float = 0.0
    probe_pool_size: int = 16
    """`probePoolSize`: endpoints whose latest probe is kept; the selection is made among them."""
    probes_per_evaluation: float = 3.0
    """`probesPerQuery` (an evaluation is the controller's query): endpoints probed per evaluation, rounded up, at
    least one; the least recently probed go first, so every ready endpoint is probed in turn."""

    def __post_init__(self) -> None:
        if self.probe_pool_size < 1 or self.probes_per_evaluation < 0:
            raise ValueError("probePoolSize must be >= 1 and probesPerQuery >= 0")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; choose from {', '.join(ALGORITHMS)}")
        if self.top_n < 1 or not 1 <= self.percentage <= 100 or self.breaker_min_requests < 1:
            raise ValueError("topN and minRequests must be >= 1, percentage within 1..100")
        if not 0 <= self.hot_quantile <= 1 or not 0 <= self.hysteresis_ratio < 1:
            raise ValueError("hotQuantile must be within 0..1 and hysteresisRatio within 0..1 (exclusive)")


@dataclass
class EndpointSelector:
    """State kept per AviatorPolicy between evaluations: probe history (breaker) and the current selection."""

    policy: SelectionPolicy
    history: dict[str, deque[bool]] = field(default_factory=dict)
    open_until_s: dict[str, float] = field(default_factory=dict)
    selected: tuple[str, ...] = ()
    changed_at_s: float = -math.inf
    pool: dict[str, tuple[float, EndpointProbe]] = field(default_factory=dict)
    """endpoint -> (when, its latest probe), at most `probe_pool_size` of them."""
    probed_at_s: dict[str, float] = field(default_factory=dict)
    """Every ready endpoint's last probe, pool or not: the rotation's order."""

    def probe_targets(self, ready: Sequence[str]) -> list[str]:
        """The endpoints to probe this evaluation: `probes_per_evaluation` of them (rounded up, at least one), those
        probed longest ago first (never probed: first of all), so a large Service is probed in rotation."""
        count = max(1, math.ceil(self.policy.probes_per_evaluation))
        ordered = sorted(ready, key=lambda e: (self.probed_at_s.get(e, -math.inf), e))
        return ordered[:count]

    def pooled(self) -> list[EndpointProbe]:
        """The pool's probes, freshest first."""
        return [probe for _, probe in sorted(self.pool.values(), key=lambda entry: -entry[0])]

    def _pool(self, probes: Sequence[EndpointProbe], ready: set[str], now_s: float) -> None:
        for probe in probes:
            self.pool[probe.endpoint] = (now_s, probe)
            self.probed_at_s[probe.endpoint] = now_s
        for gone in set(self.pool) - ready:
            del self.pool[gone]
        for gone in set(self.probed_at_s) - ready:
            del self.probed_at_s[gone]
        while len(self.pool) > self.policy.probe_pool_size:  # the oldest go: a full pool keeps the freshest
            del self.pool[min(self.pool, key=lambda e: (self.pool[e][0], e))]

    def _record(self, probe: EndpointProbe, now_s: float) -> None:
        window = self.history.setdefault(probe.endpoint, deque(maxlen=max(self.policy.breaker_min_requests, 10)))
        window.append(probe.ok)
        if probe.endpoint in self.open_until_s:
            if now_s < self.open_until_s[probe.endpoint]:
                return
            if probe.ok:  # half-open and answered: close
                del self.open_until_s[probe.endpoint]
                window.clear()
                window.append(True)
                return
        recent = list(window)[-self.policy.breaker_min_requests :]
        failed = recent.count(False)
        if len(recent) >= self.policy.breaker_min_requests and failed / len(recent) >= self.policy.breaker_error_ratio:
            self.open_until_s[probe.endpoint] = now_s + self.policy.breaker_open_s

    def breaker_open(self, endpoint: str, now_s: float) -> bool:
        return now_s < self.open_until_s.get(endpoint, -math.inf)

    def evaluate(self, probes: Sequence[EndpointProbe], *, ready: Sequence[str], now_s: float) -> tuple[str, ...]:
        """The endpoints to keep, given this round's probes of some of the `ready` endpoints: chosen among the
        pool's probes (this round's and the latest of those probed before)."""
        ready_set = set(ready)
        for probe in probes:
            self._record(probe, now_s)
        for gone in set(self.history) - ready_set:  # forget endpoints that left the Service
            self.history.pop(gone)
            self.open_until_s.pop(gone, None)
        self._pool(probes, ready_set, now_s)
        healthy = [p for p in self.pooled() if p.ok and not self.breaker_open(p.endpoint, now_s)]
        wanted = tuple(sorted(self._choose(healthy) if healthy else ready_set))
        still_good = {p.endpoint for p in healthy} if healthy else ready_set
        if wanted != self.selected:
            dampened = now_s - self.changed_at_s < self.policy.min_change_interval_s
            kept = tuple(e for e in self.selected if e in still_good)
            if dampened and kept:
                # Too soon for a new choice: only drop what is gone or broken.
                wanted = kept
            if wanted != self.selected:
                self.selected = wanted
                self.changed_at_s = now_s
        return self.selected

    def _choose(self, healthy: list[EndpointProbe]) -> list[str]:
        incumbents = set(self.selected)
        bonus = 1.0 - self.policy.hysteresis_ratio

        def latency(p: EndpointProbe) -> float:
            return p.latency_ms * (bonus if p.endpoint in incumbents else 1.0)

        def rif(p: EndpointProbe) -> float:
            return p.rif * (bonus if p.endpoint in incumbents else 1.0)

        ranked = sorted(healthy, key=lambda p: (latency(p), rif(p), p.endpoint))
        match self.policy.algorithm:
            case "TopN":
                return [p.endpoint for p in ranked[: self.policy.top_n]]
            case "Percentage":
                count = max(1, math.ceil(len(ranked) * self.policy.percentage / 100))
                return [p.endpoint for p in ranked[:count]]
            case "Threshold":
                within = [p.endpoint for p in ranked if latency(p) <= self.policy.latency_threshold_ms]
                return within or [ranked[0].endpoint]
        threshold = interpolated_quantile([p.rif for p in healthy], self.policy.hot_quantile)
        cold = [p.endpoint for p in healthy if rif(p) <= threshold]
        if cold:
            return cold
        lowest = min(rif(p) for p in healthy)
        return [p.endpoint for p in healthy if rif(p) == lowest]


def latency_percentiles(probes: Sequence[EndpointProbe], endpoints: Collection[str]) -> tuple[float, float]:
    """p50 and p99 of the latency estimates of `endpoints` (0, 0 when none was probed)."""
    values = [p.latency_ms for p in probes if p.ok and p.endpoint in endpoints]
    if not values:
        return 0.0, 0.0
    return interpolated_quantile(values, 0.5), interpolated_quantile(values, 0.99)
