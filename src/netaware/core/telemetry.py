"""Probe reports and their aggregation into a topology (pure; the aggregator service does the I/O).

A probe agent sends one report per round: its node, when it measured, and one entry per peer it probed (median
RTT, jitter, loss over the round's probes, and bandwidth when an iperf3 test ran). `parse_report` validates every
field against `REPORT_SCHEMA` (types, ranges, sizes) and the known nodes, and names each problem.

`LinkAggregator` folds reports into per-link state: RTT and bandwidth through the EWMA with outlier hold-back of
`core.topology.smooth`; jitter as an EWMA; loss as lost / sent over the recent rounds (a ratio of counts, so a
round of 10 probes does not weigh like a round of 200). Its `topology()` presents each directed pair as:

1. **measured** when refreshed within `ttl_s`;
2. otherwise **estimated** from the reverse direction if that is fresh (RTT and loss are near-symmetric on the
   paths probes take; the link's own bandwidth is not carried over, since it often is not);
3. otherwise **estimated** by the zone model (`ZoneModel`: the zone pair's base plus both nodes' offsets);
4. otherwise absent (the cost function treats absent as the worst).

Estimates take the zone pair's mean bandwidth, loss and jitter.

Stale data is never presented as measured.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypeVar

import jsonschema
import jsonschema_rs
import numpy as np
import numpy.typing as npt

from netaware.core.coordinates import FloatArray, fit_zone_offsets
from netaware.core.topology import DEFAULT_ALPHA, LinkMetrics, SmoothedValue, Topology, smooth

MAX_PEERS = 1000
CellMatrix = TypeVar("CellMatrix", npt.NDArray[np.float64], npt.NDArray[np.int64])
LOSS_ROUNDS = 10
"""Rounds whose probe counts make up a link's loss ratio."""
STATE_VERSION = 1
"""The version of `LinkAggregator.state()`'s shape; a journal written by another one is refused, not misread."""

REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["node", "measuredAt", "peers"],
    "properties": {
        "node": {"type": "string", "minLength": 1, "maxLength": 253},
        "measuredAt": {"type": "number", "minimum": 0, "description": "Unix time of the round, seconds"},
        "peers": {
            "type": "array",
            "maxItems": MAX_PEERS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["peer", "sent", "received"],
                "properties": {
                    "peer": {"type": "string", "minLength": 1, "maxLength": 253},
                    "sent": {"type": "integer", "minimum": 1, "maximum": 10000},
                    "received": {"type": "integer", "minimum": 0, "maximum": 10000},
                    "rttMs": {"type": "number", "minimum": 0, "maximum": 60000, "description": "median RTT"},
                    "jitterMs": {"type": "number", "minimum": 0, "maximum": 60000},
                    "bandwidthMbps": {"type": "number", "minimum": 0, "maximum": 10000000},
                },
            },
        },
    },
}


