"""Topology model: link validation, dense view, EWMA smoothing with outlier rejection and level shifts,
staleness, and the links CSV parser's errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from netaware.core.topology import (
    LEVEL_SHIFT_ROUNDS,
    LinkMetrics,
    SmoothedValue,
    Topology,
    TopologyError,
    is_stale,
    parse_links_csv,
    smooth,
    smoothing_gain,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"rtt_ms": -1}, "rtt_ms", id="negative RTT"),
        pytest.param({"rtt_ms": math.nan}, "rtt_ms", id="NaN RTT"),
        pytest.param({"rtt_ms": 1, "loss_ratio": 5}, "loss_ratio must be within 0..1", id="loss as a percent"),
        pytest.param({"rtt_ms": 1, "bandwidth_mbps": -10}, "bandwidth_mbps", id="negative bandwidth"),
        pytest.param({"rtt_ms": 1, "samples": -1}, "samples", id="negative samples"),
    ],
)
def test_invalid_links_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        LinkMetrics(**kwargs)  # type: ignore[arg-type]


def test_links_to_unknown_nodes_are_rejected() -> None:
    with pytest.raises(TopologyError, match="not in the topology"):
        Topology(nodes=("a",), links={("a", "b"): LinkMetrics(rtt_ms=1)})


def test_dense_view_keeps_unknowns_as_nan() -> None:
    topology = Topology.from_links({("a", "b"): LinkMetrics(rtt_ms=3, loss_ratio=0.1)}, nodes=["c"])
    dense = topology.dense()
    assert dense.nodes == ("c", "a", "b")
    i, j = dense.index["a"], dense.index["b"]
    assert dense.rtt_ms[i, j] == 3
    assert np.isnan(dense.rtt_ms[j, i])
    assert np.isnan(dense.bandwidth_mbps[i, j])  # bandwidth not measured is unknown, not 0
    assert dense.loss_ratio[i, j] == pytest.approx(0.1)


def test_ewma_follows_rfc6298_gains_from_a_narrower_first_deviation() -> None:
    first = smooth(None, 10.0)
    assert (first.mean, first.deviation) == (10.0, 1.25)  # R/8, not RFC 6298's R/2
    second = smooth(first, 12.0)
    # deviation first: 0.75*1.25 + 0.25*|10-12| = 1.4375; then mean: 0.875*10 + 0.125*12 = 10.25
    assert second.deviation == pytest.approx(1.4375)
    assert second.mean == pytest.approx(10.25)


def test_a_link_changed_in_its_first_rounds_and_changed_back_follows_each_change_within_the_shift_rounds() -> None:
    state = smooth(smooth(smooth(None, 20.0), 20.4), 20.2)  # a young link
    for level in (60.0, 20.0):
        for _ in range(LEVEL_SHIFT_ROUNDS):
            state = smooth(state, level)
        assert state.mean == level


def test_a_single_outlier_is_held_back_and_a_level_shift_is_followed() -> None:
    state = SmoothedValue(mean=10.0, deviation=0.5, samples=50)
    spike = smooth(state, 100.0)
    assert spike.mean == 10.0  # one spike does not move the estimate
    assert smooth(spike, 10.2).outlier_run == 0
    shifted = state
    for _ in range(LEVEL_SHIFT_ROUNDS - 1):
        shifted = smooth(shifted, 40.0)
    assert shifted.mean == 10.0  # not yet: it could still be a busy moment
    shifted = smooth(shifted, 40.0)  # LEVEL_SHIFT_ROUNDS in a row: the link really became slower
    assert shifted.mean == 40.0
    assert shifted.deviation == pytest.approx(2.0)  # the same 5% of the mean as before the change
    for _ in range(LEVEL_SHIFT_ROUNDS):  # ...and a change back is followed just as fast
        shifted = smooth(shifted, 10.0)
    assert shifted.mean == 10.0


def test_smoothing_gain_from_period_and_time_constant() -> None:
    assert smoothing_gain(period_s=10, time_constant_s=60) == pytest.approx(1 - math.exp(-10 / 60))


def test_stale_links_are_dropped_not_presented_as_fresh() -> None:
    fresh = LinkMetrics(rtt_ms=1, measured_at_s=1000)
    old = LinkMetrics(rtt_ms=1, measured_at_s=900)
    estimated = LinkMetrics(rtt_ms=1, source="estimated")
    assert not is_stale(fresh, now_s=1010, ttl_s=30)
    assert is_stale(old, now_s=1010, ttl_s=30)
    assert not is_stale(estimated, now_s=1010, ttl_s=30)
    assert is_stale(LinkMetrics(rtt_ms=1), now_s=1010, ttl_s=30)  # measured but no time: cannot be fresh
    topology = Topology.from_links({("a", "b"): fresh, ("b", "a"): old, ("a", "c"): estimated})
    assert set(topology.without_stale(now_s=1010, ttl_s=30).links) == {("a", "b"), ("a", "c")}


GOOD_CSV = "origin,destination,rtt_ms,bandwidth_mbps,loss_ratio\na,b,1.5,900,0\nb,a,1.5,,0.01\n"


def test_links_csv_parses_and_empty_bandwidth_means_unmeasured() -> None:
    topology = parse_links_csv(GOOD_CSV)
    assert topology.nodes == ("a", "b")
    assert topology.link("a", "b") == LinkMetrics(rtt_ms=1.5, bandwidth_mbps=900, loss_ratio=0)
    assert topology.link("b", "a").bandwidth_mbps is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "line 1: header must be", id="empty file"),
        pytest.param("a,b,c\n", "line 1: header must be", id="wrong header"),
        pytest.param(GOOD_CSV + "a,c,-1,10,0\n", "line 4: rtt_ms must be a finite number >= 0", id="negative RTT"),
        pytest.param(GOOD_CSV + "a,c,1,10,1.5\n", "line 4: loss_ratio must be within 0..1", id="loss outside 0..1"),
        pytest.param(GOOD_CSV + "a,c,fast,10,0\n", "line 4: rtt_ms must be a number", id="RTT not a number"),
        pytest.param(GOOD_CSV + "a,c,1\n", "line 4: expected 5 columns", id="short row"),
        pytest.param(GOOD_CSV + "a,b,1,10,0\n", "line 4: link a->b is listed twice", id="duplicate link"),
    ],
)
def test_links_csv_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_links_csv(text)
