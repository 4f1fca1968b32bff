"""Emulated link timing (core/links.py): delay, serialisation at the rate, FIFO under jitter, loss ratio, and
validation of shapes."""

from __future__ import annotations

import random

import pytest

from netaware.core.links import LinkClock, LinkShape


def test_delay_only() -> None:
    clock = LinkClock(LinkShape(delay_ms=10))
    assert clock.schedule(now_s=1.0, size_bytes=1500, rng=random.Random(0)) == pytest.approx(1.010)


def test_back_to_back_packets_queue_at_the_rate() -> None:
    clock = LinkClock(LinkShape(delay_ms=5, rate_mbps=12))  # 1500 B = 1 ms at 12 Mbit/s
    rng = random.Random(0)
    releases = [clock.schedule(now_s=0.0, size_bytes=1500, rng=rng) for _ in range(3)]
    assert releases == pytest.approx([0.006, 0.007, 0.008])


def test_jitter_never_reorders() -> None:
    clock = LinkClock(LinkShape(delay_ms=20, jitter_ms=10))
    rng = random.Random(1)
    releases = [clock.schedule(now_s=i * 0.0001, size_bytes=100, rng=rng) for i in range(2000)]
    assert releases == sorted(releases)


def test_loss_ratio_over_many_packets() -> None:
    clock = LinkClock(LinkShape(loss_ratio=0.1))
    rng = random.Random(2)
    dropped = sum(clock.schedule(now_s=0, size_bytes=100, rng=rng) is None for _ in range(20000))
    assert dropped / 20000 == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize(
    "kwargs", [{"delay_ms": -1}, {"loss_ratio": 1.5}, {"rate_mbps": 0}, {"jitter_ms": float("nan")}]
)
def test_invalid_shapes_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkShape(**kwargs)
