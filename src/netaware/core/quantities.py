"""Kubernetes resource quantities the placement code needs: CPU in millicores."""

from __future__ import annotations

from typing import Any


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
