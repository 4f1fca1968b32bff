"""The lab tier: real namespaces, the link emulator, real kubelets and containerd."""

from __future__ import annotations


def matches_shaped_rtt(measured_ms: float, shaped_ms: float) -> bool:
    """Whether a measured round trip is the one a link was shaped to, as closely as the userspace emulator delivers it.

    The relay never releases a packet early, so below the shape only the measurement's own noise is allowed; above
    it, the relay's and the prober's wake-ups add time that grows with how slow the machine is that day: 0.3-0.5 ms
    on an idle 2-core VM (10.35-10.50 ms median for a 10 ms round trip), while a fresh-clone CI run on a slow day
    read 11.15 on 10, and 22.04 and 22.1 on 20 (the whole run took 2.5x its usual time). The bound above still tells
    every zone pair of the profiles apart (20, 30 and 40 ms) and a link that was never shaped (1 ms) from one that
    was."""
    below = max(1.0, 0.1 * shaped_ms)
    above = max(1.5, 0.2 * shaped_ms)
    return shaped_ms - below <= measured_ms <= shaped_ms + above
