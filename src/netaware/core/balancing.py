"""Load-balancing policies behind one interface, so the router and its benchmark compare them on equal terms.

- `random`: a replica uniformly at random (what kube-proxy does).
- `round-robin`: replicas in turn.
- `least-request`: power of two choices on the requests this router has in flight to each replica (Envoy's
  LEAST_REQUEST): a strong baseline that needs no probes but only sees its own traffic.
- `p2c-peak-ewma`: power of two choices on peak-EWMA latency x (requests in flight + 1), as Linkerd balances (tower's
  PeakEwma: 10-s decay, 30-ms default RTT): the balancer most meshes ship.
- `lowest-latency`: Aviator-style: every `refresh_s` the router probes every replica, then sends everything to the
  one with the lowest latency estimate until the next refresh. Simple, and it herds.
- `prequal`: the Prequal probe pool with hot-cold lexicographic selection and error aversion (core/selection.py).

Pure: the router calls `choose` per request, `probe_targets` for probes to send now, and reports probe answers and
request outcomes back; the clock and random source come from outside.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from netaware.core.selection import Probe, ProbeAnswer, ProbePool, SelectionSettings, untried


class Balancer(Protocol):
    name: ClassVar[str]

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        """The replica for one request; `exclude` holds replicas this request already tried (avoided if possible)."""
        ...

    def probe_targets(self, replicas: Sequence[str], *, now_s: float, query: bool) -> list[str]:
        """Replicas to probe now: `query` is True when called for a request, False from the idle timer."""
        ...

    def on_probe(self, replica: str, answer: ProbeAnswer, *, now_s: float) -> None:
        """A probe's answer from `replica`, received at `now_s`."""

    def on_start(self, replica: str) -> None: ...

    def on_finish(self, replica: str, *, ok: bool, now_s: float, latency_ms: float | None = None) -> None:
        """One request to `replica` ended, after `latency_ms` (None: not timed)."""
        ...

    def state(self) -> dict[str, object]:
        """What the policy knows, for the router's /v1/state."""
        ...


@dataclass
class _InFlight:
    """Requests this router has in flight per replica (every policy keeps it: /v1/state and least-request use it)."""

    in_flight: dict[str, int] = field(default_factory=dict)

    def on_start(self, replica: str) -> None:
        self.in_flight[replica] = self.in_flight.get(replica, 0) + 1

    def on_finish(self, replica: str, *, ok: bool, now_s: float, latency_ms: float | None = None) -> None:
        self.in_flight[replica] = max(0, self.in_flight.get(replica, 0) - 1)

    def on_probe(self, replica: str, answer: ProbeAnswer, *, now_s: float) -> None:
        return None

    def probe_targets(self, replicas: Sequence[str], *, now_s: float, query: bool) -> list[str]:
        return []

    def state(self) -> dict[str, object]:
        return {"inFlight": dict(self.in_flight)}


@dataclass
class RandomBalancer(_InFlight):
    name: ClassVar[str] = "random"
    rng: random.Random = field(default_factory=random.Random)

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        return self.rng.choice(untried(replicas, exclude))


@dataclass
class RoundRobinBalancer(_InFlight):
    name: ClassVar[str] = "round-robin"
    next_index: int = 0

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        candidates = untried(replicas, exclude)
        chosen = candidates[self.next_index % len(candidates)]
        self.next_index += 1
        return chosen


@dataclass
class LeastRequestBalancer(_InFlight):
    name: ClassVar[str] = "least-request"
    rng: random.Random = field(default_factory=random.Random)

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        candidates = untried(replicas, exclude)
        if len(candidates) == 1:
            return candidates[0]
        first, second = self.rng.sample(candidates, 2)
        return first if self.in_flight.get(first, 0) <= self.in_flight.get(second, 0) else second


@dataclass
class PeakEwmaBalancer(_InFlight):
    """Linkerd's balancer: tower's PeakEwma load under power of two choices. A replica's cost is its latency estimate
    x (requests in flight + 1). A latency above the estimate replaces it at once (the peak); one below pulls it down
    with weight 1 - exp(-elapsed / decay_s) since the last update; reading the cost decays it towards 0 the same way,
    so a replica left alone is tried again. A replica never timed starts at `default_rtt_ms`. Failures update the
    estimate like successes (tower's rule: a replica that fails fast looks fast, the weakness error aversion fixes)."""

    name: ClassVar[str] = "p2c-peak-ewma"
    decay_s: float = 10.0
    default_rtt_ms: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    estimate_ms: dict[str, float] = field(default_factory=dict)
    updated_s: dict[str, float] = field(default_factory=dict)

    def _update(self, replica: str, sample_ms: float, now_s: float) -> float:
        estimate = self.estimate_ms.get(replica, self.default_rtt_ms)
        if sample_ms > estimate:
            estimate = sample_ms
        else:
            decay = math.exp(-max(0.0, now_s - self.updated_s.get(replica, now_s)) / self.decay_s)
            estimate = estimate * decay + sample_ms * (1.0 - decay)
        self.estimate_ms[replica], self.updated_s[replica] = estimate, now_s
        return estimate

    def cost(self, replica: str, *, now_s: float) -> float:
        return self._update(replica, 0.0, now_s) * (self.in_flight.get(replica, 0) + 1)

    def on_finish(self, replica: str, *, ok: bool, now_s: float, latency_ms: float | None = None) -> None:
        super().on_finish(replica, ok=ok, now_s=now_s)
        if latency_ms is not None:
            self._update(replica, latency_ms, now_s)

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        candidates = untried(replicas, exclude)
        if len(candidates) == 1:
            return candidates[0]
        first, second = self.rng.sample(candidates, 2)
        return first if self.cost(first, now_s=now_s) <= self.cost(second, now_s=now_s) else second

    def state(self) -> dict[str, object]:
        return {**super().state(), "peakEwmaMs": {r: round(v, 3) for r, v in self.estimate_ms.items()}}


