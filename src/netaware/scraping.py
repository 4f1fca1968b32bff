"""Reading a service's Prometheus `/metrics` from a test, a benchmark or an experiment: a counter's totals by label."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def counter_totals(
    url: str, family: str, labels: tuple[str, ...], *, timeout_s: float = 5.0
) -> dict[tuple[str, ...], float]:
    """The `family` counter at `url` (a `/metrics` address), summed by the values of `labels` (missing ones: "")."""
    answer = requests.get(url, timeout=timeout_s)
    answer.raise_for_status()
    totals: dict[tuple[str, ...], float] = {}
    for metric in text_string_to_metric_families(answer.text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = tuple(sample.labels.get(label, "") for label in labels)
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals
