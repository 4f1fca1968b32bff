"""The netem-free link emulator (lab/emulating.py) with real ICMP and real iperf3 across real namespaces.

Checks: a ping across a link shaped to 10 ms each way shows a median RTT of 20 ms (within 10% or 1 ms); loss over 1,000
probes is within 2 points of the configured ratio; iperf3 over a 20 Mbit/s link measures the rate within 15%;
after stop() no namespace is left; a link where no probe is answered is left unmeasured (the worst cost), never
given an RTT of 0; a round of probes to a dead peer and a live one lasts probes x interval + one timeout, the
live one fully answered; a live reshape changes a running link's RTT at once and leaves the others. Needs root:
without it the tier fails loudly instead of skipping silently.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netaware import icmp
from netaware.core.costs import build_link_costs
from netaware.core.links import LinkShape
from netaware.lab.emulating import EmulatedNetwork, emulated_link
from netaware.lab.measuring import measure_topology
from netaware.netns import run_in
from tests.lab import matches_shaped_rtt

pytestmark = pytest.mark.netns
PAIRS_OF_THREE = [(x, y) for x in "abc" for y in "abc" if x != y]


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the lab tier needs root (network namespaces, TUN devices); run it as root", pytrace=False)


def ping(namespace: str, address: str, *, count: int, interval_s: float, timeout_s: float = 1.0) -> dict[str, float]:
    script = (
        "import json; from icmplib import ping; "
        f"h = ping({address!r}, count={count}, interval={interval_s}, timeout={timeout_s}, privileged=True); "
        "import statistics; "
        "print(json.dumps({'median': statistics.median(h.rtts) if h.rtts else None, 'avg': h.avg_rtt, "
        "'min': h.min_rtt, 'loss': h.packet_loss}))"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", script],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_ping_shows_the_configured_delay() -> None:
    with emulated_link("natest1", LinkShape(delay_ms=10), LinkShape(delay_ms=10), subnet=211) as link:
        result = ping(link.namespaces[0], link.addresses[1], count=30, interval_s=0.05)
    # The median, as the probe agents report RTT: robust to a probe delayed by an unrelated busy moment.
    assert matches_shaped_rtt(result["median"], 20.0), result
    assert result["loss"] == 0.0
    assert "natest1" not in namespaces()


def test_loss_over_1000_probes_is_within_2_points() -> None:
    shape = LinkShape(delay_ms=1, loss_ratio=0.1)
    with emulated_link("natest2", shape, LinkShape(delay_ms=1), subnet=212, seed=7) as link:
        # A lost probe costs its whole timeout; with a 2 ms RTT, 0.2 s is plenty.
        result = ping(link.namespaces[0], link.addresses[1], count=1000, interval_s=0.002, timeout_s=0.2)
    assert result["loss"] == pytest.approx(0.1, abs=0.02), result


def test_iperf3_measures_the_configured_rate() -> None:
    shape = LinkShape(delay_ms=5, rate_mbps=20)
    with emulated_link("natest3", shape, shape, subnet=213) as link:
        (client_ns, server_ns), (_, server_ip) = link.namespaces, link.addresses
        server = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.5)
            result = subprocess.run(
                ["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-t", "4", "-O", "1", "-J"],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
        finally:
            server.wait(timeout=10)
    measured_mbps = json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6
    assert measured_mbps == pytest.approx(20.0, rel=0.15), measured_mbps


def test_a_three_zone_profile_shapes_each_pair_of_a_multi_node_lab() -> None:
    import yaml

    from netaware.core.profiles import parse_profile

    profile_path = Path(__file__).resolve().parents[2] / "tc-scripts" / "profiles" / "three-zones.yaml"
    profile = parse_profile(yaml.safe_load(profile_path.read_text()))
    nodes = ["node-a1", "node-a2", "node-b1", "node-c1"]
    with EmulatedNetwork("natest4", nodes, profile.shapes(), subnet=214) as network:
        source = network.namespace_of("node-a1")
        for peer, expected_rtt_ms in (("node-a2", 1.0), ("node-b1", 20.0), ("node-c1", 40.0)):
            result = ping(source, network.address_of(peer), count=20, interval_s=0.05)
            assert matches_shaped_rtt(result["median"], expected_rtt_ms), (peer, result)
    assert "natest4" not in namespaces()


def test_a_link_where_no_probe_is_answered_is_left_unmeasured_never_priced_as_free() -> None:
    cut = LinkShape(delay_ms=1, loss_ratio=1.0)  # every echo request a -> b is lost, so neither direction answers
    with EmulatedNetwork("natest5", ["a", "b", "c"], {("a", "b"): cut}, subnet=215) as network:
        topology = measure_topology(network, probes=5, interval_s=0.01, bandwidth_seconds=0)
    assert topology.link("a", "b") is None and topology.link("b", "a") is None
    assert topology.link("a", "c") is not None and topology.link("c", "b") is not None
    costs = build_link_costs(topology.dense())
    index = {node: i for i, node in enumerate(topology.dense().nodes)}
    assert costs.cost[index["a"], index["b"]] == pytest.approx(costs.worst_link_cost)
    assert costs.cost[index["a"], index["c"]] < costs.worst_link_cost


def test_a_dead_peer_costs_a_round_nothing_but_its_own_probes() -> None:
    """One round of 20 probes 50 ms apart to a dead peer and a live one lasts 20 x 50 ms + the 1-s timeout, not
    20 lost probes x 1 s (icmplib's ping waits out each one): the live peer's figures are not held back."""
    cut, live = LinkShape(delay_ms=1, loss_ratio=1.0), LinkShape(delay_ms=5)
    with EmulatedNetwork("natest7", ["a", "b", "c"], {("a", "b"): cut, ("a", "c"): live}, subnet=217) as network:

        def one_round() -> tuple[float, list[tuple[int, float | None]]]:
            started = time.monotonic()
            hosts = icmp.ping([network.address_of("b"), network.address_of("c")], count=20, interval_s=0.05)
            return time.monotonic() - started, [(h.packets_received, statistics.median(h.rtts) if h.rtts else None)
                                                for h in hosts]  # fmt: skip

        elapsed_s, ((dead_answers, _), (live_answers, live_rtt)) = run_in(network.namespace_of("a"), one_round)
    assert dead_answers == 0 and live_answers == 20
    assert live_rtt == pytest.approx(5.0, abs=1.0)  # 5 ms out, the reply unshaped
    assert elapsed_s < 20 * 0.05 + icmp.DEFAULT_TIMEOUT_S + 0.5, elapsed_s


def test_a_live_reshape_changes_the_running_link_at_once_and_only_that_link() -> None:
    shape = LinkShape(delay_ms=5)
    with EmulatedNetwork("natest6", ["a", "b", "c"], {p: shape for p in PAIRS_OF_THREE}, subnet=216) as network:
        source = network.namespace_of("a")
        before = ping(source, network.address_of("b"), count=10, interval_s=0.05)
        network.reshape({("a", "b"): LinkShape(delay_ms=25), ("b", "a"): LinkShape(delay_ms=25)})
        after = ping(source, network.address_of("b"), count=10, interval_s=0.05)
        untouched = ping(source, network.address_of("c"), count=10, interval_s=0.05)
        assert network.shape_of("a", "b") == LinkShape(delay_ms=25)
        with pytest.raises(ValueError, match="not links of this network"):
            network.reshape({("a", "x"): shape})
    assert matches_shaped_rtt(before["median"], 10.0), before
    assert matches_shaped_rtt(after["median"], 50.0), after
    assert matches_shaped_rtt(untouched["median"], 10.0), untouched
