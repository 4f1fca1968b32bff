"""Probe reports and their aggregation (core/telemetry.py), the groundwork of the telemetry issue.

Checks: a valid report parses; each kind of bad report is refused naming the field and the reason (types,
ranges, unknown fields and nodes, self-probes, duplicates, more answers than probes, a future time, a missing
RTT); RTT is smoothed with outliers held back; loss is a ratio of counts over recent rounds; a late older round
does not overwrite newer data; a pair not refreshed within the TTL is never presented as measured, and is
estimated from the fresh reverse direction or the zone pair's mean, else left out; nodes that stop reporting
are listed as stale; a node cut off is lossy within the TTL and unknown after it, never estimated from its zone.
"""

from __future__ import annotations

from typing import Any

import pytest

from netaware.core.telemetry import LinkAggregator, ReportError, parse_report
from netaware.core.topology import LEVEL_SHIFT_ROUNDS, LinkMetrics

NODES = ["a", "b", "c", "d"]


def report(node: str = "a", at: float = 1000.0, **peer: Any) -> dict[str, Any]:
    entry = {"peer": "b", "sent": 10, "received": 10, "rttMs": 5.0, "jitterMs": 0.5} | peer
    entry = {k: v for k, v in entry.items() if v is not None}  # None: leave the field out
    return {"node": node, "measuredAt": at, "peers": [entry]}


def test_a_valid_report_parses() -> None:
    parsed = parse_report(report(bandwidthMbps=900.0), known_nodes=NODES, now_s=1000.0)
    assert parsed.node == "a" and parsed.peers[0].rtt_ms == 5.0 and parsed.peers[0].bandwidth_mbps == 900.0


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"node": "a", "peers": []}, "report: 'measuredAt' is a required property"),
        (report(rttMs="fast"), "peers[0].rttMs: 'fast' is not of type 'number'"),
        (report(rttMs=-1), "peers[0].rttMs: -1 is less than the minimum of 0"),
        (report(sent=0), "peers[0].sent: 0 is less than the minimum of 1"),
        (report(color="red"), "peers[0]: Additional properties are not allowed ('color' was unexpected)"),
        (report(peer="z"), "peers[0].peer: 'z' is not a known node"),
        (report(node="z"), "node: 'z' is not a known node"),
        (report(peer="a"), "peers[0].peer: a node does not probe itself"),
        (report(received=11), "peers[0].received: 11 is more than sent (10)"),
        (report(at=99999.0), "measuredAt: 99999.0 is in the future"),
        ({"node": "a", "measuredAt": 1, "peers": [{"peer": "b", "sent": 3, "received": 3}]}, "rttMs: required"),
        ([], "report: [] is not of type 'object'"),
    ],
)
def test_bad_reports_are_refused_naming_the_field(data: Any, problem: str) -> None:
    with pytest.raises(ReportError) as raised:
        parse_report(data, known_nodes=NODES, now_s=1000.0)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_duplicate_peers_are_refused() -> None:
    data = report()
    data["peers"].append(dict(data["peers"][0]))
    with pytest.raises(ReportError, match="appears twice"):
        parse_report(data, known_nodes=NODES)


def ingest(aggregator: LinkAggregator, at: float, **peer: Any) -> None:
    aggregator.ingest(parse_report(report(at=at, **peer)))


def test_rtt_is_smoothed_and_an_outlier_is_held_back() -> None:
    aggregator = LinkAggregator(ttl_s=60)
    for second in range(10):
        ingest(aggregator, 1000.0 + second, rttMs=10.0)
    ingest(aggregator, 1010.0, rttMs=500.0)  # one wild round
    measured = aggregator.measured(("a", "b"), now_s=1011.0)
    assert measured is not None and measured.rtt_ms == pytest.approx(10.0)
    for second in range(11, 11 + LEVEL_SHIFT_ROUNDS):  # a real level shift: that many rounds in a row
        ingest(aggregator, 1000.0 + second, rttMs=40.0)
    assert aggregator.measured(("a", "b"), now_s=1014.0).rtt_ms == pytest.approx(40.0, rel=0.05)  # type: ignore[union-attr]


def test_loss_is_a_ratio_of_counts_over_recent_rounds() -> None:
    aggregator = LinkAggregator()
    ingest(aggregator, 1000.0, sent=200, received=190)
    ingest(aggregator, 1001.0, sent=10, received=0, rttMs=None)
    measured = aggregator.measured(("a", "b"), now_s=1001.0)
    assert measured is not None and measured.loss_ratio == pytest.approx(20 / 210)


def test_a_late_older_round_does_not_overwrite_newer_data() -> None:
    aggregator = LinkAggregator()
    ingest(aggregator, 1005.0, rttMs=10.0)
    ingest(aggregator, 1000.0, rttMs=99.0)
    assert aggregator.measured(("a", "b"), now_s=1006.0).rtt_ms == 10.0  # type: ignore[union-attr]


def test_stale_pairs_are_estimated_or_left_out_never_measured() -> None:
    aggregator = LinkAggregator(ttl_s=30)
    zones = {"a": "z1", "b": "z2", "c": "z1", "d": "z3"}
    aggregator.ingest(parse_report(report(node="a", at=1000.0, peer="b", rttMs=20.0)))
    aggregator.ingest(parse_report(report(node="c", at=900.0, peer="b", rttMs=99.0)))  # stale by 1020
    aggregator.ingest(parse_report(report(node="c", at=1000.0, peer="d", rttMs=40.0)))  # c still reports
    topology = aggregator.topology(NODES, now_s=1020.0, zones=zones)
    assert topology.link("a", "b").source == "measured"  # type: ignore[union-attr]
    reverse = topology.link("b", "a")
    assert reverse is not None and reverse.source == "estimated" and reverse.rtt_ms == 20.0
    from_zone = topology.link("c", "b")  # its own data is stale: the z1-z2 mean of fresh links (a->b only)
    assert from_zone is not None and from_zone.source == "estimated" and from_zone.rtt_ms == 20.0
    assert topology.link("b", "d") is None  # nothing measured between z2 and z3
    later = aggregator.topology(NODES, now_s=1100.0, zones=zones)
    assert later.links == {}
    assert aggregator.stale_nodes(1100.0) == ["a", "c"]


