"""Quantities as Kubernetes and our CRDs write them: CPU in millicores, memory in bytes, durations ("1m30s",
"500ms") in seconds."""

from __future__ import annotations

import math
import re
from typing import Any

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def cpu_millicores(quantity: Any) -> int:
    """A CPU quantity ("500m", "2", "0.5", 1) in millicores; 0 when absent or unreadable."""
    if quantity is None:
        return 0
    text = str(quantity).strip()
    try:
        if text.endswith("m"):
            return int(float(text[:-1]))
        return round(float(text) * 1000)
    except ValueError:
        return 0


_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?")
_MEMORY_FACTOR = {
    None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def memory_bytes(quantity: Any) -> int:
    """A memory quantity ("128Mi", "1G", "1e9", 1024) in bytes, rounded up as Kubernetes does; ValueError
    naming the text when it is not a quantity."""
    text = str(quantity).strip()
    match = _MEMORY.fullmatch(text)
    if not match:
        raise ValueError(f"memory quantity {text!r}: expected a number with an optional suffix such as Mi or G")
    return math.ceil(float(match.group(1)) * _MEMORY_FACTOR[match.group(2)])


def duration_seconds(text: str) -> float:
    """A duration as the CRDs write it ("5s", "1m30s", "250ms") in seconds; ValueError naming the text otherwise."""
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(m.group(0) for m in parts) != text:
        raise ValueError(f"duration {text!r}: expected numbers with units ms, s, m or h, such as 5s or 1m30s")
    return sum(float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in parts)
