"""The aggregator's side of the Kubernetes API: publish the topology as NetworkTopology resources (one per origin
node, plus the zone model in the compact form), debounced and only when an origin's links changed, and recover the
measured links from them after a restart (the journal covers a restart on the same disk; the resources cover a move
to another node)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from netaware.aggregator.reading import SharedTopology, TopologyForm
from netaware.core.telemetry import LinkAggregator
from netaware.kube import api as kube
from netaware.kube.api import API_ERRORS
from netaware.kube.applying import write_networktopologies
from netaware.kube.converters import (
    GROUP,
    VERSION,
    compact_networktopology_resources,
    networktopology_resources,
    topology_from_resources,
)
from netaware.kube.watching import list_raw

log = logging.getLogger("netaware.aggregator")
FIELD_MANAGER = "netaware-aggregator"
"""Who the NetworkTopologies' managed fields name as their writer."""


def recover(api: kube.ApiClient, aggregator: LinkAggregator) -> int:
    """Seed `aggregator` with the measured links of the published NetworkTopologies; returns how many."""
    custom = kube.CustomObjectsApi(api)
    listed = list_raw(lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, "networktopologies", **kw))
    topology = topology_from_resources(listed.get("items") or [], estimate=False)
    for (origin, destination), metrics in topology.links.items():
        aggregator.seed(origin, destination, metrics)
    return sum(1 for m in topology.links.values() if m.source == "measured")


class Publisher:
    """Every `debounce_s`, write the NetworkTopologies whose content changed since the last write, in the compact
    form (measured links, offsets and zone pairs: `compact_networktopology_resources`) or the full one (every pair,
    for readers older than the compact form)."""

    def __init__(
        self, api: kube.ApiClient, shared: SharedTopology, *, debounce_s: float = 5.0, form: TopologyForm = "compact"
    ) -> None:
        self.api = api
        self.shared = shared
        self.debounce_s = debounce_s
        self.form = form
        self.written: dict[str, str] = {}
        self.writes = 0

    def resources(self) -> list[dict[str, Any]]:
        """What would be written now."""
        reading, ttl_s = self.shared.read(), self.shared.aggregator.ttl_s
        if self.form == "compact":
            return compact_networktopology_resources(
                reading.snapshot, reading.model, reading.names, zones=reading.zones, ttl_s=ttl_s
            )
        return networktopology_resources(reading.topology, zones=reading.zones, now_s=reading.now_s, ttl_s=ttl_s)

    def publish_once(self) -> list[str]:
        resources = self.resources()
        changed = []
        for resource in resources:
            fingerprint = json.dumps(resource["spec"], sort_keys=True)
            if self.written.get(resource["metadata"]["name"]) != fingerprint:
                changed.append((resource, fingerprint))
        if changed:
            write_networktopologies(self.api, [resource for resource, _ in changed], field_manager=FIELD_MANAGER)
            for resource, fingerprint in changed:
                self.written[resource["metadata"]["name"]] = fingerprint
            self.writes += len(changed)
        return [resource["metadata"]["name"] for resource, _ in changed]

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.debounce_s):
            try:
                self.publish_once()
            except API_ERRORS as error:  # the API is away: the next period tries again
                log.warning("publishing NetworkTopologies failed", extra={"error": str(error)})

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="publisher", daemon=True)
        thread.start()
        return thread
