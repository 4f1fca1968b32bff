"""Prequal selection (core/selection.py): the HCL rule, pool upkeep and error aversion, with a fixed clock and
random source.

Checks: cold probe with the lowest latency wins; all hot -> lowest RIF; empty pool -> random; a chosen probe
counts one more request in flight until that request ends (unless a fresh probe replaced it) and is dropped after
its reuse budget; old probes expire; a full pool drops
its oldest; one probe per replica; the worst probe is removed periodically; probe targets are distinct and r_probe
many; a replica that fails fast is avoided (no sinkholing); settings are validated; the paper's upkeep: its reuse
budget for pool and replica count (unlimited when the pool cannot refill faster than it drains), one removal per
query alternating oldest and worst, random below two probes.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from netaware.core.selection import PAPER_UPKEEP, Probe, ProbePool, SelectionSettings

REPLICAS = ["r0", "r1", "r2", "r3", "r4"]


def pool(*probes: tuple[str, int, float], **settings: float) -> ProbePool:
    result = ProbePool(SelectionSettings(remove_worst_every=0, **settings))  # type: ignore[arg-type]
    for replica, rif, latency in probes:
        result.add(Probe(replica=replica, rif=rif, latency_ms=latency, received_at_s=0.0))
    return result


@pytest.mark.parametrize(
    ("probes", "expected"),
    [
        pytest.param(
            [("r0", 1, 50.0), ("r1", 1, 10.0), ("r2", 2, 5.0)],
            "r1",
            id="cold probe with lowest latency wins, hot r2 is skipped",
        ),
        pytest.param([("r0", 3, 50.0), ("r1", 3, 10.0)], "r1", id="equal RIF: all cold, lowest latency"),
        pytest.param(
            [("r0", 1, 9.0), ("r1", 1, 9.0), ("r2", 1, 9.0), ("r3", 1, 9.0), ("r4", 9, 1.0)],
            "r0",
            id="the fast replica with many requests in flight is hot and loses",
        ),
    ],
)
def test_hot_cold_lexicographic_rule(probes: list[tuple[str, int, float]], expected: str) -> None:
    assert pool(*probes).select(REPLICAS, now_s=0.5, rng=random.Random(1)) == expected


def test_quantile_is_interpolated() -> None:
    assert pool(("r0", 1, 1.0), ("r1", 1, 1.0), ("r2", 2, 1.0)).hot_threshold() == pytest.approx(1.6)


def test_when_every_healthy_probe_is_hot_the_lowest_rif_wins() -> None:
    # r0 is erroring (excluded) and holds the pool's low RIF, so both healthy probes are above the quantile.
    p = pool(("r0", 0, 1.0), ("r1", 6, 100.0), ("r2", 4, 200.0), hot_quantile=0.0)
    for _ in range(10):
        p.record_outcome("r0", ok=False)
    assert p.select(REPLICAS, now_s=0.1, rng=random.Random(0)) == "r2"


def test_empty_pool_picks_uniformly_at_random() -> None:
    rng = random.Random(7)
    counts = Counter(ProbePool().select(REPLICAS, now_s=0, rng=rng) for _ in range(5000))
    assert set(counts) == set(REPLICAS)
    assert max(counts.values()) / min(counts.values()) < 1.2


def test_a_chosen_probe_counts_a_request_and_is_dropped_after_its_reuse_budget() -> None:
    p = pool(("r0", 0, 1.0), ("r1", 5, 50.0), reuse_budget=2, hot_quantile=1.0)
    rng = random.Random(0)
    assert p.select(REPLICAS, now_s=0.1, rng=rng) == "r0"
    assert [x.rif for x in p.probes if x.replica == "r0"] == [1]
    assert p.select(REPLICAS, now_s=0.1, rng=rng) == "r0"
    assert [x.replica for x in p.probes] == ["r1"]  # used twice: gone


def test_our_request_stops_counting_when_it_ends_unless_a_fresh_probe_replaced_the_one_it_was_sent_on() -> None:
    # Two replicas far away: their probes come back later than the next query arrives.
    p = pool(("near", 0, 21.0), ("far", 0, 41.0))
    rng = random.Random(0)
    assert p.select(["near", "far"], now_s=0.1, rng=rng) == "near"
    p.request_ended("near")  # ended before the next query: near is idle again, not hot
    assert p.select(["near", "far"], now_s=0.2, rng=rng) == "near"
    p.add(Probe("near", 1, 21.0, received_at_s=0.2))  # a fresh probe that already counts that request
    p.request_ended("near")
    assert [x.rif for x in p.probes if x.replica == "near"] == [1]  # not taken off twice


def test_old_probes_expire_and_a_full_pool_drops_its_oldest() -> None:
    p = ProbePool(SelectionSettings(pool_size=2, max_age_s=1.0, remove_worst_every=0))
    p.add(Probe("r0", 0, 1.0, received_at_s=0.0))
    p.add(Probe("r1", 0, 2.0, received_at_s=1.0))
    p.add(Probe("r2", 0, 3.0, received_at_s=2.0))
    assert [x.replica for x in p.probes] == ["r1", "r2"]
    assert p.select(REPLICAS, now_s=2.5, rng=random.Random(0)) == "r2"  # r1 is 1.5 s old: expired


def test_one_probe_per_replica_the_newest() -> None:
    p = pool(("r0", 0, 1.0))
    p.add(Probe("r0", 4, 30.0, received_at_s=0.2))
    assert [(x.rif, x.latency_ms) for x in p.probes] == [(4, 30.0)]


def test_the_worst_probe_is_removed_periodically() -> None:
    p = ProbePool(SelectionSettings(remove_worst_every=1, hot_quantile=1.0))
    for replica, rif in (("r0", 0), ("r1", 9), ("r2", 1)):
        p.add(Probe(replica, rif, 1.0, received_at_s=0.0))
    p.select(REPLICAS, now_s=0.1, rng=random.Random(0))
    assert "r1" not in [x.replica for x in p.probes]


@pytest.mark.parametrize(("r_probe", "expected"), [(0.0, 0), (1.0, 1), (3.0, 3), (9.0, 5)])
def test_probe_targets_are_distinct_and_r_probe_many(r_probe: float, expected: int) -> None:
    targets = ProbePool(SelectionSettings(probes_per_query=r_probe)).probe_targets(REPLICAS, random.Random(3))
    assert len(targets) == expected == len(set(targets))


def test_fractional_r_probe_is_met_on_average() -> None:
    p = ProbePool(SelectionSettings(probes_per_query=1.5))
    rng = random.Random(5)
    mean = sum(len(p.probe_targets(REPLICAS, rng)) for _ in range(4000)) / 4000
    assert mean == pytest.approx(1.5, abs=0.05)


def test_a_replica_that_fails_fast_does_not_attract_traffic() -> None:
    """Sinkholing: r0 answers errors in 1 ms, so its probes look best; error aversion must starve it."""
    p = ProbePool(SelectionSettings(remove_worst_every=0, error_window=10, error_threshold=0.5))
    rng = random.Random(11)
    chosen: Counter[str] = Counter()
    for step in range(2000):
        now = step * 0.001
        for target in p.probe_targets(REPLICAS, rng):
            latency = 1.0 if target == "r0" else 20.0
            p.add(Probe(target, rif=0, latency_ms=latency, received_at_s=now))
        replica = p.select(REPLICAS, now_s=now, rng=rng)
        chosen[replica] += 1
        p.record_outcome(replica, ok=replica != "r0")
    assert chosen["r0"] / 2000 < 0.05, chosen


@pytest.mark.parametrize(
    "kwargs",
    [{"pool_size": 0}, {"hot_quantile": 1.5}, {"error_threshold": -0.1}, {"probes_per_query": -1}, {"max_age_s": 0}],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SelectionSettings(**kwargs)  # type: ignore[arg-type]


def test_the_papers_reuse_budget_follows_pool_and_replica_count() -> None:
    paper = ProbePool(SelectionSettings(**PAPER_UPKEEP))
    # m = 16 of n = 100, r_probe 3, r_remove 1: (1 + 1) / ((1 - 0.16) x 3 - 1) = 1.32 uses per probe
    assert paper.reuse_budget(100) == pytest.approx(2.0 / (0.84 * 3 - 1))
    assert paper.reuse_budget(1000) == pytest.approx(max(1.0, 2.0 / (0.984 * 3 - 1)))
    assert paper.reuse_budget(8) == math.inf  # a pool as large as the replica set: only age and removals refresh it
    assert ProbePool().reuse_budget(100) == 3  # netaware's fixed budget


def test_the_papers_upkeep_removes_the_oldest_and_the_worst_in_turn_and_is_random_below_two_probes() -> None:
    paper = ProbePool(SelectionSettings(**{**PAPER_UPKEEP, "hot_quantile": 1.0}))
    for replica, rif, at in (("r0", 0, 0.0), ("r1", 9, 0.1), ("r2", 1, 0.2), ("r3", 2, 0.3)):
        paper.add(Probe(replica, rif, 1.0, received_at_s=at))
    paper.select(REPLICAS, now_s=0.4, rng=random.Random(0))  # first removal: the oldest (r0)
    assert sorted(x.replica for x in paper.probes) == ["r1", "r2", "r3"]
    paper.select(REPLICAS, now_s=0.4, rng=random.Random(0))  # second: the worst (r1, 9 in flight)
    assert sorted(x.replica for x in paper.probes) == ["r2", "r3"]
    lone = ProbePool(SelectionSettings(**{**PAPER_UPKEEP, "remove_worst_every": 0}))
    lone.add(Probe("r0", 0, 1.0, received_at_s=0.0))
    rng = random.Random(3)
    picks = Counter(lone.select(REPLICAS, now_s=0.1, rng=rng) for _ in range(200))
    assert len(picks) == len(REPLICAS)  # one probe is not a choice: random over every replica
