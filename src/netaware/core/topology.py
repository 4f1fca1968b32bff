"""The network topology model: measured node-pair link metrics, their smoothing and their freshness.

A `Topology` is a set of directed links between named nodes. Each link carries the metrics the cost function
needs (RTT, bandwidth, loss) plus how much we trust them (samples, when measured, measured or estimated).
`DenseTopology` is the same data as node-indexed numpy matrices, which is what scoring runs on.

Missing data is explicit: an unmeasured pair, or a metric that was not measured (bandwidth often is not), is NaN
in the dense view and never reads as 0. The cost function turns NaN into the worst value (see `costs.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

LinkSource = Literal["measured", "estimated"]

FloatMatrix = npt.NDArray[np.float32]


class TopologyError(ValueError):
    """A link or topology that cannot be meaningful (negative RTT, loss outside 0..1, unknown node)."""


@dataclass(frozen=True, slots=True)
class LinkMetrics:
    """Metrics of one directed link origin -> destination."""

    rtt_ms: float
    """Round-trip time in milliseconds (a robust per-round statistic such as the median, smoothed)."""
    bandwidth_mbps: float | None = None
    """Achievable throughput origin -> destination in Mbit/s; None when not measured yet."""
    loss_ratio: float = 0.0
    """Packet loss as a ratio 0..1 (never a percent)."""
    jitter_ms: float = 0.0
    """RTT variation in milliseconds (mean deviation)."""
    samples: int = 0
    """How many probes the figures rest on."""
    measured_at_s: float | None = None
    """Unix time of the last measurement; None for a link that was never measured (estimated only)."""
    source: LinkSource = "measured"
    """`measured` from probes, or `estimated` (for example from zone averages)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.rtt_ms) or self.rtt_ms < 0:
            raise TopologyError(f"rtt_ms must be a finite number >= 0, got {self.rtt_ms!r}")
        if self.bandwidth_mbps is not None and (not math.isfinite(self.bandwidth_mbps) or self.bandwidth_mbps < 0):
            raise TopologyError(f"bandwidth_mbps must be a finite number >= 0, got {self.bandwidth_mbps!r}")
        if not math.isfinite(self.loss_ratio) or not 0.0 <= self.loss_ratio <= 1.0:
            raise TopologyError(f"loss_ratio must be within 0..1, got {self.loss_ratio!r}")
        if not math.isfinite(self.jitter_ms) or self.jitter_ms < 0:
            raise TopologyError(f"jitter_ms must be a finite number >= 0, got {self.jitter_ms!r}")
        if self.samples < 0:
            raise TopologyError(f"samples must be >= 0, got {self.samples!r}")


@dataclass(frozen=True)
class Topology:
    """Directed link metrics between named nodes. Links to or from unlisted nodes are rejected."""

    nodes: tuple[str, ...]
    links: Mapping[tuple[str, str], LinkMetrics] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.nodes)) != len(self.nodes):
            raise TopologyError("node names must be unique")
        known = set(self.nodes)
        for origin, destination in self.links:
            if origin not in known or destination not in known:
                raise TopologyError(f"link {origin}->{destination} names a node that is not in the topology")

    @classmethod
    def from_links(cls, links: Mapping[tuple[str, str], LinkMetrics], nodes: Iterable[str] = ()) -> Topology:
        """A topology over `nodes` plus every node a link names, in first-seen order."""
        ordered: dict[str, None] = dict.fromkeys(nodes)
        for origin, destination in links:
            ordered.setdefault(origin)
            ordered.setdefault(destination)
        return cls(nodes=tuple(ordered), links=dict(links))

    def link(self, origin: str, destination: str) -> LinkMetrics | None:
        return self.links.get((origin, destination))

    def without_stale(self, *, now_s: float, ttl_s: float) -> Topology:
        """The same topology less measured links older than `ttl_s`: stale data must not pass for fresh."""
        fresh = {
            pair: metrics for pair, metrics in self.links.items() if not is_stale(metrics, now_s=now_s, ttl_s=ttl_s)
        }
        return Topology(nodes=self.nodes, links=fresh)

    def dense(self) -> DenseTopology:
        return DenseTopology.from_topology(self)


