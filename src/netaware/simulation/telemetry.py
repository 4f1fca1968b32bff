"""The telemetry simulator: a ground-truth network of 1,000-10,000 nodes, agents that probe it under the budget
(`core.peers.ProbePlanner`), their reports folded in by the aggregator's own code (`core.telemetry`), and every
pair's estimate (`core.coordinates`, zone-corrected) held against the truth, round after round.

Ground truth (`TruthNetwork`): regions spread over a continent-sized plane, zones of a region a few ms apart, nodes
of a zone a few hundred microseconds apart; RTT = the distance of two nodes (ms) x a routing stretch per zone pair
+ both nodes' access delays (0.05-0.15 ms). On top: a few zone pairs that take a detour (+30-60%, breaking the
triangle inequality an embedding relies on), and an edge site: one zone behind a slow, lossy access link (+8 ms and
2% loss per node). Each probe sees the RTT plus jitter (5% plus 20 us, normal) and a rare delayed reply.

The truth is never a matrix: at 10,000 nodes one would be 800 MB, so RTTs are computed for the pairs asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from netaware.core.coordinates import Coordinates, ZoneCorrection, fit, fit_zone_offsets, zone_indices
from netaware.core.peers import ProbePlanner
from netaware.core.telemetry import LinkAggregator, PeerMeasurement, ProbeReport

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Estimator = Callable[[IntArray, IntArray], FloatArray]
"""RTT estimates (ms) of the pairs (origins[k], destinations[k])."""


@dataclass
class TruthNetwork:
    nodes: list[str]
    zones: list[str]
    positions: FloatArray
    access_ms: FloatArray
    zone_index: IntArray
    zone_names: list[str]
    stretch: FloatArray
    """(zones, zones): routing stretch; a detour is a large one."""
    loss: FloatArray
    """(n,): each node's access loss."""
    detours: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def build(cls, count: int, *, seed: int = 0, regions: int = 4, zones_per_region: int = 3) -> TruthNetwork:
        rng = np.random.default_rng(seed)
        region_centres = rng.uniform(0, 60, (regions, 2))  # ms of distance: regions 10-80 ms apart
        zone_centres = np.repeat(region_centres, zones_per_region, axis=0) + rng.normal(
            0, 1.5, (regions * zones_per_region, 2)
        )
        zone_labels = [f"region-{r}-zone-{z}" for r in range(regions) for z in range(zones_per_region)]
        edge_zone = len(zone_labels)
        zone_labels.append("edge-site")
        zone_centres = np.vstack([zone_centres, region_centres[0] + [25.0, 25.0]])
        zone_of_node = np.arange(count) % len(zone_labels)
        zone_of_node[rng.random(count) < 0.5 / len(zone_labels)] = edge_zone  # the edge site a little smaller
        positions = zone_centres[zone_of_node] + rng.normal(0, 0.06, (count, 2))
        access = rng.uniform(0.05, 0.15, count)
        loss = np.zeros(count)
        at_edge = zone_of_node == edge_zone
        access[at_edge] += 4.0  # each way of an RTT: 8 ms more for a pair with one end at the edge
        loss[at_edge] = 0.01
        zone_count = len(zone_labels)
        stretch = 1.0 + rng.uniform(0.0, 0.1, (zone_count, zone_count))
        stretch = (stretch + stretch.T) / 2
        detours = []
        for _ in range(3):  # zone pairs of different regions whose traffic takes a detour
            a, b = rng.choice(regions * zones_per_region, 2, replace=False)
            stretch[a, b] = stretch[b, a] = stretch[a, b] * rng.uniform(1.3, 1.6)
            detours.append((zone_labels[a], zone_labels[b]))
        np.fill_diagonal(stretch, 1.0)
        names = [f"node-{i:05d}" for i in range(count)]
        index, labels = zone_indices([zone_labels[z] for z in zone_of_node])
        return cls(
            nodes=names,
            zones=[zone_labels[z] for z in zone_of_node],
            positions=positions,
            access_ms=access,
            zone_index=index,
            zone_names=labels,
            stretch=stretch[np.ix_([zone_labels.index(z) for z in labels], [zone_labels.index(z) for z in labels])],
            loss=loss,
            detours=detours,
        )

    def rtt_ms(self, origins: IntArray, destinations: IntArray) -> FloatArray:
        distance = np.linalg.norm(self.positions[origins] - self.positions[destinations], axis=1)
        stretch = self.stretch[self.zone_index[origins], self.zone_index[destinations]]
        return distance * stretch + self.access_ms[origins] + self.access_ms[destinations]  # type: ignore[no-any-return]

    def change_zone_pair(self, a: str, b: str, factor: float) -> None:
        """A live change: the zone pair's RTT core scaled by `factor` (both directions)."""
        i, j = self.zone_names.index(a), self.zone_names.index(b)
        self.stretch[i, j] *= factor
        self.stretch[j, i] = self.stretch[i, j]


