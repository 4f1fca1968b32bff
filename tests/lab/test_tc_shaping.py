"""tc-scripts applied for real, on a veth pair between two namespaces this test creates.

This kernel has no netem, so the test applies the profile's rate classes only (`--no-netem`: htb + u32 per
destination), which is the part of the recipe the kernel here can run. Checks: iperf3 towards the shaped
destination measures the profile's rate (within 15%); applying twice leaves the same classes and filters
(idempotent); clear removes the shaping. Needs root (fails loudly without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from netaware.core.profiles import parse_profile
from netaware.tc.shaping import Shaping, apply_commands, clear_commands, show_commands

pytestmark = pytest.mark.netns

PROFILE = parse_profile(
    {
        "name": "two-zones",
        "zones": {"a": {}, "b": {}},
        "nodes": {"n1": "a", "n2": "b"},
        "default": {"rateMbps": 1000},
        "zonePairs": [{"from": "a", "to": "b", "delayMs": 5, "rateMbps": 30}],
    }
)


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=check)


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.fail("the lab tier needs root (network namespaces); run it as root", pytrace=False)
    a, b = "natc-a", "natc-b"
    for namespace in (a, b):
        sh("ip", "netns", "del", namespace, check=False)
        sh("ip", "netns", "add", namespace)
    sh("ip", "link", "add", "natc0", "netns", a, "type", "veth", "peer", "name", "natc1", "netns", b)
    for namespace, device, address in ((a, "natc0", "10.77.0.1/24"), (b, "natc1", "10.77.0.2/24")):
        sh("ip", "-n", namespace, "addr", "add", address, "dev", device)
        sh("ip", "-n", namespace, "link", "set", device, "up")
        sh("ip", "-n", namespace, "link", "set", "lo", "up")
    try:
        yield a, b
    finally:
        for namespace in (a, b):
            sh("ip", "netns", "del", namespace, check=False)


def apply(namespace: str) -> None:
    commands = apply_commands(PROFILE, "n1", {"n2": "10.77.0.2"}, Shaping("natc0", namespace), netem=False)
    sh(*commands[0], check=False)  # deleting a root qdisc that is not there fails; apply ignores it
    for command in commands[1:]:
        sh(*command)


def iperf_mbps(client_ns: str, server_ns: str) -> float:
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", "10.77.0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        result = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", "10.77.0.2", "-t", "3", "-O", "1", "-J")
    finally:
        server.wait(timeout=10)
    return float(json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6


def test_rate_classes_shape_the_destination_and_apply_is_idempotent(pair: tuple[str, str]) -> None:
    a, b = pair
    apply(a)
    shown_once = [sh(*c).stdout for c in show_commands(Shaping("natc0", a))[1:]]
    apply(a)
    assert [sh(*c).stdout for c in show_commands(Shaping("natc0", a))[1:]] == shown_once
    assert ("rate 30Mbit" in shown_once[0] and "10.77.0.2" not in shown_once[1]) or "flowid 1:10" in shown_once[1]
    assert iperf_mbps(a, b) == pytest.approx(30.0, rel=0.15)
    sh(*clear_commands(Shaping("natc0", a))[0])
    assert "htb" not in sh("tc", "-n", a, "qdisc", "show", "dev", "natc0").stdout
    assert iperf_mbps(a, b) > 100  # unshaped again