@dataclass
class LowestLatencyBalancer(_InFlight):
    """All traffic to the replica whose last probe showed the lowest latency estimate (Aviator-style)."""

    name: ClassVar[str] = "lowest-latency"
    refresh_s: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    latest: dict[str, float] = field(default_factory=dict)
    last_refresh_s: float = float("-inf")

    def probe_targets(self, replicas: Sequence[str], *, now_s: float, query: bool) -> list[str]:
        if now_s - self.last_refresh_s < self.refresh_s:
            return []
        self.last_refresh_s = now_s
        return list(replicas)

    def on_probe(self, replica: str, answer: ProbeAnswer, *, now_s: float) -> None:
        self.latest[replica] = answer.latency_ms + answer.rtt_ms  # what the caller waits for, as Aviator measures it

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        candidates = untried(replicas, exclude)
        known = [r for r in candidates if r in self.latest]
        if not known:
            return self.rng.choice(candidates)
        return min(known, key=lambda r: self.latest[r])

    def state(self) -> dict[str, object]:
        return {**super().state(), "latencyMs": dict(self.latest)}


@dataclass
class PrequalBalancer(_InFlight):
    """Prequal: probes per query and when idle, hot-cold lexicographic choice over the pool, error aversion."""

    name: ClassVar[str] = "prequal"
    settings: SelectionSettings = field(default_factory=SelectionSettings)
    rng: random.Random = field(default_factory=random.Random)
    pool: ProbePool = field(init=False)
    last_probe_s: float = float("-inf")
    probed_at_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool = ProbePool(self.settings)

    def probe_targets(self, replicas: Sequence[str], *, now_s: float, query: bool) -> list[str]:
        stale = [r for r in replicas if now_s - self.probed_at_s.get(r, float("-inf")) >= self.settings.fresh_probe_s]
        if query:
            targets = self.pool.probe_targets(stale, self.rng)
        elif now_s - self.last_probe_s >= self.settings.idle_probe_interval_s and stale:
            targets = [self.rng.choice(stale)]
        else:
            targets = []
        for target in targets:
            self.probed_at_s[target] = now_s
        if targets:
            self.last_probe_s = now_s
        return targets

    def on_probe(self, replica: str, answer: ProbeAnswer, *, now_s: float) -> None:
        """Our own requests are counted by us, from the moment we send each until it ends, instead of as the
        replica saw them (`yours`, subtracted): `at_replica` of one each, the share of its time it spends there."""
        at_replica, latency_ms = 1.0, answer.latency_ms
        if self.settings.count_probe_rtt:
            if latency_ms > 0:  # an estimate of how long a request stays at the replica: the rest is the network
                at_replica = latency_ms / (latency_ms + answer.rtt_ms)
            latency_ms += answer.rtt_ms
        ours, others = self.in_flight.get(replica, 0), max(0, answer.rif - answer.yours)
        self.pool.add(Probe(replica, rif=others + ours * at_replica, latency_ms=latency_ms, received_at_s=now_s,
                            ours=ours, at_replica=at_replica, per_request_ms=answer.per_request_ms,
                            priced_rif=answer.rif))  # fmt: skip

    def on_finish(self, replica: str, *, ok: bool, now_s: float, latency_ms: float | None = None) -> None:
        super().on_finish(replica, ok=ok, now_s=now_s)
        self.pool.request_ended(replica)
        self.pool.record_outcome(replica, ok=ok, now_s=now_s)

    def choose(self, replicas: Sequence[str], *, now_s: float, exclude: frozenset[str] = frozenset()) -> str:
        return self.pool.select(replicas, now_s=now_s, rng=self.rng, exclude=exclude)

    def state(self) -> dict[str, object]:
        return {
            **super().state(),
            "pool": [
                {
                    "replica": p.replica,
                    "rif": round(p.rif, 3),
                    "latencyMs": round(p.expected_latency_ms(), 3),
                    "uses": p.uses,
                }
                for p in self.pool.probes
            ],
            "errorRatio": {r: round(self.pool.error_ratio(r), 3) for r in self.pool.outcomes},
        }


POLICIES = ("random", "round-robin", "least-request", "p2c-peak-ewma", "lowest-latency", "prequal")


def make_balancer(policy: str, *, seed: int | None = None, settings: SelectionSettings | None = None) -> Balancer:
    """A fresh balancer for `policy` (one of POLICIES)."""
    rng = random.Random(seed)
    match policy:
        case "random":
            return RandomBalancer(rng=rng)
        case "round-robin":
            return RoundRobinBalancer()
        case "least-request":
            return LeastRequestBalancer(rng=rng)
        case "p2c-peak-ewma":
            return PeakEwmaBalancer(rng=rng)
        case "lowest-latency":
            return LowestLatencyBalancer(rng=rng)
        case "prequal":
            return PrequalBalancer(settings=settings or SelectionSettings(), rng=rng)
    raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