ESTIMATORS = ("zone-mean", "zone-offsets", "coordinates")
"""How a pair nobody measured is estimated: the mean of its zone pair's measurements (the aggregator before these
models), zone pair base plus node offsets (`core.coordinates.ZoneOffsets`), and network coordinates with height,
zone-corrected (`core.coordinates.Coordinates`)."""


@dataclass(frozen=True)
class EstimateFigures:
    inter_zone_median_relative_error: float
    inter_zone_p90_relative_error: float
    intra_zone_median_abs_error_ms: float
    intra_zone_p90_abs_error_ms: float
    changed_pair_median_relative_error: float
    """Estimated pairs of the zone pair changed live (nan before a change)."""
    nearest_zone_correct: float
    """Share of nodes whose nearest other zone the estimate names rightly."""
    nearest_zone_within_5_percent: float
    """Share of nodes whose estimated nearest zone is truly within 5% (or 0.1 ms) of the nearest: near-ties,
    where naming the second zone costs nothing a scheduler would notice, counted as right."""


@dataclass(frozen=True)
class RoundFigures:
    round_index: int
    at_s: float
    measured_pairs: int
    probes_per_node_per_s: float
    zone_pairs_measured_within_60s: float
    estimate_age_p95_s: float
    """Age of the newest measurement of each zone pair (what an estimate's base rests on), 95th percentile."""
    estimates: dict[str, EstimateFigures]


