"""The probe agent's report building and delivery (probe/agent.py), against the real aggregator API over HTTP on
loopback; the pinger is replaced by canned icmplib results (the real ICMP path is the lab tier's accuracy test).

Checks: a round reports median RTT, jitter and counts per peer, and a peer that answered nothing has no RTT;
while the aggregator is down, reports wait in the buffer (oldest dropped beyond its size, and counted) and are
delivered in order once it is back, after the backoff; a report the aggregator refuses (4xx) is dropped, not
retried forever; iperf3 measures on loopback, and a test that fails logs iperf3's own reason.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import icmplib
import pytest
import requests
from flask import Flask

from netaware.aggregator.app import create_app
from netaware.core.peers import DEFAULT_PROBES_PER_SECOND
from netaware.iperf import measure_mbps
from netaware.probe.__main__ import main as probe_main
from netaware.probe.__main__ import parser as probe_parser
from netaware.probe.agent import AgentSettings, ProbeAgent
from netaware.processes import wait_until
from tests.conftest import serving, unused_port

TOKEN = "t0ken"
PEERS = {"b": "10.0.0.2", "c": "10.0.0.3"}


def canned(addresses: list[str], count: int, interval_s: float) -> list[icmplib.Host]:
    hosts = []
    for address in addresses:
        rtts = [] if address == "10.0.0.3" else [4.0, 5.0, 6.0, 50.0][:count]
        hosts.append(icmplib.Host(address, count, rtts))
    return hosts


def agent(url: str, buffer_size: int = 10) -> ProbeAgent:
    settings = AgentSettings(node="a", peers=PEERS, aggregator_url=url, token=TOKEN, probes=4, buffer_size=buffer_size)
    return ProbeAgent(settings, pinger=canned, clock=lambda: 1_000_000.0)


def aggregator_app() -> Flask:
    return create_app(token=TOKEN, nodes=lambda: ["a", "b", "c"], clock=lambda: 1_000_001.0, ttl_s=3600)


@pytest.fixture
def aggregator() -> Iterator[str]:
    with serving(aggregator_app()) as url:
        yield url


def test_a_round_reports_medians_and_counts() -> None:
    report = agent(f"http://127.0.0.1:{unused_port()}").measure()
    b, c = report["peers"]
    assert (b["peer"], b["sent"], b["received"], b["rttMs"]) == ("b", 4, 4, 5.5)  # median, not the 50 ms outlier
    assert (c["peer"], c["sent"], c["received"]) == ("c", 4, 0) and "rttMs" not in c


def test_reports_wait_while_the_aggregator_is_down_and_arrive_in_order() -> None:
    port = unused_port()
    probe = agent(f"http://127.0.0.1:{port}", buffer_size=3)
    for _ in range(5):
        probe.enqueue(probe.measure())
    assert probe.deliver(now_s=0.0) == 0  # nothing listens yet
    assert (len(probe.pending), probe.dropped) == (3, 2)
    with serving(aggregator_app(), port=port) as url:
        assert probe.deliver(now_s=0.1) == 0  # still backing off (0.5 s after the failure)
        assert probe.deliver(now_s=1.0) == 3
        assert not probe.pending
        links = requests.get(f"{url}/v1/topology", timeout=5).json()["links"]
        assert any(link["origin"] == "a" and link["destination"] == "b" for link in links)


def test_a_refused_report_is_dropped_not_retried(aggregator: str) -> None:
    probe = agent(aggregator)
    probe.enqueue({"node": "a", "measuredAt": 1, "peers": [{"peer": "zz", "sent": 1, "received": 1, "rttMs": 1}]})
    probe.enqueue(probe.measure())
    assert probe.deliver(now_s=0.0) == 1  # the refused one is gone, the good one delivered
    assert not probe.pending
    assert probe.registry.get_sample_value("netaware_probe_reports_total", {"outcome": "refused"}) == 1.0


def listening(port: int) -> bool:
    # Asks the kernel, not the server: iperf3 takes any connection for a client, and a probe connection that sends no
    # parameters makes it busy with an error while the real test arrives.
    sockets = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return bool(sockets.strip())


def test_iperf3_measures_on_loopback_and_a_failed_test_logs_iperf3s_reason(caplog: pytest.LogCaptureFixture) -> None:
    port = unused_port()
    with caplog.at_level("WARNING", logger="netaware.iperf"):
        assert measure_mbps("127.0.0.1", seconds=1, port=port) is None  # nothing listens there
    (record,) = caplog.records
    assert record.getMessage() == "iperf3 failed" and "refused" in record.__dict__["reason"], record.__dict__
    server = subprocess.Popen(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port), timeout_s=10, what="the iperf3 server listening")
        mbps = measure_mbps("127.0.0.1", seconds=1, port=port)
        assert mbps is not None and mbps > 100  # loopback carries gigabits
    finally:
        server.kill()
        server.wait()


def test_under_a_budget_a_round_probes_few_peers_twice_each_and_covers_the_zones() -> None:
    peers = {f"n{i:02d}": f"10.0.1.{i}" for i in range(1, 40)}
    zones = {"n00": "z0"} | {name: f"z{i % 4}" for i, name in enumerate(peers, start=1)}
    pinged: list[tuple[int, int]] = []

    def counting(addresses: list[str], count: int, interval_s: float) -> list[icmplib.Host]:
        pinged.append((len(addresses), count))
        return [icmplib.Host(address, count, [1.0] * count) for address in addresses]

    settings = AgentSettings(node="n00", peers=peers, aggregator_url="http://127.0.0.1:1", token=TOKEN,
                             round_s=10.0, probes_per_second=1.0)  # fmt: skip
    clock = [1_000_000.0]
    budgeted = ProbeAgent(settings, pinger=counting, zone_source=lambda: zones, clock=lambda: clock[0])
    seen_zones = set()
    for _ in range(4):  # this node is one of ten in z0, so its duty share comes round once in a while
        report = budgeted.measure()
        seen_zones |= {zones[p["peer"]] for p in report["peers"]}
        clock[0] += 10.0
    assert all(peers_pinged * probes <= 10 and probes == 2 for peers_pinged, probes in pinged), pinged
    assert "z0" in seen_zones and len(seen_zones) >= 2
    with pytest.raises(ValueError, match="less than one peer's 2 probes"):
        AgentSettings(node="a", peers=PEERS, aggregator_url="http://x", token=TOKEN, probes_per_second=0.1)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--probes", "5"], "--probes and --peer-limit apply without a budget only"),
        (["--probes-per-second", "1", "--peer-limit", "8"], "add --probes-per-second 0"),
        (["--probes-per-second", "-1"], "must be 0 (no budget) or more"),
        (["--probes-per-second", "0.1"], "less than one"),
    ],
)
def test_the_agents_cli_refuses_a_budget_mixed_with_fixed_probing(
    arguments: list[str], reason: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is the default (1 probe/s); --probes and --peer-limit belong to probing without one."""
    monkeypatch.setenv("NETAWARE_AGGREGATOR_TOKEN", TOKEN)
    with pytest.raises(SystemExit) as exited:
        probe_main(["--node", "a", "--aggregator", "http://127.0.0.1:1", *arguments])
    assert exited.value.code == 2
    assert reason in capsys.readouterr().err


def test_the_agents_cli_defaults_to_the_budget() -> None:
    defaults = probe_parser().parse_args(["--node", "a", "--aggregator", "http://x"])
    assert (defaults.probes_per_second, defaults.probes, defaults.peer_limit) == (DEFAULT_PROBES_PER_SECOND, None, None)
    assert "0: no budget" in " ".join(probe_parser().format_help().split())
