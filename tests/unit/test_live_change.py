"""The live link change act's pure parts (experiments/live.py) and its report: latency per second of send time, the
calls a placement sends over a zone pair, the busiest pair to degrade, the zones of the routed pair that measures
(b), the call shares it reads, the printed table and the timeline plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from netaware.experiments.live import (
    CallShares,
    LiveChangeResult,
    Reroute,
    busiest_zone_pair,
    calls_between,
    per_second,
    reroute_zones,
    routed_manifests,
)
from netaware.experiments.reporting import print_live_change, write_live_change

CALLS = {("front", "cart"): 2.0, ("front", "ads"): 1.0, ("cart", "redis"): 3.0}
ZONE_OF = {"n1": "zone-a", "n2": "zone-b", "n3": "zone-c"}


def test_per_second_groups_by_send_time_not_by_completion() -> None:
    timeline = per_second([0.1, 0.5, 0.9, 1.2, 3.0], [10.0, 30.0, 20.0, 100.0, 5.0])
    assert [p["second"] for p in timeline] == [0.0, 1.0, 3.0]  # second 2 sent nothing that completed
    assert timeline[0]["requests"] == 3 and timeline[0]["p50Ms"] == 20.0
    assert timeline[1]["p99Ms"] == 100.0
    with pytest.raises(ValueError):
        per_second([0.1], [])


def test_calls_between_two_zones_count_both_directions_and_nothing_else() -> None:
    placement = {"front": "n1", "cart": "n2", "ads": "n3", "redis": "n2"}
    assert calls_between(CALLS, placement, ZONE_OF, {"zone-a", "zone-b"}) == 2.0
    assert calls_between(CALLS, placement, ZONE_OF, {"zone-b", "zone-a"}) == 2.0
    assert calls_between(CALLS, placement, ZONE_OF, {"zone-b", "zone-c"}) == 0.0


def test_the_busiest_zone_pair_is_the_one_with_most_calls_and_none_when_all_share_a_zone() -> None:
    placement = {"front": "n1", "cart": "n1", "ads": "n3", "redis": "n2"}
    assert busiest_zone_pair(CALLS, placement, ZONE_OF) == ("zone-a", "zone-b")  # 3 calls, against 1 to zone-c
    assert busiest_zone_pair(CALLS, dict.fromkeys(placement, "n1"), ZONE_OF) is None


def test_the_report_prints_each_measure_and_draws_the_timeline(tmp_path: Path) -> None:
    result = LiveChangeResult(
        zones=("zone-a", "zone-b"), added_delay_ms=40, rate_per_s=10, changed_at_s=15.0, published_after_s=18.5,
        before={"front": "n1"}, after={"front": "n1"}, calls_before=3, calls_after=0, network_ms_before=260,
        network_ms_after=90, timeline=per_second([0.5, 1.5, 20.5], [100.0, 110.0, 400.0]),
    )  # fmt: skip
    console = Console(record=True, width=160)
    print_live_change(result, console)
    text = console.export_text()
    assert "18.5 s" in text and "3 -> 0" in text and "260 -> 90" in text and "not measured" in text
    result.reroute = Reroute("zone-a", "zone-b", "zone-c", far_share_before=0.41, far_share_after=0.62,
                             moved_after_s=1.25)  # fmt: skip
    console = Console(record=True, width=160)
    print_live_change(result, console)
    text = console.export_text()
    assert "moved its calls to zone-c" in text and "1.2 s" in text and "41% -> 62%" in text, text
    written = write_live_change(result, tmp_path)
    assert [p.name for p in written] == ["live-change.json", "live-change.png"]
    assert json.loads(written[0].read_text())["published_after_s"] == 18.5
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


THREE_ZONES = {("zone-a", "zone-b"): 10.0, ("zone-a", "zone-c"): 20.0, ("zone-b", "zone-c"): 15.0}
"""three-zones' one-way delays, both directions"""
ONE_WAY = {**THREE_ZONES, **{(b, a): ms for (a, b), ms in THREE_ZONES.items()}}


def test_the_routed_pair_puts_its_front_where_the_change_turns_the_preferred_replica_into_the_slow_one() -> None:
    # From zone-a, zone-b (10 ms) is preferred over zone-c (20 ms) and slower after +40 ms: front in zone-a.
    assert reroute_zones(("zone-a", "zone-b"), ONE_WAY, 40.0) == ("zone-a", "zone-b", "zone-c")
    # From zone-b, zone-a (10) is preferred over zone-c (15); the pair's order does not matter.
    assert reroute_zones(("zone-b", "zone-a"), ONE_WAY, 40.0) == ("zone-b", "zone-a", "zone-c")
    # zone-c's preferred zone is zone-b: degrading b-c moves it to zone-a.
    assert reroute_zones(("zone-b", "zone-c"), ONE_WAY, 40.0) == ("zone-c", "zone-b", "zone-a")
    # Neither end of a-c prefers the other: nothing to move.
    assert reroute_zones(("zone-a", "zone-c"), ONE_WAY, 40.0) is None
    # A change too small to reverse the order moves nothing either.
    assert reroute_zones(("zone-a", "zone-b"), ONE_WAY, 5.0) is None
    assert reroute_zones(("zone-a", "zone-b"), {("zone-a", "zone-b"): 1.0, ("zone-b", "zone-a"): 1.0}, 40.0) is None


def test_the_routed_pair_pins_its_front_and_runs_one_back_replica_per_zone_behind_one_service() -> None:
    documents = routed_manifests("exp-x", "zone-a", ("zone-b", "zone-c"))
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert sorted(deployments) == ["routed-back-zone-b", "routed-back-zone-c", "routed-front"]
    zone = "topology.kubernetes.io/zone"
    assert deployments["routed-front"]["spec"]["template"]["spec"]["nodeSelector"] == {zone: "zone-a"}
    front_args = deployments["routed-front"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--routing=prequal" in front_args
    for back in ("zone-b", "zone-c"):
        spec = deployments[f"routed-back-{back}"]["spec"]
        assert spec["replicas"] == 1 and spec["template"]["spec"]["nodeSelector"] == {zone: back}
        assert spec["selector"]["matchLabels"]["app"] == "routed-back"
    service = next(d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "routed-back")
    assert service["spec"]["selector"] == {"app": "routed-back", "netaware.io/appgroup": "routed"}
    assert all(d["metadata"].get("namespace") == "exp-x" for d in documents)


def test_call_shares_count_calls_between_samples_and_find_the_first_window_the_far_zone_leads() -> None:
    shares = CallShares()
    counts = {"zone-b": 0.0, "zone-c": 0.0}
    for tick in range(40):  # 0.25-s samples; 4 calls a tick; zone-b answers 3 of 4 until t = 5 s, then 1 of 4
        at = tick * 0.25
        shares.samples.append((at, dict(counts)))
        near = 3 if at < 5.0 else 1
        counts["zone-b"] += near
        counts["zone-c"] += 4 - near
    assert shares.share("zone-c", 0.0, 5.0) == pytest.approx(0.25)
    assert shares.share("zone-c", 6.0, 9.75) == pytest.approx(0.75)
    moved = shares.majority_after("zone-c", 5.0)
    assert moved is not None and 1.0 <= moved <= 1.25, moved
    assert shares.majority_after("zone-b", 5.0) is None
    assert shares.share("zone-d", 0.0, 9.0) == 0.0
