"""The netem-free link emulator (lab/emulating.py) with real ICMP and real iperf3 across real namespaces.

Checks: a ping across a link shaped to 10 ms each way shows 20 ms RTT (within 10% or 1 ms); loss over 1,000
probes is within 2 points of the configured ratio; iperf3 over a 20 Mbit/s link measures the rate within 15%;
after stop() no namespace is left. Needs root: without it the tier fails loudly instead of skipping silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from netaware.core.links import LinkShape
from netaware.lab.emulating import EmulatedLink

pytestmark = pytest.mark.netns


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the lab tier needs root (network namespaces, TUN devices); run it as root", pytrace=False)


def ping(namespace: str, address: str, *, count: int, interval_s: float, timeout_s: float = 1.0) -> dict[str, float]:
    script = (
        "import json; from icmplib import ping; "
        f"h = ping({address!r}, count={count}, interval={interval_s}, timeout={timeout_s}, privileged=True); "
        "print(json.dumps({'avg': h.avg_rtt, 'min': h.min_rtt, 'loss': h.packet_loss}))"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", script],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_ping_shows_the_configured_delay() -> None:
    with EmulatedLink("natest1", LinkShape(delay_ms=10), LinkShape(delay_ms=10), subnet=211) as link:
        result = ping(link.namespaces[0], link.addresses[1], count=30, interval_s=0.05)
    assert result["avg"] == pytest.approx(20.0, abs=max(1.0, 0.1 * 20.0)), result
    assert result["loss"] == 0.0
    assert "natest1" not in namespaces()


def test_loss_over_1000_probes_is_within_2_points() -> None:
    shape = LinkShape(delay_ms=1, loss_ratio=0.1)
    with EmulatedLink("natest2", shape, LinkShape(delay_ms=1), subnet=212, seed=7) as link:
        # A lost probe costs its whole timeout; with a 2 ms RTT, 0.2 s is plenty.
        result = ping(link.namespaces[0], link.addresses[1], count=1000, interval_s=0.002, timeout_s=0.2)
    assert result["loss"] == pytest.approx(0.1, abs=0.02), result


def test_iperf3_measures_the_configured_rate() -> None:
    shape = LinkShape(delay_ms=5, rate_mbps=20)
    with EmulatedLink("natest3", shape, shape, subnet=213) as link:
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
