"""Quantities as Kubernetes and our CRDs write them: CPU in millicores, durations ("1m30s", "500ms") in seconds."""

from __future__ import annotations

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


def duration_seconds(text: str) -> float:
    """A duration as the CRDs write it ("5s", "1m30s", "250ms") in seconds; ValueError naming the text otherwise."""
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(m.group(0) for m in parts) != text:
        raise ValueError(f"duration {text!r}: expected numbers with units ms, s, m or h, such as 5s or 1m30s")
    return sum(float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in parts)