def is_stale(metrics: LinkMetrics, *, now_s: float, ttl_s: float) -> bool:
    """A measured link is stale when its last measurement is older than the TTL (or its time is unknown)."""
    if metrics.source == "estimated":
        return False
    if metrics.measured_at_s is None:
        return True
    return now_s - metrics.measured_at_s > ttl_s


@dataclass(frozen=True)
class DenseTopology:
    """Node-indexed matrices of one topology; row = origin, column = destination; NaN = unknown.

    float32 keeps a 5,000-node matrix at 100 MB; the cost function needs no more precision than that.
    """

    nodes: tuple[str, ...]
    index: Mapping[str, int]
    rtt_ms: FloatMatrix
    bandwidth_mbps: FloatMatrix
    loss_ratio: FloatMatrix

    @classmethod
    def from_topology(cls, topology: Topology) -> DenseTopology:
        n = len(topology.nodes)
        index = {name: i for i, name in enumerate(topology.nodes)}
        rtt = np.full((n, n), np.nan, dtype=np.float32)
        bandwidth = np.full((n, n), np.nan, dtype=np.float32)
        loss = np.full((n, n), np.nan, dtype=np.float32)
        for (origin, destination), metrics in topology.links.items():
            i, j = index[origin], index[destination]
            rtt[i, j] = metrics.rtt_ms
            loss[i, j] = metrics.loss_ratio
            if metrics.bandwidth_mbps is not None:
                bandwidth[i, j] = metrics.bandwidth_mbps
        return cls(nodes=topology.nodes, index=index, rtt_ms=rtt, bandwidth_mbps=bandwidth, loss_ratio=loss)

    @classmethod
    def from_matrices(
        cls,
        *,
        nodes: Sequence[str],
        rtt_ms: npt.ArrayLike,
        bandwidth_mbps: npt.ArrayLike,
        loss_ratio: npt.ArrayLike,
    ) -> DenseTopology:
        """Build directly from matrices (large synthetic topologies, benchmarks); shapes must be N x N."""
        n = len(nodes)
        matrices = [np.asarray(m, dtype=np.float32) for m in (rtt_ms, bandwidth_mbps, loss_ratio)]
        for matrix in matrices:
            if matrix.shape != (n, n):
                raise TopologyError(f"matrix shape {matrix.shape} does not match {n} nodes")
        rtt, bandwidth, loss = matrices
        if np.any(rtt < 0) or np.any(bandwidth < 0):
            raise TopologyError("RTT and bandwidth must be >= 0")
        if np.any((loss < 0) | (loss > 1)):
            raise TopologyError("loss ratios must be within 0..1")
        return cls(
            nodes=tuple(nodes),
            index={name: i for i, name in enumerate(nodes)},
            rtt_ms=rtt,
            bandwidth_mbps=bandwidth,
            loss_ratio=loss,
        )

    def indices(self, names: Iterable[str]) -> npt.NDArray[np.intp]:
        """Matrix indices of `names`; nodes the topology does not know are left out."""
        return np.fromiter((self.index[n] for n in names if n in self.index), dtype=np.intp)


# --- smoothing -----------------------------------------------------------------------------------------------

# RFC 6298's estimator gains: SRTT moves 1/8 of the way to each sample, RTTVAR 1/4.
DEFAULT_ALPHA = 1 / 8
DEFAULT_BETA = 1 / 4
# A sample further than this many RTTVARs from SRTT counts as an outlier (or the start of a level shift).
OUTLIER_DEVIATIONS = 4.0
# After this many consecutive outliers on the same side, the link really changed: jump to the new level instead
# of lagging behind it for several time constants (experiments change links stepwise). Two: one odd round (a busy
# moment, each round is already the median of its probes) is held back, and a changed link shows within two probe
# rounds plus one publishing period (10 + 10 + 5 s with the DaemonSet's defaults), where three took 35 s.
LEVEL_SHIFT_ROUNDS = 2
# The first sample's deviation, relative to it. RFC 6298 starts at R/2 for retransmission timers, where too small a
# value is costly; here it sets the outlier tolerance, and at R/2 (4 deviations: twice the RTT) a link changed in
# its first minutes was followed only by the EWMA: a 60 -> 20 ms change took minutes instead of two rounds.
FIRST_DEVIATION = 1 / 8


class SmoothedValue(NamedTuple):
    """EWMA state of one metric (RFC 6298 style) with level-shift detection. A named tuple: the aggregator makes
    one per link per report, and a tuple is made in a fifth of a frozen dataclass's time."""

    mean: float
    deviation: float
    outlier_run: int = 0
    outlier_sign: int = 0
    samples: int = 1


