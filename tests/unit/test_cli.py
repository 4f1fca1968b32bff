"""The `netaware score` command, run as a user runs it (a subprocess), and `netaware simulate telemetry`.

Checks: the table and --json outputs for a hand-computed case, --weights, a hard limit shown as filtered, and
bad input (missing file, malformed CSV/YAML, unknown workload, negative RTT, loss outside 0..1, bad weights)
exits non-zero with a one-line reason and no traceback; the telemetry simulation prints its estimators and
targets, writes its CSV and plot, and refuses a network too small to have zones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LINKS = """origin,destination,rtt_ms,bandwidth_mbps,loss_ratio
a,b,10,100,0
b,a,10,100,0
a,c,40,50,0.1
c,a,40,50,0.1
b,c,20,200,0.05
c,b,20,200,0.05
"""
APPGROUP = """apiVersion: netaware.io/v1alpha1
kind: AppGroup
metadata: {name: shop, namespace: default}
spec:
  workloads:
  - name: frontend
    selector: {matchLabels: {app: frontend}}
    dependencies: [{workload: cart, maxLatencyMs: 15}]
  - name: cart
    selector: {matchLabels: {app: cart}}
"""


def netaware(*args: str) -> subprocess.CompletedProcess[str]:
    # A wide virtual terminal so that rich does not wrap the table's reasons mid-word.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "netaware.cli", *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    files = {"links": LINKS, "appgroup": APPGROUP, "placements": "cart: [b]\n"}
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text(text)
    return paths


def score_args(inputs: dict[str, Path], workload: str = "frontend") -> list[str]:
    return [
        "score",
        "--links", str(inputs["links"]),
        "--appgroup", str(inputs["appgroup"]),
        "--placements", str(inputs["placements"]),
        "--workload", workload,
    ]  # fmt: skip


def test_json_output_matches_hand_computed_costs(inputs: dict[str, Path]) -> None:
    result = netaware(*score_args(inputs), "--json")
    assert result.returncode == 0, result.stderr
    nodes = json.loads(result.stdout)["nodes"]
    assert list(nodes) == ["b", "a", "c"]  # best first, filtered last
    assert nodes["a"]["totalCost"] == pytest.approx(0.275, abs=1e-6)
    assert nodes["a"]["score"] == pytest.approx(100 / 1.275, abs=1e-3)
    assert nodes["b"] == {
        "dependencyCost": 0.0, "dependantCost": 0.0, "totalCost": 0.0, "score": 100.0,
        "extenderScore": 10, "predictedNetworkMs": 0.0, "filtered": None,
    }  # fmt: skip
    assert "RTT 20.0 ms > maxLatencyMs 15" in nodes["c"]["filtered"]
    assert nodes["c"]["extenderScore"] == 0
    # The planner's measure beside the seed's: one call to cart per request, RTT + 2 segments x loss x 200 ms RTO.
    assert nodes["a"]["predictedNetworkMs"] == pytest.approx(10.0)
    assert nodes["c"]["predictedNetworkMs"] == pytest.approx(20.0 + 2 * 0.05 * 200)


def test_weights_flag_changes_the_cost(inputs: dict[str, Path]) -> None:
    result = netaware(*score_args(inputs), "--json", "--weights", "1,0,0")
    nodes = json.loads(result.stdout)["nodes"]
    assert nodes["a"]["totalCost"] == pytest.approx(10 / 40, abs=1e-6)


def test_table_output_lists_every_node(inputs: dict[str, Path]) -> None:
    result = netaware(*score_args(inputs))
    assert result.returncode == 0, result.stderr
    for token in ("netaware score", "frontend", "78.43", "maxLatencyMs"):
        assert token in result.stdout


def test_help_reads_well() -> None:
    result = netaware("score", "--help")
    assert result.returncode == 0
    assert "Explain a placement decision" in result.stdout and "--placements" in result.stdout


@pytest.mark.parametrize(
    ("file", "content", "extra", "message"),
    [
        pytest.param("links", None, [], "links", id="missing links file"),
        pytest.param("links", "origin,destination\n", [], "line 1: header must be", id="malformed CSV"),
        pytest.param("links", LINKS + "a,d,-1,10,0\n", [], "rtt_ms must be a finite number >= 0", id="negative RTT"),
        pytest.param("links", LINKS + "a,d,1,10,7\n", [], "loss_ratio must be within 0..1", id="loss outside 0..1"),
        pytest.param("appgroup", "spec: [unclosed\n", [], "malformed YAML", id="malformed YAML"),
        pytest.param("appgroup", "kind: AppGroup\n", [], "metadata.name", id="AppGroup without a name"),
        pytest.param("appgroup", "metadata: {name: x}\n", [], "spec: expected an object", id="AppGroup without spec"),
        pytest.param("placements", "- a\n- b\n", [], "expected a mapping", id="placements not a mapping"),
        pytest.param("placements", "ghost: [a]\n", [], "ghost", id="placements of an unknown workload"),
        pytest.param(None, None, ["--workload", "nope"], "unknown workload 'nope'", id="unknown workload"),
        pytest.param(None, None, ["--weights", "1,2"], "--weights must be three numbers", id="weights malformed"),
        pytest.param(None, None, ["--weights", "1,2,0"], "within 0..1", id="weight out of range"),
        pytest.param(None, None, ["--strategy", "magic"], "unknown strategy 'magic'", id="unknown strategy"),
    ],
)
def test_bad_input_exits_with_one_line_and_no_traceback(
    inputs: dict[str, Path], file: str | None, content: str | None, extra: list[str], message: str
) -> None:
    if file is not None:
        if content is None:
            inputs[file].unlink()
        else:
            inputs[file].write_text(content)
    result = netaware(*score_args(inputs), *extra)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_router_help_and_bad_arguments() -> None:
    def router(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "netaware.router.commands", *args], capture_output=True, text=True, check=False
        )

    overview = router("--help")
    assert overview.returncode == 0 and "proxy" in overview.stdout and "controller" in overview.stdout
    proxy = router("proxy", "--help")
    assert "--replica HOST:PORT" in proxy.stdout and "{random,round-robin,least-request" in proxy.stdout
    missing = router("proxy")
    assert missing.returncode == 2 and "--replica" in missing.stderr
    bad = router("proxy", "--replica", "no-port")
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
    settings = router("proxy", "--replica", "a:1", "--hot-quantile", "2")
    assert settings.returncode == 2 and "hot_quantile" in settings.stderr and "Traceback" not in settings.stderr


def test_lab_shape_on_a_lab_that_is_not_running_says_how_to_start_one(tmp_path: Path) -> None:
    result = netaware("lab", "shape", "--from-zone", "zone-a", "--to-zone", "zone-b", "--delay-ms", "30",
                      "--state-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the lab is not running" in result.stderr and "netaware lab up" in result.stderr, result.stderr
    refused = netaware("lab", "shape", "--from-zone", "zone-a", "--to-zone", "zone-b", "--loss", "2")
    assert refused.returncode == 2 and "--loss" in refused.stderr, refused.stderr


def test_experiment_live_refuses_an_unknown_experiment_and_a_change_outside_the_run() -> None:
    unknown = netaware("experiment", "live", "nope")
    assert unknown.returncode == 2 and "unknown experiment 'nope'" in unknown.stderr, unknown.stderr
    outside = netaware("experiment", "live", "--seconds", "20", "--change-after", "30")
    assert outside.returncode == 2 and "must fall inside the run" in outside.stderr, outside.stderr
    assert "Traceback" not in unknown.stderr + outside.stderr


def test_experiment_run_refuses_an_unknown_placement_or_routing_naming_the_known_ones() -> None:
    placement = netaware("experiment", "run", "routing", "--policies", "netaware,volcano+prequal")
    assert placement.returncode == 2 and "unknown placement 'volcano'" in placement.stderr, placement.stderr
    routing = netaware("experiment", "run", "routing", "--policies", "netaware+istio")
    assert routing.returncode == 2 and "unknown routing 'istio'" in routing.stderr, routing.stderr
    assert "p2c-peak-ewma" in " ".join(routing.stderr.split()) and "Traceback" not in routing.stderr


def test_experiments_without_a_cluster_say_how_to_start_one(tmp_path: Path) -> None:
    for command in ("run", "live"):
        result = netaware("experiment", command, "chain", "--kubeconfig", str(tmp_path / "none.kubeconfig"))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "no kubeconfig at" in result.stderr and "netaware cluster up" in result.stderr, result.stderr


def test_simulate_telemetry_prints_the_estimators_and_the_targets_and_writes_csv_and_plot(tmp_path: Path) -> None:
    done = netaware("simulate", "telemetry", "--nodes", "80", "--rounds", "3", "--change-round", "1",
                    "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "zone-offsets" in done.stdout and "coordinates" in done.stdout
    assert "every zone pair measured within 60 s: 100% of zone pairs met" in done.stdout
    assert "a changed zone pair within 10% two rounds after the change" in done.stdout
    rows = (tmp_path / "telemetry-80.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 3 and rows[0].startswith("round,at_s,estimator")
    assert (tmp_path / "telemetry-80.png").stat().st_size > 10_000
    refused = netaware("simulate", "telemetry", "--nodes", "5")
    assert refused.returncode == 2 and "Invalid value for '--nodes'" in refused.stderr
