"""Telemetry end to end over shaped links: real probe agents (real ICMP and iperf3 from inside the lab's node
namespaces) post to the real aggregator API over HTTP, and the topology it serves matches the shaped links.

Three nodes through the lab's link emulator: a<->b 10 ms each way (RTT 20 ms), a<->c 2 ms each way with 5% loss
from a to c, b->c rate-limited to 20 Mbit/s. Checks: RTT within 10% or 1 ms of the shaped RTT; loss within 2
points over 200 probes (round-trip loss: a->c's 5% shows from both ends); bandwidth within 15% (b's iperf3 test of
c, run when the aggregator's plan makes b the client of c); a node that stops reporting is listed stale once the
TTL has passed and its links are left unknown, neither measured nor estimated. Needs root; fails loudly without it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from netaware.aggregator.app import create_app
from netaware.aggregator.journal import ReportJournal
from netaware.core.links import LinkShape
from netaware.core.topology import LEVEL_SHIFT_ROUNDS
from netaware.lab.emulating import EmulatedNetwork
from netaware.probe.agent import AgentSettings, ProbeAgent
from tests.conftest import serving
from tests.lab import matches_shaped_rtt

pytestmark = pytest.mark.netns

TOKEN = "lab-token"
NODES = ["a", "b", "c"]
SHAPES = {
    ("a", "b"): LinkShape(delay_ms=10), ("b", "a"): LinkShape(delay_ms=10),
    ("a", "c"): LinkShape(delay_ms=2, loss_ratio=0.05), ("c", "a"): LinkShape(delay_ms=2),
    ("b", "c"): LinkShape(rate_mbps=20),
}  # fmt: skip
EXPECTED_RTT_MS = {
    ("a", "b"): 20.0,
    ("b", "a"): 20.0,
    ("a", "c"): 4.0,
    ("c", "a"): 4.0,
    ("b", "c"): 0.0,
    ("c", "b"): 0.0,
}
TTL_S = 20.0


@pytest.fixture(scope="module")
def network() -> Iterator[EmulatedNetwork]:
    if os.geteuid() != 0:
        pytest.fail("the lab tier needs root (network namespaces, TUN devices); run it as root", pytrace=False)
    with EmulatedNetwork("natel", NODES, SHAPES, subnet=243, seed=5) as emulated:
        yield emulated


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = create_app(
        token=TOKEN, nodes=lambda: NODES, journal=ReportJournal(tmp_path_factory.mktemp("agg") / "journal.jsonl"),
        ttl_s=TTL_S, bandwidth_slot_s=5.0, bandwidth_test_s=3,
    )  # fmt: skip
    with serving(app) as url:
        yield url


def agent_for(node: str, network: EmulatedNetwork, url: str, probes: int = 200) -> ProbeAgent:
    peers = {peer: network.address_of(peer) for peer in network.nodes if peer != node}
    settings = AgentSettings(
        node=node, peers=peers, aggregator_url=url, token=TOKEN, probes=probes, interval_s=0.01,
        netns=network.namespace_of(node),
    )  # fmt: skip
    return ProbeAgent(settings)


def topology(url: str) -> dict[str, Any]:
    return requests.get(f"{url}/v1/topology", timeout=5).json()  # type: ignore[no-any-return]


def test_measured_topology_matches_the_shaped_links(network: EmulatedNetwork, aggregator: str) -> None:
    agents = [agent_for(node, network, aggregator) for node in NODES]
    reports: list[dict[str, Any]] = [{}] * len(agents)

    def measure(index: int) -> None:
        reports[index] = agents[index].measure()

    threads = [threading.Thread(target=measure, args=(i,)) for i in range(len(agents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for agent, report in zip(agents, reports, strict=True):
        agent.enqueue(report)
        assert agent.deliver() == 1, agent.pending
    links = {(link["origin"], link["destination"]): link for link in topology(aggregator)["links"]}
    for pair, expected in EXPECTED_RTT_MS.items():
        link = links[pair]
        assert link["source"] == "measured", link
        assert matches_shaped_rtt(link["rttMs"], expected), (pair, link["rttMs"], expected)
        assert link["samples"] == 200
    # An echo and its reply cross both directions, so ICMP sees a->c's 5% from either end (round-trip loss). Over one
    # round of 200 probes the ratio's standard deviation is 1.5 points (a 1.3-sigma draw once failed a 2-point bound):
    # three of them. The emulator's own loss is held to 2 points over 1,000 probes (test_link_emulator.py).
    tolerance = 3 * math.sqrt(0.05 * 0.95 / 200)
    for pair in [("a", "c"), ("c", "a")]:
        assert abs(links[pair]["lossRatio"] - 0.05) <= tolerance, (pair, links[pair])
    for pair in EXPECTED_RTT_MS.keys() - {("a", "c"), ("c", "a")}:
        assert links[pair]["lossRatio"] <= 0.02, (pair, links[pair])


def test_bandwidth_follows_the_plan_and_matches_the_shaped_rate(network: EmulatedNetwork, aggregator: str) -> None:
    agents = {node: agent_for(node, network, aggregator, probes=10) for node in NODES}
    servers = [agent.start_iperf_server() for agent in agents.values()]
    try:
        time.sleep(0.3)  # the servers bind
        deadline = time.monotonic() + 45  # a whole cycle is 6 slots of 5 s
        tested: list[str | None] = []
        while "c" not in tested and time.monotonic() < deadline:
            tested.append(agents["b"].follow_bandwidth_plan())
            time.sleep(0.5)
        assert "c" in tested, "b's turn as the client of c never came"
        agents["b"].enqueue(agents["b"].measure())
        assert agents["b"].deliver() == 1
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=5)
    link = {(k["origin"], k["destination"]): k for k in topology(aggregator)["links"]}[("b", "c")]
    assert link["bandwidthMbps"] is not None and abs(link["bandwidthMbps"] - 20.0) <= 3.0, link


def test_a_node_that_stops_reporting_goes_stale(network: EmulatedNetwork, aggregator: str) -> None:
    # The previous test's round is the last one node c reported; a and b report again after the TTL.
    time.sleep(TTL_S + 0.5)
    for node in ("a", "b"):
        agent = agent_for(node, network, aggregator, probes=20)
        agent.enqueue(agent.measure())
        assert agent.deliver() == 1
    current = topology(aggregator)
    assert current["staleNodes"] == ["c"]
    links = {(link["origin"], link["destination"]): link for link in current["links"]}
    # c's own measurements are stale and c is silent, as a node cut off would be: its links are left unknown (the
    # worst price), not estimated from the fresh reverse direction; what a measures towards c stays measured.
    assert links[("a", "c")]["source"] == "measured"
    assert not any(link["origin"] == "c" for link in current["links"])


def test_a_raised_delay_shows_within_the_level_shift_rounds(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The aggregator holds back one odd round (outlier) but follows LEVEL_SHIFT_ROUNDS rounds on the new level:
    with the agents' 10-s rounds and 5-s publishing, a changed link shows within 25 s."""
    app = create_app(token=TOKEN, nodes=lambda: ["a", "b"], ttl_s=600)
    with serving(app) as url:

        def rtt_after_round(network: EmulatedNetwork) -> float:
            agent = agent_for("a", network, url, probes=20)
            agent.enqueue(agent.measure())
            assert agent.deliver() == 1
            links = {(k["origin"], k["destination"]): k for k in topology(url)["links"]}
            return float(links[("a", "b")]["rttMs"])

        slow, fast = LinkShape(delay_ms=25), LinkShape(delay_ms=5)
        with EmulatedNetwork("natech", ["a", "b"], {("a", "b"): fast, ("b", "a"): fast}, subnet=244) as network:
            for _ in range(3):
                before = rtt_after_round(network)
            network.reshape({("a", "b"): slow, ("b", "a"): slow})  # live, as `netaware lab shape` does
            seen = [rtt_after_round(network) for _ in range(LEVEL_SHIFT_ROUNDS)]
        # The emulator forwards in user space: on a busy 2-core machine it adds up to a couple of ms, never less.
        assert -0.5 <= before - 10.0 <= 2.0, before
        assert seen[0] < 20.0, seen  # one round at the new level is held back as an outlier...
        assert abs(seen[-1] - 50.0) <= 5.0, seen  # ...and LEVEL_SHIFT_ROUNDS rounds in a row move the estimate