@dataclass
class TelemetrySimulation:
    truth: TruthNetwork
    round_s: float = 10.0
    probes_per_second: float = 1.0
    ttl_s: float = 60.0
    seed: int = 0
    sample_pairs: int = 100_000
    rng: np.random.Generator = field(init=False)
    planner: ProbePlanner = field(init=False)
    aggregator: LinkAggregator = field(init=False)
    coordinates: Coordinates | None = field(init=False, default=None)
    probes_sent: int = field(init=False, default=0)
    zone_pair_measured_at: FloatArray = field(init=False)
    changed: tuple[str, str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed + 1)
        probes_per_round = max(1, int(self.probes_per_second * self.round_s))
        self.planner = ProbePlanner(dict(zip(self.truth.nodes, self.truth.zones, strict=True)),
                                    probes_per_round=probes_per_round)  # fmt: skip
        self.aggregator = LinkAggregator(ttl_s=self.ttl_s)
        self.position = {n: i for i, n in enumerate(self.truth.nodes)}
        zone_count = len(self.truth.zone_names)
        self.zone_pair_measured_at = np.full((zone_count, zone_count), -math.inf)
        sample_rng = np.random.default_rng(self.seed + 2)
        count = len(self.truth.nodes)
        origins = sample_rng.integers(0, count, self.sample_pairs)
        destinations = sample_rng.integers(0, count, self.sample_pairs)
        keep = origins != destinations
        self.sample = (origins[keep], destinations[keep])

    def run_round(self, round_index: int) -> RoundFigures:
        now_s = round_index * self.round_s
        truth = self.truth
        probes = self.planner.probes_per_peer
        origins, destinations = [], []
        for node in truth.nodes:
            origin = self.position[node]
            for peer in self.planner.peers(node, round_index):
                origins.append(origin)
                destinations.append(self.position[peer])
        origin_array, destination_array = np.array(origins, dtype=np.int64), np.array(destinations, dtype=np.int64)
        base = truth.rtt_ms(origin_array, destination_array)
        samples = base[:, None] * (1 + self.rng.normal(0, 0.05, (len(base), probes))) + np.abs(
            self.rng.normal(0, 0.02, (len(base), probes))
        )
        delayed = self.rng.random((len(base), probes)) < 0.01
        samples[delayed] += self.rng.uniform(1, 20, delayed.sum())
        round_trip_loss = 1 - (1 - truth.loss[origin_array]) * (1 - truth.loss[destination_array])
        answered = self.rng.random((len(base), probes)) >= round_trip_loss[:, None]
        self.probes_sent += len(base) * probes
        by_origin: dict[int, list[PeerMeasurement]] = {}
        for k in range(len(base)):
            received = int(answered[k].sum())
            rtt = float(np.median(samples[k][answered[k]])) if received else None
            by_origin.setdefault(int(origin_array[k]), []).append(
                PeerMeasurement(truth.nodes[destination_array[k]], probes, received, rtt, None, None)
            )
            if received:
                self.zone_pair_measured_at[
                    truth.zone_index[origin_array[k]], truth.zone_index[destination_array[k]]
                ] = now_s
        for origin, peers in by_origin.items():
            self.aggregator.ingest(ProbeReport(truth.nodes[origin], now_s, tuple(peers)))
        return self.figures(round_index, now_s)

    def estimators(self, now_s: float) -> tuple[dict[tuple[int, int], float], dict[str, Estimator]]:
        """The fresh measurements, and each estimator fitted to them (coordinates warm-started)."""
        snapshot = self.aggregator.snapshot(now_s)
        measured = {(self.position[o], self.position[d]): m.rtt_ms for (o, d), m in snapshot.measured.items()}
        measured_at = np.array([m.measured_at_s for m in snapshot.measured.values()], dtype=np.float64)
        pairs = np.array(list(measured), dtype=np.int64).reshape(-1, 2)
        rtts = np.fromiter(measured.values(), dtype=np.float64, count=len(measured))
        zone_index, zone_count = self.truth.zone_index, len(self.truth.zone_names)
        first = self.coordinates is None
        start = self.coordinates or Coordinates.initial(zone_index, seed=self.seed)
        self.coordinates = fit(start, pairs[:, 0], pairs[:, 1], rtts, steps=600 if first else 150)
        coordinates = self.coordinates
        correction = ZoneCorrection.measured(coordinates, zone_index, zone_count, pairs[:, 0], pairs[:, 1], rtts)
        offsets = fit_zone_offsets(zone_index, zone_count, pairs[:, 0], pairs[:, 1], rtts,
                                   recent=measured_at >= now_s - self.round_s / 2)  # fmt: skip
        return measured, {
            # What the aggregator did before offsets: the plain mean of the zone pair's measurements.
            "zone-mean": fit_zone_offsets(zone_index, zone_count, pairs[:, 0], pairs[:, 1], rtts, iterations=0).predict,
            "zone-offsets": offsets.predict,
            "coordinates": lambda o, d: correction.apply(o, d, coordinates.predict(o, d)),
        }

    def figures(self, round_index: int, now_s: float) -> RoundFigures:
        measured, estimators = self.estimators(now_s)
        origins, destinations = self.sample
        truth_rtt = self.truth.rtt_ms(origins, destinations)
        is_measured = np.fromiter(((int(o), int(d)) in measured for o, d in zip(origins, destinations, strict=True)),
                                  dtype=bool, count=len(origins))  # fmt: skip
        zone = self.truth.zone_index
        same_zone = zone[origins] == zone[destinations]
        inter, intra = ~is_measured & ~same_zone, ~is_measured & same_zone
        changed = np.zeros(len(origins), dtype=bool)
        if self.changed is not None:
            a, b = (self.truth.zone_names.index(z) for z in self.changed)
            changed = ((zone[origins] == a) & (zone[destinations] == b)) | (
                (zone[origins] == b) & (zone[destinations] == a)
            )
        estimates = {}
        for name, estimator in estimators.items():
            nearest, nearly = self.nearest_zone_correct(estimator)
            estimated = estimator(origins, destinations)
            relative = np.abs(estimated - truth_rtt) / truth_rtt
            absolute = np.abs(estimated - truth_rtt)
            estimates[name] = EstimateFigures(
                inter_zone_median_relative_error=_quantile(relative[inter], 0.5),
                inter_zone_p90_relative_error=_quantile(relative[inter], 0.9),
                intra_zone_median_abs_error_ms=_quantile(absolute[intra], 0.5),
                intra_zone_p90_abs_error_ms=_quantile(absolute[intra], 0.9),
                changed_pair_median_relative_error=_quantile(relative[changed & ~is_measured], 0.5),
                nearest_zone_correct=nearest,
                nearest_zone_within_5_percent=nearly,
            )
        zone_count = len(self.truth.zone_names)
        recent = (now_s - self.zone_pair_measured_at) <= 60.0
        return RoundFigures(
            round_index=round_index,
            at_s=now_s,
            measured_pairs=len(measured),
            probes_per_node_per_s=self.probes_sent / len(self.truth.nodes) / ((round_index + 1) * self.round_s),
            zone_pairs_measured_within_60s=float(recent.sum()) / (zone_count * zone_count),
            estimate_age_p95_s=float(np.quantile(now_s - self.zone_pair_measured_at, 0.95)),
            estimates=estimates,
        )

    def change(self, a: str, b: str, factor: float) -> None:
        """Change a zone pair's RTT in the truth (a live link change), and follow its estimate from now on."""
        self.truth.change_zone_pair(a, b, factor)
        self.changed = (a, b)

    def nearest_zone_correct(self, estimator: Estimator, per_zone: int = 8) -> tuple[float, float]:
        """Shares of nodes (up to 2,000 of them) whose nearest other zone, by mean RTT to a sample of its nodes, the
        estimate gets right, and gets right or within 5% (0.1 ms) of it."""
        truth = self.truth
        rng = np.random.default_rng(self.seed + 3)
        zone_count = len(truth.zone_names)
        members = [np.flatnonzero(truth.zone_index == z) for z in range(zone_count)]
        picks = np.concatenate([rng.choice(m, min(per_zone, len(m)), replace=False) for m in members])
        pick_zone = truth.zone_index[picks]
        count = len(truth.nodes)
        nodes = np.arange(count) if count <= 2000 else rng.choice(count, 2000, replace=False)
        origins, destinations = np.repeat(nodes, len(picks)), np.tile(picks, len(nodes))
        shape = (len(nodes), len(picks))
        true_rtt = truth.rtt_ms(origins, destinations).reshape(shape)
        estimate = estimator(origins, destinations).reshape(shape)
        own = truth.zone_index[nodes]
        weights = np.zeros((len(picks), zone_count))
        weights[np.arange(len(picks)), pick_zone] = 1.0 / np.bincount(pick_zone, minlength=zone_count)[pick_zone]
        with np.errstate(invalid="ignore"):
            true_means, estimated_means = true_rtt @ weights, np.nan_to_num(estimate, nan=np.inf) @ weights
        true_means[np.arange(len(nodes)), own] = np.inf
        estimated_means[np.arange(len(nodes)), own] = np.inf
        estimated_means = np.nan_to_num(estimated_means, nan=np.inf)
        rows = np.arange(len(nodes))
        chosen, best = np.argmin(estimated_means, axis=1), np.argmin(true_means, axis=1)
        chosen_true, best_true = true_means[rows, chosen], true_means[rows, best]
        within = chosen_true <= np.maximum(1.05 * best_true, best_true + 0.1)
        return float(np.mean(chosen == best)), float(np.mean(within))


