"""An experiment's report from a synthetic result: the files exist, the table has a row per policy, the targets
are computed from the figures (met and not met), the plots are real PNG files."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netaware.cli import app
from netaware.experiments.reporting import table_rows, targets, write_report
from netaware.experiments.running import ExperimentResult, PolicyResult, merged_loads
from netaware.plotting import INSTALL_HINT, PlotsUnavailableError


def result(netaware_p50: float) -> ExperimentResult:
    nodes = {"n1": "zone-a", "n2": "zone-b"}
    policies = []
    for name, p50 in (("default", 300.0), ("netaware", netaware_p50), ("optimal", 100.0)):
        policies.append(
            PolicyResult(
                policy=name,
                placement={"a": "n1", "b": "n2" if name == "default" else "n1"},
                zones={"a": "zone-a", "b": "zone-b" if name == "default" else "zone-a"},
                network_cost_ms=40.0 if name == "default" else 0.0,
                load={
                    "requests": 100,
                    "ok": 100,
                    "errors": 0,
                    "errorRate": 0.0,
                    "p50Ms": p50,
                    "p95Ms": p50 * 1.5,
                    "p99Ms": p50 * 2,
                    "throughputPerS": 20.0,
                },
                cross_zone_bytes=102400 if name == "default" else 0,
                total_link_bytes=102400,
                latencies_ms=[p50 * f for f in (0.8, 0.9, 1.0, 1.1, 1.5)],
            )
        )
    links = [{"origin": "n1", "destination": "n2", "rttMs": 20.0, "bandwidthMbps": 100.0, "lossRatio": 0.0},
             {"origin": "n2", "destination": "n1", "rttMs": 20.0, "bandwidthMbps": None, "lossRatio": 0.0}]  # fmt: skip
    return ExperimentResult("chain", "chain", "three-zones", 0, 20.0, 100, "now", nodes, links, policies)


def routed(prequal_p99: float) -> ExperimentResult:
    """The routing experiment: netaware's placement with kube-proxy (p50 100, p99 300) and with Prequal (p50 60)."""
    base = result(100.0)
    netaware = next(p for p in base.policies if p.policy == "netaware")
    replicas = {"a": ["n1"], "b": ["n1", "n2"]}
    kube_proxy = replace(netaware, replica_nodes=replicas, load={**netaware.load, "p99Ms": 300.0})
    prequal = replace(kube_proxy, policy="netaware+prequal", routing="prequal",
                      load={**netaware.load, "p50Ms": 60.0, "p99Ms": prequal_p99})  # fmt: skip
    return replace(base, experiment="routing", policies=[kube_proxy, prequal])


def test_the_routing_targets_compare_prequal_with_kube_proxy_on_the_same_placement(tmp_path: Path) -> None:
    met = {name: (value, ok) for name, value, ok in targets(routed(prequal_p99=150.0))}
    assert met == {"Prequal routing p50 < kube-proxy's, on netaware's placement": ("0.60 x", True),
                   "Prequal routing p99 < kube-proxy's, on netaware's placement": ("0.50 x", True)}  # fmt: skip
    missed = {name: ok for name, _, ok in targets(routed(prequal_p99=330.0))}
    assert missed["Prequal routing p99 < kube-proxy's, on netaware's placement"] is False
    rows = table_rows(routed(150.0))
    assert [row["zones"] for row in rows] == ["2", "2"]  # b's second replica is in zone-b
    write_report(routed(150.0), tmp_path)
    assert "| b | n1 (zone-a), n2 (zone-b) | n1 (zone-a), n2 (zone-b) |" in (tmp_path / "summary.md").read_text()


def test_targets_follow_the_figures() -> None:
    met = {name: ok for name, _, ok in targets(result(105.0))}
    assert met == {"netaware p50 <= 0.5 x default p50": True, "netaware p50 <= 1.1 x optimal p50": True}
    missed = {name: ok for name, _, ok in targets(result(160.0))}
    assert missed == {"netaware p50 <= 0.5 x default p50": False, "netaware p50 <= 1.1 x optimal p50": False}


def test_report_files(tmp_path: Path) -> None:
    written = write_report(result(105.0), tmp_path)
    names = {p.name for p in written}
    assert names == {"results.json", "results.csv", "summary.md", "latency-cdf.png", "latency-percentiles.png",
                     "placements.png", "measured-rtt.png"}  # fmt: skip
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert [row["policy"] for row in table_rows(result(105.0))] == ["default", "netaware", "optimal"]
    assert json.loads((tmp_path / "results.json").read_text())["policies"][0]["cross_zone_bytes"] == 102400
    summary = (tmp_path / "summary.md").read_text()
    assert "| default | 300.0 |" in summary and "| netaware p50 <= 0.5 x default p50 | 0.35 x | yes |" in summary


def test_without_the_plots_extra_a_report_command_stops_first_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as in the images: not installed
    with pytest.raises(PlotsUnavailableError, match=re.escape(INSTALL_HINT)):
        write_report(result(110.0), tmp_path)
    outcome = CliRunner().invoke(app, ["simulate", "report", "--out", str(tmp_path / "simulation")])
    assert outcome.exit_code == 2
    assert INSTALL_HINT in " ".join(outcome.output.split())
    assert not (tmp_path / "simulation").exists()  # stopped before any work


def test_load_from_clients_in_every_zone_is_pooled_on_one_clock() -> None:
    def raw(started: float, latencies: list[float], errors: int, duration: float) -> dict[str, object]:
        sent = [0.5 * i for i in range(len(latencies))]
        return {"startedAt": started, "latenciesMs": latencies, "sentS": sent, "errors": errors,
                "errorSamples": ["boom"] * errors, "durationS": duration, "callsPerRequest": 5.0}  # fmt: skip

    pooled = merged_loads([raw(100.0, [10.0, 20.0], 0, 10.0), raw(101.0, [30.0, 40.0, 1000.0], 1, 12.0)])
    assert pooled["requests"] == 6 and pooled["ok"] == 5 and pooled["errors"] == 1
    assert pooled["p50Ms"] == 30.0 and pooled["errorRate"] == pytest.approx(1 / 6)
    assert pooled["throughputPerS"] == pytest.approx(5 / 12.0)
    assert pooled["startedAt"] == 100.0 and pooled["sentS"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert pooled["errorSamples"] == ["boom"] and pooled["callsPerRequest"] == 5.0


def test_the_joint_target_wants_the_routing_aware_strategy_with_prequal_lowest_in_every_cell() -> None:
    base = routed(prequal_p99=150.0)  # netaware (100/300) and netaware+prequal (60/150)
    best = replace(base.policies[1], policy="netaware-routed+prequal", load={**base.policies[1].load, "p50Ms": 50.0})
    checks = {name: (value, ok) for name, value, ok in targets(replace(base, policies=[*base.policies, best]))}
    assert checks["netaware-routed+prequal has the lowest p50 of every cell"] == (
        "0.83 x the next (netaware+prequal)", True)  # fmt: skip
    assert checks["netaware-routed+prequal has the lowest p99 of every cell"][1] is False  # 150 ties 150: not lower
