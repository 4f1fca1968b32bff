"""The topology every reader of the aggregator sees (`GET /v1/topology`, `/metrics`, publishing), computed so that
reading never holds up reports.

Under the aggregator's lock only a snapshot is taken: one pass over the links it holds (tens of thousands at 1,000
nodes), keeping the fresh measurements, the unanswered pairs and the silent nodes. Presenting every directed pair
(n^2: a million at 1,000 nodes) then runs outside the lock, while reports are accepted. Readers that arrive while a
computation runs wait for it and share its result (single flight), so a burst of GETs, a scrape and a publish cost one
computation, at most one computation old. The compact NetworkTopology form needs only the zone model, so publishing
never presents the n^2 pairs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Literal

from netaware.core.telemetry import LinkAggregator, TelemetrySnapshot, ZoneModel, estimated_topology
from netaware.core.topology import Topology

TopologyForm = Literal["compact", "full"]
"""How NetworkTopology resources are written (`aggregator.publishing.Publisher`)."""
TOPOLOGY_FORMS: tuple[TopologyForm, ...] = ("compact", "full")


class TopologyReading:
    """One computation's view: the snapshot and the zone model fitted to it (cheap: what the compact NetworkTopology
    form publishes), and every directed pair presented from them (n^2, made the first time a reader asks)."""

    def __init__(
        self,
        snapshot: TelemetrySnapshot,
        model: ZoneModel,
        names: list[str],
        zones: dict[str, str],
        last_report_s: dict[str, float],
    ) -> None:
        self.snapshot, self.model, self.names, self.zones, self.last_report_s = (
            snapshot, model, names, zones, last_report_s,
        )  # fmt: skip
        self.now_s = snapshot.now_s
        self.stale_nodes = sorted(snapshot.silent)
        self._topology: Topology | None = None
        self._presenting = threading.Lock()

    @property
    def topology(self) -> Topology:
        with self._presenting:
            if self._topology is None:
                self._topology = estimated_topology(self.snapshot, self.names, zones=self.zones, model=self.model)
            return self._topology


class SharedTopology:
    def __init__(
        self,
        aggregator: LinkAggregator,
        lock: threading.Lock,
        *,
        nodes: Callable[[], Iterable[str]],
        zones: Callable[[], dict[str, str]],
        clock: Callable[[], float],
    ) -> None:
        self.aggregator, self.lock, self.nodes, self.zones, self.clock = aggregator, lock, nodes, zones, clock
        self.computations = 0
        self._computing = threading.Lock()
        self._latest: TopologyReading | None = None

    def read(self) -> TopologyReading:
        """The current topology of the known nodes (the node list's own errors propagate)."""
        asked_after = self.computations
        with self._computing:
            if self.computations > asked_after and self._latest is not None:
                return self._latest  # finished while this reader waited for it
            reading = self.compute(list(dict.fromkeys(self.nodes())), self.zones())
            self._latest = reading
            self.computations += 1
            return reading

    def compute(self, names: list[str], zones: dict[str, str]) -> TopologyReading:
        """The topology of `names`, computed now (not shared: for a caller with its own node list)."""
        now_s = self.clock()
        with self.lock:
            snapshot = self.aggregator.snapshot(now_s)
            last_report_s = dict(self.aggregator.last_report_s)
        return TopologyReading(snapshot, ZoneModel.fit(snapshot, names, zones), names, zones, last_report_s)