class ReportError(ValueError):
    """A report that cannot be accepted; `problems` names each field and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class PeerMeasurement(NamedTuple):  # a tuple: 50 of them per report, made in a fifth of a dataclass's time
    peer: str
    sent: int
    received: int
    rtt_ms: float | None
    jitter_ms: float | None
    bandwidth_mbps: float | None


@dataclass(frozen=True)
class ProbeReport:
    node: str
    measured_at_s: float
    peers: tuple[PeerMeasurement, ...]


_validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
_compiled = jsonschema_rs.Draft202012Validator(REPORT_SCHEMA)
"""The same schema compiled (Rust): 0.02-0.09 ms to pass a report of 50 peers where the Python validator takes
3-5 ms, which alone held the aggregator near 200 reports/s a core. It only says yes or no; a report it refuses goes
through the Python validator for the messages the API has always answered with (the unit tests hold both to one
verdict)."""


def _path(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".") or "report"


def schema_problems(data: Any) -> list[str]:
    """What in `data` breaks REPORT_SCHEMA, each as `path: reason`; empty when nothing does."""
    if _compiled.is_valid(data):
        return []
    return [f"{_path(e)}: {e.message}" for e in sorted(_validator.iter_errors(data), key=lambda e: e.path)]


def parse_report(
    data: Any, *, known_nodes: Iterable[str] | None = None, now_s: float | None = None, max_skew_s: float = 300.0
) -> ProbeReport:
    """The report in `data` (parsed JSON), or ReportError naming every problem. With `known_nodes`, the node and
    every peer must be one of them; with `now_s`, `measuredAt` may not lie more than `max_skew_s` in the future."""
    problems = schema_problems(data)
    if problems:
        raise ReportError(problems)
    known = known_nodes if isinstance(known_nodes, (set, frozenset)) or known_nodes is None else set(known_nodes)
    node = data["node"]
    if known is not None and node not in known:
        problems.append(f"node: {node!r} is not a known node")
    if now_s is not None and data["measuredAt"] > now_s + max_skew_s:
        problems.append(f"measuredAt: {data['measuredAt']} is in the future (now {now_s:.0f})")
    peers = []
    seen: set[str] = set()
    for index, entry in enumerate(data["peers"]):
        peer, sent, received, rtt_ms = entry["peer"], entry["sent"], entry["received"], entry.get("rttMs")
        if peer == node:
            problems.append(f"peers[{index}].peer: a node does not probe itself")
        if peer in seen:
            problems.append(f"peers[{index}].peer: {peer!r} appears twice")
        seen.add(peer)
        if known is not None and peer not in known:
            problems.append(f"peers[{index}].peer: {peer!r} is not a known node")
        if received > sent:
            problems.append(f"peers[{index}].received: {received} is more than sent ({sent})")
        if received > 0 and rtt_ms is None:
            problems.append(f"peers[{index}].rttMs: required when probes were answered")
        peers.append(PeerMeasurement(peer, sent, received, rtt_ms, entry.get("jitterMs"), entry.get("bandwidthMbps")))
    if problems:
        raise ReportError(problems)
    return ProbeReport(node=node, measured_at_s=float(data["measuredAt"]), peers=tuple(peers))


@dataclass
class LinkState:
    rtt: SmoothedValue | None = None
    jitter_ms: float | None = None
    bandwidth: SmoothedValue | None = None
    rounds: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=LOSS_ROUNDS))
    """(sent, received) of the recent rounds."""
    measured_at_s: float = -math.inf
    rtt_at_s: float = -math.inf
    samples: int = 0
    recovered_loss: float | None = None
    """The loss ratio published before a restart (`LinkAggregator.seed`): it stands for the rounds the window has not
    refilled yet, each weighing as much as an average new round."""

    def loss_ratio(self) -> float:
        sent = sum(s for s, _ in self.rounds)
        lost = sent - sum(r for _, r in self.rounds)
        if self.recovered_loss is not None and len(self.rounds) < LOSS_ROUNDS:
            # The published ratio, not the published probe count: that counts every probe since the link was first
            # measured, and as one round it would outweigh ten new ones (a link cut after a restart read 1% lossy).
            if not self.rounds:
                return self.recovered_loss
            stand_in = (LOSS_ROUNDS - len(self.rounds)) * sent / len(self.rounds)
            return (lost + self.recovered_loss * stand_in) / (sent + stand_in) if sent + stand_in else 0.0
        return 0.0 if not sent else lost / sent


@dataclass
class LinkAggregator:
    ttl_s: float = 60.0
    alpha: float = DEFAULT_ALPHA
    links: dict[tuple[str, str], LinkState] = field(default_factory=dict)
    last_report_s: dict[str, float] = field(default_factory=dict)

    def ingest(self, report: ProbeReport) -> None:
        self.last_report_s[report.node] = max(self.last_report_s.get(report.node, -math.inf), report.measured_at_s)
        links = self.links
        for measurement in report.peers:
            state = links.get((report.node, measurement.peer))
            if state is None:  # not setdefault: that would build a LinkState for every known link too
                state = links[(report.node, measurement.peer)] = LinkState()
            if report.measured_at_s <= state.measured_at_s:
                continue  # an older round arriving late (a retried buffer) must not overwrite newer data, and a
                # round seen before (sent again after a lost answer, or replayed) must not count twice
            state.measured_at_s = report.measured_at_s
            state.rounds.append((measurement.sent, measurement.received))
            state.samples += measurement.sent
            if measurement.rtt_ms is not None and measurement.received:
                state.rtt = smooth(state.rtt, measurement.rtt_ms, alpha=self.alpha)
                state.rtt_at_s = report.measured_at_s
            if measurement.jitter_ms is not None:
                previous = state.jitter_ms
                state.jitter_ms = (
                    measurement.jitter_ms if previous is None
                    else (1 - self.alpha) * previous + self.alpha * measurement.jitter_ms
                )  # fmt: skip
            if measurement.bandwidth_mbps is not None:
                state.bandwidth = smooth(state.bandwidth, measurement.bandwidth_mbps, alpha=0.5)

    def state(self) -> dict[str, Any]:
        """Everything `ingest` has folded in, as JSON (the journal's compacted head): `restore` rebuilds it exactly."""

        def time_or_none(at_s: float) -> float | None:
            return None if at_s == -math.inf else at_s

        def smoothed(value: SmoothedValue | None) -> list[float] | None:
            if value is None:
                return None
            return [value.mean, value.deviation, value.outlier_run, value.outlier_sign, value.samples]

        return {
            "version": STATE_VERSION,
            "lastReport": dict(self.last_report_s),
            "links": [
                [
                    origin,
                    destination,
                    {
                        "rtt": smoothed(link.rtt),
                        "jitterMs": link.jitter_ms,
                        "bandwidth": smoothed(link.bandwidth),
                        "rounds": [list(r) for r in link.rounds],
                        "measuredAt": time_or_none(link.measured_at_s),
                        "rttAt": time_or_none(link.rtt_at_s),
                        "samples": link.samples,
                        "recoveredLoss": link.recovered_loss,
                    },
                ]
                for (origin, destination), link in self.links.items()
            ],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace what this aggregator holds with a `state()` (ValueError for another version's)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"aggregator state version {state.get('version')!r}, this build reads {STATE_VERSION}")

        def time_of(at_s: float | None) -> float:
            return -math.inf if at_s is None else float(at_s)

        def smoothed(value: list[float] | None) -> SmoothedValue | None:
            if value is None:
                return None
            mean, deviation, run, sign, samples = value
            return SmoothedValue(mean, deviation, int(run), int(sign), int(samples))

        self.last_report_s = {node: float(at) for node, at in state["lastReport"].items()}
        self.links = {
            (origin, destination): LinkState(
                rtt=smoothed(link["rtt"]),
                jitter_ms=link["jitterMs"],
                bandwidth=smoothed(link["bandwidth"]),
                rounds=deque(((int(s), int(r)) for s, r in link["rounds"]), maxlen=LOSS_ROUNDS),
                measured_at_s=time_of(link["measuredAt"]),
                rtt_at_s=time_of(link["rttAt"]),
                samples=int(link["samples"]),
                recovered_loss=link["recoveredLoss"],
            )
            for origin, destination, link in state["links"]
        }

    def seed(self, origin: str, destination: str, metrics: LinkMetrics) -> None:
        """Start a link from a published measurement (recovery after a restart); reports newer than it win."""
        if metrics.source != "measured" or metrics.measured_at_s is None:
            return
        state = self.links.setdefault((origin, destination), LinkState())
        if metrics.measured_at_s <= state.measured_at_s:
            return
        state.rtt = smooth(None, metrics.rtt_ms)
        state.jitter_ms = metrics.jitter_ms
        state.bandwidth = smooth(None, metrics.bandwidth_mbps) if metrics.bandwidth_mbps is not None else None
        state.rounds.clear()
        state.recovered_loss = metrics.loss_ratio
        state.samples = metrics.samples
        state.measured_at_s = state.rtt_at_s = metrics.measured_at_s

    def measured(self, pair: tuple[str, str], now_s: float) -> LinkMetrics | None:
        """The pair's own measurement, if it is fresh and has an RTT."""
        state = self.links.get(pair)
        if state is None or state.rtt is None or now_s - state.rtt_at_s > self.ttl_s:
            return None
        return LinkMetrics(
            rtt_ms=state.rtt.mean,
            bandwidth_mbps=state.bandwidth.mean if state.bandwidth is not None else None,
            loss_ratio=state.loss_ratio(),
            jitter_ms=state.jitter_ms or 0.0,
            samples=state.samples,
            measured_at_s=state.rtt_at_s,
        )

    def unanswered(self, pair: tuple[str, str], now_s: float) -> bool:
        """Whether the pair's origin still probes it (fresh rounds) but no probe has been answered for a TTL."""
        state = self.links.get(pair)
        if state is None or now_s - state.measured_at_s > self.ttl_s:
            return False
        return state.rtt is None or now_s - state.rtt_at_s > self.ttl_s

    def stale_nodes(self, now_s: float) -> list[str]:
        """Nodes whose last report is older than the TTL."""
        return sorted(n for n, at in self.last_report_s.items() if now_s - at > self.ttl_s)

    def snapshot(self, now_s: float) -> TelemetrySnapshot:
        """What is known at `now_s`, in one pass over the links held (under the caller's lock: cheap), for
        `estimated_topology` to present every pair from (outside it: the pairs are n^2)."""
        measured: dict[tuple[str, str], LinkMetrics] = {}
        unanswered = set()
        for pair in self.links:
            if (metrics := self.measured(pair, now_s)) is not None:
                measured[pair] = metrics
            elif self.unanswered(pair, now_s):
                unanswered.add(pair)
        return TelemetrySnapshot(
            now_s=now_s, measured=measured, unanswered=frozenset(unanswered), silent=frozenset(self.stale_nodes(now_s))
        )

    def topology(self, nodes: Iterable[str], *, now_s: float, zones: Mapping[str, str] | None = None) -> Topology:
        """Every directed pair of `nodes` (see `estimated_topology`)."""
        return estimated_topology(self.snapshot(now_s), nodes, zones=zones)


@dataclass(frozen=True)
class TelemetrySnapshot:
    now_s: float
    measured: Mapping[tuple[str, str], LinkMetrics]
    """The fresh measurements."""
    unanswered: frozenset[tuple[str, str]]
    """Pairs whose origin still probes them and hears nothing back."""
    silent: frozenset[str]
    """Nodes whose reports went stale."""


RECENT_S = 10.0
"""Measurements this young are the newest round's (the agents' default round): a zone pair's estimate follows
them alone once they moved away from the older ones (`core.coordinates.fit_zone_offsets`)."""


def estimated_topology(
    snapshot: TelemetrySnapshot,
    nodes: Iterable[str],
    *,
    zones: Mapping[str, str] | None = None,
    recent_s: float = RECENT_S,
    model: ZoneModel | None = None,
) -> Topology:
    """Every directed pair of `nodes`: measured, or estimated (from the fresh reverse direction, else by the zone
    model: `ZoneModel`, fitted here unless given; either way with the zone pair's bandwidth, which agents sample
    per zone pair), or absent. A pair with an end that stopped reporting, or whose probes go unanswered, is never
    estimated: absent."""
    names = list(dict.fromkeys(nodes))
    known = set(names)
    links = {pair: m for pair, m in snapshot.measured.items() if pair[0] in known and pair[1] in known}
    measured = dict(links)
    silent = snapshot.silent
    by_zone: list[tuple[str, str]] = []
    reversed_pairs: list[tuple[str, str]] = []
    for origin in names:
        for destination in names:
            if origin == destination or (origin, destination) in links:
                continue
            if origin in silent or destination in silent or (origin, destination) in snapshot.unanswered:
                # Known to be broken (an end stopped reporting, or the origin's probes go unanswered): left
                # unknown, the worst price, never estimated from its zone's healthy links as one of them.
                continue
            reverse = measured.get((destination, origin))
            if reverse is not None:
                reversed_pairs.append((origin, destination))
                links[(origin, destination)] = reverse_estimate(reverse)
                continue
            by_zone.append((origin, destination))
    if (by_zone or reversed_pairs) and zones:
        if model is None:
            model = ZoneModel.fit(snapshot, names, zones, recent_s=recent_s)
        links.update(model.estimates(by_zone))
        for pair in reversed_pairs:
            if (bandwidth := model.bandwidth_of(*pair)) is not None:
                links[pair] = replace(links[pair], bandwidth_mbps=bandwidth)
    return Topology(nodes=tuple(names), links=links)


def reverse_estimate(reverse: LinkMetrics) -> LinkMetrics:
    """A pair priced from its fresh reverse direction: RTT, loss and jitter are near-symmetric on the paths probes
    take; bandwidth is not carried over, since it often is not (the zone pair's is, by `estimated_topology`)."""
    return LinkMetrics(
        rtt_ms=reverse.rtt_ms, loss_ratio=reverse.loss_ratio, jitter_ms=reverse.jitter_ms,
        samples=reverse.samples, measured_at_s=None, source="estimated",
    )  # fmt: skip


@dataclass(frozen=True)
class ZoneModel:
    """How a pair nobody measured is estimated: RTT = base(zone pair) + offset(origin) + offset(destination)
    (`core.coordinates.ZoneOffsets`, fitted to every fresh measurement), at least half the zone pair's mean RTT;
    loss, jitter and bandwidth are the zone pair's means (bandwidth over the links where iperf3 ran).

    It is small at any size, a cell per zone pair and a number per node, which is what the compact NetworkTopology
    form publishes (`kube.converters.compact_networktopology_resources`), so every reader of the resources estimates
    a pair exactly as the aggregator's own `GET /v1/topology` does, from the same formula (`rtt_ms`)."""

    zone_names: tuple[str, ...]
    base_rtt_ms: FloatArray
    """(zones, zones), symmetric; nan where the zone pair has no estimate."""
    mean_rtt_ms: FloatArray
    loss_ratio: FloatArray
    jitter_ms: FloatArray
    bandwidth_mbps: FloatArray
    """nan where no link of the zone pair has a bandwidth measured."""
    measured_at_s: FloatArray
    """The newest measurement behind each cell (-inf: none)."""
    links: npt.NDArray[np.int64]
    """How many measured links each cell rests on."""
    node_zone: Mapping[str, int]
    """The nodes that can be estimated (zone known, reporting), by their zone's index."""
    offsets_ms: Mapping[str, float]

    @classmethod
    def fit(
        cls, snapshot: TelemetrySnapshot, nodes: Iterable[str], zones: Mapping[str, str], *, recent_s: float = RECENT_S
    ) -> ZoneModel:
        """The model of `nodes` (those with a zone and still reporting) from the snapshot's fresh measurements."""
        fitted = [(pair, m) for pair, m in snapshot.measured.items() if pair[0] in zones and pair[1] in zones]
        estimable = [n for n in dict.fromkeys(nodes) if n in zones and n not in snapshot.silent]
        names = sorted({n for pair, _ in fitted for n in pair} | set(estimable))
        zone_names = tuple(sorted({zones[n] for n in names}))
        zone_position = {zone: index for index, zone in enumerate(zone_names)}
        count = len(zone_names)
        empty = np.full((count, count), np.nan)
        if not fitted:
            return cls(zone_names, empty, empty, empty, empty, empty, np.full((count, count), -math.inf),
                       np.zeros((count, count), dtype=np.int64), {}, {})  # fmt: skip
        position = {name: index for index, name in enumerate(names)}
        zone_index = np.array([zone_position[zones[n]] for n in names], dtype=np.int64)
        origins = np.array([position[o] for (o, _), _ in fitted], dtype=np.int64)
        destinations = np.array([position[d] for (_, d), _ in fitted], dtype=np.int64)
        rtts = np.array([m.rtt_ms for _, m in fitted])
        newest = np.array([m.measured_at_s if m.measured_at_s is not None else -math.inf for _, m in fitted])
        offsets = fit_zone_offsets(zone_index, count, origins, destinations, rtts,
                                   recent=newest >= snapshot.now_s - recent_s)  # fmt: skip
        # Each cell's means over its links in either direction (a zone pair's figures are symmetric here).
        low = np.minimum(zone_index[origins], zone_index[destinations])
        high = np.maximum(zone_index[origins], zone_index[destinations])
        keys = low * count + high
        cells = count * count
        links = np.bincount(keys, minlength=cells)

        def cell_mean(values: FloatArray) -> FloatArray:
            """Per cell, the mean of the links' values that are known (not nan)."""
            known = ~np.isnan(values)
            counts = np.bincount(keys[known], minlength=cells)
            sums = np.bincount(keys[known], values[known], cells)
            return _symmetric(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(count, count))

        latest = np.full(cells, -math.inf)
        np.maximum.at(latest, keys, newest)
        mean_rtt = cell_mean(rtts)
        return cls(
            zone_names=zone_names,
            base_rtt_ms=np.where(np.isnan(mean_rtt), np.nan, offsets.base),
            mean_rtt_ms=mean_rtt,
            loss_ratio=cell_mean(np.array([m.loss_ratio for _, m in fitted])),
            jitter_ms=cell_mean(np.array([m.jitter_ms for _, m in fitted])),
            bandwidth_mbps=cell_mean(
                np.array([m.bandwidth_mbps if m.bandwidth_mbps is not None else np.nan for _, m in fitted])
            ),
            measured_at_s=_symmetric(latest.reshape(count, count)),
            links=_symmetric(links.reshape(count, count).astype(np.int64)),
            node_zone={n: int(zone_index[position[n]]) for n in estimable},
            offsets_ms={n: float(offsets.offsets[position[n]]) for n in estimable},
        )

    def rtt_ms(
        self, origin_zones: npt.NDArray[np.int64], destination_zones: npt.NDArray[np.int64],
        origin_offsets: FloatArray, destination_offsets: FloatArray,
    ) -> FloatArray:  # fmt: skip
        """The estimate of pairs given by their zones' indices and their offsets (nan: no estimate). Offsets fitted
        from a node's few short links can take a pair near zero, which no link is: a floor at half the zone pair's
        mean."""
        fitted = self.base_rtt_ms[origin_zones, destination_zones] + origin_offsets + destination_offsets
        return np.maximum(fitted, 0.5 * self.mean_rtt_ms[origin_zones, destination_zones])

    def estimates(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LinkMetrics]:
        """`pairs` whose two ends the model knows and whose zone pair has an estimate."""
        wanted = [(o, d) for o, d in pairs if o in self.node_zone and d in self.node_zone]
        if not wanted:
            return {}
        zone_o = np.array([self.node_zone[o] for o, _ in wanted], dtype=np.int64)
        zone_d = np.array([self.node_zone[d] for _, d in wanted], dtype=np.int64)
        rtts = self.rtt_ms(zone_o, zone_d, np.array([self.offsets_ms[o] for o, _ in wanted]),
                           np.array([self.offsets_ms[d] for _, d in wanted]))  # fmt: skip
        losses, jitters = self.loss_ratio[zone_o, zone_d].tolist(), self.jitter_ms[zone_o, zone_d].tolist()
        bandwidths = self.bandwidth_mbps[zone_o, zone_d].tolist()
        return {
            pair: LinkMetrics(
                rtt_ms=rtt,
                loss_ratio=loss,
                jitter_ms=jitter,
                bandwidth_mbps=None if math.isnan(bandwidth) else bandwidth,
                samples=0,
                measured_at_s=None,
                source="estimated",
            )
            for pair, rtt, loss, jitter, bandwidth in zip(
                wanted, rtts.tolist(), losses, jitters, bandwidths, strict=True
            )
            if math.isfinite(rtt)
        }

    def bandwidth_of(self, origin: str, destination: str) -> float | None:
        """The zone pair's bandwidth of a pair, when the model knows both ends and the pair has one."""
        if origin not in self.node_zone or destination not in self.node_zone:
            return None
        value = float(self.bandwidth_mbps[self.node_zone[origin], self.node_zone[destination]])
        return None if math.isnan(value) else value

    def measured_since(self, cutoff_s: float) -> ZoneModel:
        """The model less the zone pairs whose newest measurement is older than `cutoff_s`: a model nobody updates
        any more (the aggregator gone) must not keep pricing pairs as if it were fresh."""
        stale = self.measured_at_s < cutoff_s
        return replace(self, base_rtt_ms=np.where(stale, np.nan, self.base_rtt_ms))


def _symmetric(matrix: CellMatrix) -> CellMatrix:
    """A matrix of cells keyed (low zone, high zone) mirrored into its lower triangle."""
    lower = np.tril_indices(len(matrix), -1)
    mirrored = matrix.copy()
    mirrored[lower] = matrix.T[lower]
    return mirrored
