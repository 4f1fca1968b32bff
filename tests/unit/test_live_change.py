"""The live link change act's pure parts (experiments/live.py) and its report: latency per second of send time, the
calls a placement sends over a zone pair, the busiest pair to degrade, the printed table and the timeline plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from netaware.experiments.live import LiveChangeResult, busiest_zone_pair, calls_between, per_second
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
    written = write_live_change(result, tmp_path)
    assert [p.name for p in written] == ["live-change.json", "live-change.png"]
    assert json.loads(written[0].read_text())["published_after_s"] == 18.5
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
