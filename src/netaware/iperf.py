"""iperf3 as the probe agents and the lab run it: a bounded client run with JSON output (`-J`), inside a network
namespace when asked, answering the receiver's Mbit/s or None."""

from __future__ import annotations

import json
import math
import subprocess

IPERF_PORT = 5201


def in_namespace(netns: str | None, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *command] if netns else command


def server_command(netns: str | None, port: int = IPERF_PORT) -> list[str]:
    return in_namespace(netns, ["iperf3", "-s", "-p", str(port)])


def measure_mbps(address: str, *, seconds: float, netns: str | None = None, port: int = IPERF_PORT) -> float | None:
    """Mbit/s to `address` (the receiver's figure), or None when iperf3 failed or timed out."""
    # iperf3 takes whole seconds (a fraction makes it run on and on); --connect-timeout bounds a dead peer.
    whole_seconds = max(1, math.ceil(seconds))
    command = ["iperf3", "-c", address, "-p", str(port), "-t", str(whole_seconds), "-J", "--connect-timeout", "3000"]
    try:
        result = subprocess.run(
            in_namespace(netns, command), capture_output=True, text=True, timeout=whole_seconds + 20, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    try:
        report = json.loads(result.stdout)
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6
    except (ValueError, KeyError, TypeError):
        return None
