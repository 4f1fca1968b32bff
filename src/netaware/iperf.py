"""iperf3 as the probe agents and the lab run it: a bounded client run with JSON output (`-J`), inside a network
namespace when asked, answering the receiver's Mbit/s or None."""

from __future__ import annotations

import json
import logging
import math
import subprocess

IPERF_PORT = 5201
OMIT_S = 1
"""Seconds iperf3 runs before it starts counting (`--omit`): TCP's slow start at tens of milliseconds of RTT reads a
one-second test 15-30% low (71 vs 98 Mbit/s on a 100 Mbit/s, 40 ms lab link; 172 vs 193 at 200 Mbit/s, 20 ms)."""
log = logging.getLogger(__name__)


def in_namespace(netns: str | None, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *command] if netns else command


def server_command(netns: str | None, port: int = IPERF_PORT) -> list[str]:
    return in_namespace(netns, ["iperf3", "-s", "-p", str(port)])


def measure_mbps(address: str, *, seconds: float, netns: str | None = None, port: int = IPERF_PORT) -> float | None:
    """Mbit/s to `address` (the receiver's figure) over `seconds` after the first `OMIT_S`, or None when iperf3 failed
    or timed out. The run takes `seconds + OMIT_S`."""
    # iperf3 takes whole seconds (a fraction makes it run on and on); --connect-timeout bounds a dead peer.
    whole_seconds = max(1, math.ceil(seconds))
    deadline_s = whole_seconds + OMIT_S + 20
    command = ["iperf3", "-c", address, "-p", str(port), "-t", str(whole_seconds), "-O", str(OMIT_S), "-J",
               "--connect-timeout", "3000"]  # fmt: skip
    try:
        result = subprocess.run(
            in_namespace(netns, command), capture_output=True, text=True, timeout=deadline_s, check=False
        )
    except subprocess.TimeoutExpired:
        log.warning("iperf3 failed", extra={"peer": address, "reason": f"no answer within {deadline_s} s"})
        return None
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {}
    try:
        return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6
    except (KeyError, TypeError, ValueError):
        # iperf3 -J puts its reason in "error" (e.g. a read-only /tmp for its stream buffers); say it, or it is lost.
        reason = (report.get("error") if isinstance(report, dict) else None) or result.stderr.strip()[-300:]
        log.warning("iperf3 failed", extra={"peer": address, "exitCode": result.returncode, "reason": reason or "none"})
        return None