def smoothing_gain(*, period_s: float, time_constant_s: float) -> float:
    """EWMA gain for a probe period and a desired time constant: alpha = 1 - exp(-T / tau)."""
    if period_s <= 0 or time_constant_s <= 0:
        raise ValueError("period and time constant must be > 0")
    return 1.0 - math.exp(-period_s / time_constant_s)


def smooth(
    state: SmoothedValue | None,
    sample: float,
    *,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
) -> SmoothedValue:
    """Fold one robust per-round sample into the EWMA.

    First sample: mean = R, deviation = R * FIRST_DEVIATION (RFC 6298 takes R/2). Then, deviation before mean:
        deviation <- (1-beta)*deviation + beta*|mean - R|
        mean      <- (1-alpha)*mean + alpha*R
    A sample more than OUTLIER_DEVIATIONS deviations away is held back (outlier rejection); after
    LEVEL_SHIFT_ROUNDS such samples on the same side in a row the estimate jumps to the new level, keeping the
    deviation's ratio to the mean (so a change back is a level shift too, not a slow drift).
    """
    if state is None:
        return SmoothedValue(mean=sample, deviation=sample * FIRST_DEVIATION)
    distance = sample - state.mean
    # A floor on the deviation keeps a perfectly steady link from treating every tiny change as an outlier.
    tolerance = OUTLIER_DEVIATIONS * max(state.deviation, 0.05 * abs(state.mean), 1e-3)
    if abs(distance) > tolerance:
        sign = 1 if distance > 0 else -1
        run = state.outlier_run + 1 if sign == state.outlier_sign else 1
        if run >= LEVEL_SHIFT_ROUNDS:
            # The path's relative variation carries over to the new level; a fresh start would put a change back
            # inside 4 deviations and leave it to the EWMA (80 s of time constant with 10-s rounds).
            relative = state.deviation / state.mean if state.mean > 0 else FIRST_DEVIATION
            return SmoothedValue(mean=sample, deviation=relative * sample, samples=state.samples + 1)
        return state._replace(outlier_run=run, outlier_sign=sign, samples=state.samples + 1)
    deviation = (1 - beta) * state.deviation + beta * abs(distance)
    mean = (1 - alpha) * state.mean + alpha * sample
    return SmoothedValue(mean=mean, deviation=deviation, samples=state.samples + 1)


# --- links CSV ---------------------------------------------------------------------------------------------

LINKS_CSV_COLUMNS = ("origin", "destination", "rtt_ms", "bandwidth_mbps", "loss_ratio")


def parse_links_csv(text: str) -> Topology:
    """`origin,destination,rtt_ms,bandwidth_mbps,loss_ratio` rows (directed) -> Topology.

    An empty bandwidth cell means "not measured". Errors name the line: `line 3: loss_ratio must be within 0..1`.
    """
    import csv  # local: only this parser needs it
    import io

    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != LINKS_CSV_COLUMNS:
        raise TopologyError(f"line 1: header must be {','.join(LINKS_CSV_COLUMNS)}, got {header!r}")
    links: dict[tuple[str, str], LinkMetrics] = {}
    for line_number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(LINKS_CSV_COLUMNS):
            raise TopologyError(f"line {line_number}: expected {len(LINKS_CSV_COLUMNS)} columns, got {len(row)}")
        origin, destination, rtt, bandwidth, loss = (cell.strip() for cell in row)
        if not origin or not destination:
            raise TopologyError(f"line {line_number}: origin and destination must not be empty")
        if (origin, destination) in links:
            raise TopologyError(f"line {line_number}: link {origin}->{destination} is listed twice")
        try:
            links[(origin, destination)] = LinkMetrics(
                rtt_ms=_parse_float(rtt, "rtt_ms"),
                bandwidth_mbps=_parse_float(bandwidth, "bandwidth_mbps") if bandwidth else None,
                loss_ratio=_parse_float(loss, "loss_ratio") if loss else 0.0,
            )
        except TopologyError as error:
            raise TopologyError(f"line {line_number}: {error}") from None
    return Topology.from_links(links)


def _parse_float(cell: str, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise TopologyError(f"{column} must be a number, got {cell!r}") from None