def _quantile(values: FloatArray, q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else math.nan


def simulate(
    count: int,
    *,
    rounds: int,
    seed: int = 0,
    change_round: int | None = None,
    change_factor: float = 1.5,
    probes_per_second: float = 1.0,
    progress: Callable[[RoundFigures], None] | None = None,
) -> tuple[TelemetrySimulation, list[RoundFigures]]:
    """Run `rounds` rounds on a truth network of `count` nodes; at `change_round` the first detour-free pair of
    zones of different regions changes by `change_factor`."""
    simulation = TelemetrySimulation(TruthNetwork.build(count, seed=seed), probes_per_second=probes_per_second,
                                     seed=seed)  # fmt: skip
    figures = []
    for round_index in range(rounds):
        if round_index == change_round:
            simulation.change(*changeable_zone_pair(simulation.truth), change_factor)
        figures.append(simulation.run_round(round_index))
        if progress is not None:
            progress(figures[-1])
    return simulation, figures


def changeable_zone_pair(truth: TruthNetwork) -> tuple[str, str]:
    """Two zones of different regions whose pair takes no detour."""
    detoured = {frozenset(pair) for pair in truth.detours}
    zones = [z for z in truth.zone_names if z.startswith("region-")]
    for a in zones:
        for b in zones:
            if a.split("-zone")[0] != b.split("-zone")[0] and frozenset((a, b)) not in detoured:
                return a, b
    raise ValueError("no zone pair to change")


@dataclass(frozen=True)
class Verdict:
    what: str
    figure: str
    met: bool


def verdicts(simulation: TelemetrySimulation, figures: list[RoundFigures], change_round: int | None) -> list[Verdict]:
    """The telemetry issue's targets, for the estimator the aggregator uses, over the rounds after the warm-up (the
    first minute, while the probes of the first TTL fill in) and before any change."""
    chosen = AGGREGATOR_ESTIMATOR
    warm = [f for f in figures if f.at_s >= simulation.ttl_s and (change_round is None or f.round_index < change_round)]
    warm = warm or figures[-1:]
    inter = max(f.estimates[chosen].inter_zone_median_relative_error for f in warm)
    intra = max(f.estimates[chosen].intra_zone_median_abs_error_ms for f in warm)
    nearest = min(f.estimates[chosen].nearest_zone_correct for f in warm)
    nearly = min(f.estimates[chosen].nearest_zone_within_5_percent for f in warm)
    probes = figures[-1].probes_per_node_per_s
    zone_pairs = min(f.zone_pairs_measured_within_60s for f in figures)
    age = max(f.estimate_age_p95_s for f in figures)
    result = [
        Verdict("estimated pairs between zones: median relative error (worst round) <= 10%", f"{100 * inter:.2f}%",
                inter <= 0.10),
        Verdict("estimated pairs inside a zone: median absolute error (worst round) <= 0.2 ms", f"{intra:.3f} ms",
                intra <= 0.2),
        Verdict("nearest other zone named rightly (worst round) >= 95% of nodes",
                f"{100 * nearest:.1f}% ({100 * nearly:.1f}% counting a zone within 5% of the nearest)",
                nearest >= 0.95),
        Verdict("every zone pair measured within 60 s", f"{100 * zone_pairs:.0f}% of zone pairs", zone_pairs >= 1.0),
        Verdict("estimates at most 60 s old (p95)", f"{age:.0f} s", age <= 60),
        Verdict("ICMP probes per second per node <= 1", f"{probes:.2f}", probes <= 1.0 + 1e-9),
    ]  # fmt: skip
    if change_round is not None and change_round + 1 < len(figures):
        after = figures[change_round + 1].estimates[chosen].changed_pair_median_relative_error
        result.append(Verdict("a changed zone pair within 10% two rounds after the change", f"{100 * after:.1f}%",
                              after <= 0.10))  # fmt: skip
    return result


AGGREGATOR_ESTIMATOR = "zone-offsets"
"""What the aggregator estimates unmeasured pairs with (the simulator measured the three side by side)."""


def figures_rows(figures: list[RoundFigures]) -> list[dict[str, float | int | str]]:
    """One flat row per round and estimator (the CSV's)."""
    rows: list[dict[str, float | int | str]] = []
    for f in figures:
        for name, e in f.estimates.items():
            rows.append({
                "round": f.round_index, "at_s": f.at_s, "estimator": name, "measured_pairs": f.measured_pairs,
                "probes_per_node_per_s": round(f.probes_per_node_per_s, 4),
                "zone_pairs_measured_within_60s": f.zone_pairs_measured_within_60s,
                **{k: round(v, 5) for k, v in e.__dict__.items()},
            })  # fmt: skip
    return rows


def plot(figures: list[RoundFigures], path: Path, *, title: str, change_round: int | None) -> None:
    from netaware.plotting import pyplot

    plt = pyplot()
    panels = [
        ("inter_zone_median_relative_error", "between zones: median relative error", 100.0, "%"),
        ("intra_zone_median_abs_error_ms", "inside a zone: median absolute error", 1.0, "ms"),
        ("changed_pair_median_relative_error", "the zone pair changed live: median relative error", 100.0, "%"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.2))
    times = [f.at_s for f in figures]
    for axis, (field_name, label, scale, unit) in zip(axes, panels, strict=True):
        for name in ESTIMATORS:
            values = [scale * getattr(f.estimates[name], field_name) for f in figures]
            axis.plot(times, values, marker="o", markersize=3, label=name)
        if change_round is not None and change_round < len(figures):
            axis.axvline(figures[change_round].at_s, color="grey", linestyle=":", label="link change")
        axis.set_yscale("log")
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("time (s)")
        axis.set_ylabel(unit)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