def test_a_node_cut_off_is_lossy_then_unknown_never_estimated_from_its_zones_healthy_links() -> None:
    """A node cut off: its peers' probes to it go unanswered and its own reports stop arriving. Within the TTL the
    links towards it are measured lossy; after it, every link to and from it is unknown (the worst price), although
    its zone-mate's links would give a zone-pair mean and its reverse directions once had an RTT."""
    aggregator = LinkAggregator(ttl_s=30)
    zones = {"a": "z1", "b": "z2", "c": "z2", "d": "z1"}

    def round_at(at: float, *, cut: bool) -> None:
        aggregator.ingest(parse_report({"node": "a", "measuredAt": at, "peers": [
            {"peer": "b", "sent": 10, "received": 10, "rttMs": 20.0},
            {"peer": "c", "sent": 10, "received": 0, **({} if cut else {"received": 10, "rttMs": 20.0})},
        ]}))  # fmt: skip
        aggregator.ingest(parse_report({"node": "b", "measuredAt": at, "peers": [
            {"peer": "a", "sent": 10, "received": 10, "rttMs": 20.0}]}))  # fmt: skip
        if not cut:
            aggregator.ingest(parse_report({"node": "c", "measuredAt": at, "peers": [
                {"peer": "a", "sent": 10, "received": 10, "rttMs": 20.0}]}))  # fmt: skip

    round_at(1000.0, cut=False)
    for at in (1010.0, 1020.0):
        round_at(at, cut=True)
    within = aggregator.topology(NODES, now_s=1020.0, zones=zones)
    lossy = within.link("a", "c")
    assert lossy is not None and lossy.source == "measured" and lossy.loss_ratio == pytest.approx(20 / 30)
    for at in (1030.0, 1040.0):
        round_at(at, cut=True)
    after = aggregator.topology(NODES, now_s=1045.0, zones=zones)
    assert aggregator.stale_nodes(1045.0) == ["c"]
    for pair in (("a", "c"), ("c", "a"), ("c", "b"), ("d", "c"), ("c", "d")):
        assert after.link(*pair) is None, pair  # not the z1-z2 mean (20 ms, no loss) of a<->b
    estimated = after.link("d", "b")  # a pair of two reporting nodes outside any sample keeps its zone estimate
    assert estimated is not None and estimated.source == "estimated" and estimated.rtt_ms == 20.0


def test_a_recovered_link_keeps_its_published_loss_and_a_cut_after_the_restart_shows_as_fast_as_before() -> None:
    """Recovery seeds the published loss ratio for the rounds the window has not refilled, never the published probe
    count as one round: that counts every probe since the link was first measured and would outweigh ten new ones."""
    aggregator = LinkAggregator(ttl_s=60)
    published = LinkMetrics(rtt_ms=5.0, loss_ratio=0.0, samples=5000, source="measured", measured_at_s=999.0)
    aggregator.seed("a", "b", published)
    assert aggregator.measured(("a", "b"), now_s=1000.0).loss_ratio == 0.0  # type: ignore[union-attr]
    for second in (1000.0, 1010.0):  # the link cut: two rounds of ten probes, all lost
        ingest(aggregator, second, sent=10, received=0, rttMs=None, jitterMs=None)
    measured = aggregator.measured(("a", "b"), now_s=1011.0)
    assert measured is not None and measured.loss_ratio == pytest.approx(0.2)  # 2 of 10 rounds, as without a restart
    lossy = LinkAggregator(ttl_s=60)
    lossy.seed("a", "b", LinkMetrics(rtt_ms=5.0, loss_ratio=0.5, samples=5000, source="measured", measured_at_s=999.0))
    ingest(lossy, 1000.0, sent=10, received=10)
    assert lossy.measured(("a", "b"), now_s=1001.0).loss_ratio == pytest.approx(0.45)  # type: ignore[union-attr]


def test_an_unmeasured_pair_is_priced_by_its_zone_pair_and_both_nodes_offsets() -> None:
    """a2 sits 1 ms further from everything than a1 (its access): a2 -> b2, which nobody measured, is estimated at
    the zone pair's base plus that, not at the zone pair's mean, which would price it as the fast node's links."""
    aggregator = LinkAggregator(ttl_s=60)
    for node, peer, rtt in [("a1", "b1", 19.5), ("a2", "b1", 20.5), ("a1", "b2", 19.5)]:
        entry = {"peer": peer, "sent": 2, "received": 2, "rttMs": rtt}
        aggregator.ingest(parse_report({"node": node, "measuredAt": 1000.0, "peers": [entry]}))
    zones = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    topology = aggregator.topology(list(zones), now_s=1001.0, zones=zones)
    estimate = topology.links[("a2", "b2")]
    assert estimate.source == "estimated" and estimate.measured_at_s is None
    assert estimate.rtt_ms == pytest.approx(20.5, abs=0.01)  # the zone mean is 19.83
    assert topology.links[("b1", "a2")].rtt_ms == 20.5  # the reverse of a measured pair comes first
