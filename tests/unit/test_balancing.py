"""Balancing policies (core/balancing.py) behind the router: each policy's rule, with a fixed clock and random source.

Checks: round-robin takes turns and skips replicas a retry already tried; least-request prefers the replica with
fewer requests in flight; lowest-latency probes everyone once per refresh and sends everything to the fastest
(herding, by design); p2c-peak-ewma takes a slower latency at once as its peak, decays towards a faster one and
towards 0 when idle (tower's rule, 10-s decay), starts unknown replicas at 30 ms and weighs requests in flight;
prequal issues r_probe probes per query and one when idle, chooses by HCL from its pool, avoids a replica that fails
fast, and honours `exclude` for retries; it adds each probe's round trip to the replica's latency (so the near of
two equal replicas wins), unless asked for server-side latency only, as the paper's parameters do; unknown policies
are refused.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from netaware.core.balancing import (
    POLICIES,
    LeastRequestBalancer,
    LowestLatencyBalancer,
    PeakEwmaBalancer,
    PrequalBalancer,
    RoundRobinBalancer,
    make_balancer,
)
from netaware.core.selection import PAPER_UPKEEP, ProbeAnswer, SelectionSettings

REPLICAS = ["a", "b", "c", "d"]


def test_round_robin_takes_turns_and_skips_tried_replicas() -> None:
    balancer = RoundRobinBalancer()
    assert [balancer.choose(REPLICAS, now_s=0) for _ in range(5)] == ["a", "b", "c", "d", "a"]
    assert balancer.choose(REPLICAS, now_s=0, exclude=frozenset({"b", "c"})) in {"a", "d"}


def test_least_request_prefers_fewer_requests_in_flight() -> None:
    balancer = LeastRequestBalancer(rng=random.Random(3))
    for _ in range(5):
        balancer.on_start("a")
    picks = Counter(balancer.choose(["a", "b"], now_s=0) for _ in range(50))
    assert picks == {"b": 50}
    for _ in range(5):
        balancer.on_finish("a", ok=True, now_s=0)
    balancer.on_start("b")
    assert balancer.choose(["a", "b"], now_s=0) == "a"


def test_peak_ewma_takes_the_peak_at_once_and_decays_towards_faster_samples_and_idle() -> None:
    balancer = PeakEwmaBalancer(rng=random.Random(0))
    assert balancer.cost("a", now_s=0.0) == pytest.approx(30.0)  # never timed: the 30-ms default
    balancer.on_start("a")
    balancer.on_finish("a", ok=True, now_s=0.0, latency_ms=100.0)
    assert balancer.estimate_ms["a"] == 100.0  # slower than the estimate: the peak, at once
    balancer.on_start("a")
    balancer.on_finish("a", ok=True, now_s=1.0, latency_ms=10.0)  # faster: pulled down by 1 - exp(-1/10)
    decay = math.exp(-1.0 / 10.0)
    assert balancer.estimate_ms["a"] == pytest.approx(100.0 * decay + 10.0 * (1 - decay))
    before = balancer.estimate_ms["a"]
    assert balancer.cost("a", now_s=11.0) == pytest.approx(before * math.exp(-1.0))  # idle: decays towards 0


def test_peak_ewma_weighs_requests_in_flight_and_honours_exclude() -> None:
    balancer = PeakEwmaBalancer(rng=random.Random(1))
    for replica, latency in (("a", 10.0), ("b", 40.0)):
        balancer.on_start(replica)
        balancer.on_finish(replica, ok=True, now_s=0.0, latency_ms=latency)
    assert Counter(balancer.choose(["a", "b"], now_s=0.0) for _ in range(20)) == {"a": 20}
    for _ in range(4):
        balancer.on_start("a")  # 10 ms x 5 = 50 against 40 ms x 1
    assert balancer.choose(["a", "b"], now_s=0.0) == "b"
    assert balancer.choose(["a", "b"], now_s=0.0, exclude=frozenset({"b"})) == "a"
    assert make_balancer("p2c-peak-ewma").name == "p2c-peak-ewma"


def test_lowest_latency_probes_all_once_per_refresh_and_herds() -> None:
    balancer = LowestLatencyBalancer(refresh_s=0.5, rng=random.Random(0))
    assert balancer.probe_targets(REPLICAS, now_s=0.0, query=True) == REPLICAS
    assert balancer.probe_targets(REPLICAS, now_s=0.2, query=False) == []
    for replica, latency in zip(REPLICAS, [9.0, 3.0, 5.0, 4.0], strict=True):
        balancer.on_probe(replica, ProbeAnswer(rif=0, latency_ms=latency), now_s=0.1)
    assert Counter(balancer.choose(REPLICAS, now_s=0.3) for _ in range(20)) == {"b": 20}
    assert balancer.choose(REPLICAS, now_s=0.3, exclude=frozenset({"b"})) == "d"
    assert balancer.probe_targets(REPLICAS, now_s=0.6, query=True) == REPLICAS


def test_prequal_probes_per_query_and_when_idle() -> None:
    balancer = PrequalBalancer(settings=SelectionSettings(probes_per_query=2, idle_probe_interval_s=0.05))
    targets = balancer.probe_targets(REPLICAS, now_s=0.0, query=True)
    assert len(targets) == 2 and len(set(targets)) == 2
    assert balancer.probe_targets(REPLICAS, now_s=0.01, query=False) == []  # a query probed just now
    assert len(balancer.probe_targets(REPLICAS, now_s=0.07, query=False)) == 1


def test_prequal_chooses_cold_and_fast_and_honours_exclude() -> None:
    balancer = PrequalBalancer(settings=SelectionSettings(remove_worst_every=0), rng=random.Random(1))
    for replica, rif, latency in [("a", 9, 1.0), ("b", 1, 20.0), ("c", 1, 5.0), ("d", 2, 8.0)]:
        balancer.on_probe(replica, ProbeAnswer(rif=rif, latency_ms=latency), now_s=0.0)
    assert balancer.choose(REPLICAS, now_s=0.1) == "c"  # a is hot (RIF 9), c is the fastest cold one
    assert balancer.choose(REPLICAS, now_s=0.1, exclude=frozenset({"c"})) == "d"
    assert any(p.replica == "c" for p in balancer.pool.probes)  # the retry left c's probe in the pool


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(SelectionSettings(remove_worst_every=0), "near", id="the probe's round trip counts: near wins"),
        pytest.param(
            SelectionSettings(remove_worst_every=0, count_probe_rtt=False),
            "far",
            id="server-side latency only (the paper's): the far one",
        ),
    ],
)
def test_prequal_counts_what_the_caller_waits_for(settings: SelectionSettings, expected: str) -> None:
    balancer = PrequalBalancer(settings=settings, rng=random.Random(2))
    balancer.on_probe("near", ProbeAnswer(rif=0, latency_ms=3.0, rtt_ms=1.0), now_s=0.0)  # 3 ms of work, 1 ms away
    balancer.on_probe(
        "far", ProbeAnswer(rif=0, latency_ms=2.0, rtt_ms=40.0), now_s=0.0
    )  # 2 ms of work across a slow link
    assert balancer.choose(["near", "far"], now_s=0.1) == expected


@pytest.mark.parametrize(
    ("work_ms", "count_probe_rtt", "second"),
    [
        pytest.param(1.0, True, "near", id="1 ms of work 20 ms away: ours is a twentieth of a request there"),
        pytest.param(30.0, True, "far", id="30 ms of work: ours is most of a request there, the replica is busy"),
        pytest.param(1.0, False, "far", id="server-side only (the paper's): ours counts whole"),
    ],
)
def test_our_request_in_flight_counts_for_the_share_of_its_time_at_the_replica(
    work_ms: float, count_probe_rtt: bool, second: str
) -> None:
    """Two idle replicas, near (20 ms round trip) and far (40 ms): the first query goes near; while it is on its
    way, a second query sees the near replica with one of ours in flight, which is hot only if that request spends
    most of its time at the replica, not on the wire."""
    settings = SelectionSettings(remove_worst_every=0, reuse_budget=None, count_probe_rtt=count_probe_rtt)
    balancer = PrequalBalancer(settings=settings, rng=random.Random(3))
    balancer.on_probe("near", ProbeAnswer(rif=0, latency_ms=work_ms, rtt_ms=20.0), now_s=0.0)
    balancer.on_probe("far", ProbeAnswer(rif=0, latency_ms=work_ms + 0.5, rtt_ms=40.0), now_s=0.0)
    assert balancer.choose(["near", "far"], now_s=0.01) == "near"
    balancer.on_start("near")
    assert balancer.choose(["near", "far"], now_s=0.012) == second


@pytest.mark.parametrize(
    ("per_request_ms", "second"),
    [
        pytest.param(40.0, "b", id="one-slot replicas: ours in flight at a makes it 40 ms slower, b is next"),
        pytest.param(0.0, "a", id="a replica that does not say: its estimate stays as probed"),
    ],
)
def test_our_requests_move_a_probed_latency_estimate_by_what_each_adds(per_request_ms: float, second: str) -> None:
    """Two idle replicas whose estimates differ by noise (39 and 41 ms); hot-cold sees both cold at one request
    in flight. The estimate of a, which now has one of ours in flight, is 39 + 40 ms when the replica said one more
    request costs 40."""
    balancer = PrequalBalancer(settings=SelectionSettings(remove_worst_every=0), rng=random.Random(3))
    for replica, latency in (("a", 39.0), ("b", 41.0)):
        balancer.on_probe(replica, ProbeAnswer(rif=0, latency_ms=latency, per_request_ms=per_request_ms), now_s=0.0)
    balancer.on_probe(
        "c", ProbeAnswer(rif=1, latency_ms=80.0, per_request_ms=per_request_ms), now_s=0.0
    )  # busy: sets the quantile
    assert balancer.choose(["a", "b", "c"], now_s=0.01) == "a"
    balancer.on_start("a")
    assert balancer.choose(["a", "b", "c"], now_s=0.012) == second
    # The replica's estimate was for what it had in flight: a probe at one request in flight, ours among them.
    balancer.on_finish("a", ok=True, now_s=0.02)
    balancer.on_start("b")  # one of ours at b before its probe comes back
    balancer.on_probe(
        "b", ProbeAnswer(rif=1, yours=1, latency_ms=41.0 + per_request_ms, per_request_ms=per_request_ms), now_s=0.03
    )
    (probe_b,) = [p for p in balancer.pool.probes if p.replica == "b"]
    assert probe_b.expected_latency_ms() == pytest.approx(41.0 + per_request_ms)
    balancer.on_finish("b", ok=True, now_s=0.04)
    assert probe_b.expected_latency_ms() == pytest.approx(41.0)


def test_the_paper_parameters_count_server_side_latency_only() -> None:
    assert PAPER_UPKEEP["count_probe_rtt"] is False and SelectionSettings().count_probe_rtt is True


def test_prequal_avoids_a_replica_that_fails_fast() -> None:
    balancer = PrequalBalancer(rng=random.Random(7))
    picks: Counter[str] = Counter()
    now = 0.0
    for _ in range(2000):
        now += 0.001
        for target in balancer.probe_targets(REPLICAS, now_s=now, query=True):
            # "a" fails at once, so it looks idle and fast; the others are busy and slower.
            fast_failure = target == "a"
            balancer.on_probe(
                target, ProbeAnswer(rif=0 if fast_failure else 2, latency_ms=0.5 if fast_failure else 10.0), now_s=now
            )
        chosen = balancer.choose(REPLICAS, now_s=now)
        picks[chosen] += 1
        balancer.on_start(chosen)
        balancer.on_finish(chosen, ok=chosen != "a", now_s=now)
    assert picks["a"] / 2000 < 0.1, picks


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_answers_a_replica(policy: str) -> None:
    balancer = make_balancer(policy, seed=1)
    assert balancer.name == policy
    assert balancer.choose(REPLICAS, now_s=0.0) in REPLICAS
    assert isinstance(balancer.state(), dict)


def test_unknown_policy_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="prequal"):
        make_balancer("fastest")


def test_prequal_does_not_reprobe_a_freshly_probed_replica() -> None:
    balancer = PrequalBalancer(settings=SelectionSettings(probes_per_query=1, fresh_probe_s=0.005))
    assert balancer.probe_targets(["a"], now_s=0.0, query=True) == ["a"]
    assert balancer.probe_targets(["a"], now_s=0.004, query=True) == []  # probed 4 ms ago: no news yet
    assert balancer.probe_targets(["a"], now_s=0.006, query=True) == ["a"]


def test_prequal_forgets_old_errors_so_a_recovered_replica_gets_traffic_again() -> None:
    balancer = PrequalBalancer(settings=SelectionSettings(error_memory_s=5.0, remove_worst_every=0))
    for _ in range(10):
        balancer.on_finish("a", ok=False, now_s=0.0)
    balancer.on_probe("a", ProbeAnswer(rif=0, latency_ms=1.0), now_s=0.9)
    balancer.on_probe("b", ProbeAnswer(rif=0, latency_ms=9.0), now_s=0.9)
    assert balancer.choose(["a", "b"], now_s=1.0) == "b"  # a failed everything it was sent
    balancer.on_probe("a", ProbeAnswer(rif=0, latency_ms=1.0), now_s=6.0)
    balancer.on_probe("b", ProbeAnswer(rif=0, latency_ms=9.0), now_s=6.0)
    assert balancer.choose(["a", "b"], now_s=6.1) == "a"  # those failures are more than 5 s old
