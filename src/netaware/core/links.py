"""Emulated links: when does a packet leave, and is it dropped. Pure, so the emulator's timing is testable
without a network.

A link has a one-way delay, optional jitter, a loss ratio and a rate. A packet of `size` bytes entering at `now`
is released at

    release = max(now, previous_release_end) + size * 8 / rate      (serialisation at the link rate; FIFO)
              + delay + jitter sample                                (propagation)

Jitter never reorders packets (a packet never leaves before the one in front of it), which is what netem does
wrong for TCP (reference/telemetry-and-workloads.md, pitfall 4). Loss is an independent draw per packet.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkShape:
    delay_ms: float = 0.0
    """One-way delay; a path's RTT is the sum of both directions' delays."""
    jitter_ms: float = 0.0
    """Standard deviation of a normal delay variation (clipped so packets keep their order)."""
    loss_ratio: float = 0.0
    rate_mbps: float | None = None
    """None: unlimited."""

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= self.loss_ratio <= 1.0:
            raise ValueError(f"loss_ratio must be within 0..1, got {self.loss_ratio!r}")
        if self.rate_mbps is not None and not (math.isfinite(self.rate_mbps) and self.rate_mbps > 0):
            raise ValueError(f"rate_mbps must be > 0, got {self.rate_mbps!r}")


@dataclass
class LinkClock:
    """The FIFO state of one direction of one link."""

    shape: LinkShape
    wire_free_at_s: float = 0.0
    """When the previous packet finished serialising."""
    last_release_s: float = 0.0

    def schedule(self, *, now_s: float, size_bytes: int, rng: random.Random) -> float | None:
        """Release time of a packet entering now, or None if the link drops it."""
        if self.shape.loss_ratio and rng.random() < self.shape.loss_ratio:
            return None
        start = max(now_s, self.wire_free_at_s)
        serialisation = size_bytes * 8 / (self.shape.rate_mbps * 1e6) if self.shape.rate_mbps else 0.0
        self.wire_free_at_s = start + serialisation
        delay = self.shape.delay_ms / 1e3
        if self.shape.jitter_ms:
            delay = max(0.0, delay + rng.gauss(0.0, self.shape.jitter_ms / 1e3))
        release = max(self.wire_free_at_s + delay, self.last_release_s)  # never overtake
        self.last_release_s = release
        return release
