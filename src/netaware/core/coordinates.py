"""Network coordinates: every node a point plus a height, fitted to the RTTs that were measured, so that a pair
nobody measured still has an estimate (pure numpy).

The model is Vivaldi's with height (Dabek et al., SIGCOMM 2004): the predicted RTT of i and j is the distance of
their points (the core of the network: geography, the long links) plus both heights (each node's access: its NIC,
hypervisor and top-of-rack hop), which a plane alone cannot give, since inside a zone every pair would then need
the same distance. Vivaldi moves one node per sample; with every measurement in one place (the aggregator) the
same model is fitted by least squares over all of them at once, on relative error (a 0.3-ms pair counts like a
60-ms one), with Adam, warm-started from the previous fit so that a round costs a few dozen steps.

No embedding fits every network: a detour (a pair slower than the path through a third node) breaks the triangle
inequality a metric needs. What a scheduler needs most is the zone pairs, and those are measured every round
(`core.peers.budgeted_peers`), so the fitted estimate is scaled per zone pair to the measured zone pair's level
(`ZoneCorrection`): the coordinates then say where a node sits inside its zone pair's figure, the measurements
what the figure is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DIMENSIONS = 3
MIN_HEIGHT_MS = 0.0


@dataclass
class Coordinates:
    points: FloatArray
    """(n, DIMENSIONS), in ms."""
    heights: FloatArray
    """(n,), in ms, never negative."""

    @classmethod
    def initial(cls, zone_index: IntArray, *, seed: int = 0, scale_ms: float = 10.0) -> Coordinates:
        """Every node of a zone at one random point (zones `scale_ms` apart, nodes 10 us from their zone's point):
        nodes of a zone are near each other, and started apart they take many rounds to find each other, with
        errors of tens of ms inside a zone meanwhile."""
        rng = np.random.default_rng(seed)
        zone_points = rng.normal(0.0, scale_ms, (int(zone_index.max(initial=0)) + 1, DIMENSIONS))
        points = zone_points[zone_index] + rng.normal(0.0, 0.01, (len(zone_index), DIMENSIONS))
        return cls(points, np.full(len(zone_index), 0.1))

    def predict(self, origins: IntArray, destinations: IntArray) -> FloatArray:
        """Predicted RTT (ms) of each pair (origins[k], destinations[k])."""
        distance = np.linalg.norm(self.points[origins] - self.points[destinations], axis=1)
        return distance + self.heights[origins] + self.heights[destinations]  # type: ignore[no-any-return]


def fit(
    coordinates: Coordinates,
    origins: IntArray,
    destinations: IntArray,
    rtt_ms: FloatArray,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    final_learning_rate: float = 0.002,
) -> Coordinates:
    """`coordinates` moved `steps` Adam steps towards the measured `rtt_ms` of the pairs (origins, destinations),
    minimising the mean squared relative error. The step shrinks geometrically from `learning_rate` to
    `final_learning_rate` (fractions of the median RTT): large steps find the regions, small ones place a node
    inside its zone, where a tenth of a millisecond matters. Returns new arrays; the input is left as it was."""
    points, heights = coordinates.points.copy(), coordinates.heights.copy()
    if len(rtt_ms) == 0:
        return Coordinates(points, heights)
    target = np.maximum(rtt_ms, 0.01)
    weight = 1.0 / target**2  # relative error: (predicted - measured) / measured, squared
    moments = [np.zeros_like(points), np.zeros_like(points), np.zeros_like(heights), np.zeros_like(heights)]
    beta1, beta2, epsilon = 0.9, 0.999, 1e-9
    # The step is relative to the scale of the figures: points move in ms, by a fraction of the typical RTT.
    scale = float(np.median(target))
    decay = (final_learning_rate / learning_rate) ** (1 / max(1, steps - 1))
    for step in range(1, steps + 1):
        rate = scale * learning_rate * decay ** (step - 1)
        delta = points[origins] - points[destinations]
        distance = np.sqrt(np.einsum("ij,ij->i", delta, delta)) + 1e-9
        error = distance + heights[origins] + heights[destinations] - target
        gradient_of_error = 2.0 * weight * error / len(target)
        direction = delta * (gradient_of_error / distance)[:, None]
        point_gradient = np.zeros_like(points)
        np.add.at(point_gradient, origins, direction)
        np.add.at(point_gradient, destinations, -direction)
        height_gradient = np.bincount(origins, gradient_of_error, len(heights)) + np.bincount(
            destinations, gradient_of_error, len(heights)
        )
        for value, gradient, first, second in (
            (points, point_gradient, moments[0], moments[1]),
            (heights, height_gradient, moments[2], moments[3]),
        ):
            first *= beta1
            first += (1 - beta1) * gradient
            second *= beta2
            second += (1 - beta2) * gradient**2
            value -= rate * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + epsilon)
        np.maximum(heights, MIN_HEIGHT_MS, out=heights)
    return Coordinates(points, heights)


@dataclass(frozen=True)
class ZoneCorrection:
    """Per ordered zone pair, measured over predicted (the median ratio over the pair's measured links); 1 where a
    zone pair has no measurement."""

    zone_index: IntArray
    """(n,): each node's zone."""
    factor: FloatArray
    """(zones, zones)."""

    @classmethod
    def measured(
        cls,
        coordinates: Coordinates,
        zone_index: IntArray,
        zone_count: int,
        origins: IntArray,
        destinations: IntArray,
        rtt_ms: FloatArray,
    ) -> ZoneCorrection:
        factor = np.ones((zone_count, zone_count))
        if len(rtt_ms):
            ratio = rtt_ms / np.maximum(coordinates.predict(origins, destinations), 1e-6)
            keys = zone_index[origins] * zone_count + zone_index[destinations]
            order = np.argsort(keys, kind="stable")
            keys, ratio = keys[order], ratio[order]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            ends = np.r_[starts[1:], len(keys)]
            for start, end in zip(starts, ends, strict=True):
                factor.flat[keys[start]] = float(np.median(ratio[start:end]))
        return cls(zone_index, factor)

    def apply(self, origins: IntArray, destinations: IntArray, predicted: FloatArray) -> FloatArray:
        return predicted * self.factor[self.zone_index[origins], self.zone_index[destinations]]


def zone_indices(zones: Sequence[str]) -> tuple[IntArray, list[str]]:
    """Each node's zone as an index into the sorted distinct zones, and those zones."""
    names = sorted(set(zones))
    position = {zone: index for index, zone in enumerate(names)}
    return np.array([position[z] for z in zones], dtype=np.int64), names


@dataclass(frozen=True)
class ZoneOffsets:
    """RTT = base(zone of i, zone of j) + offset(i) + offset(j): the zone pairs' figures as measured, and each
    node's own access (its NIC, hypervisor and top-of-rack hop; an edge site's last mile) as an offset from its
    zone's typical node. A zone pair's base is any number (a detour is just a larger one), so unlike a metric
    embedding this model has nothing to break when the triangle inequality does."""

    zone_index: IntArray
    base: FloatArray
    """(zones, zones), symmetric; nan where no measurement joins the two zones."""
    offsets: FloatArray
    """(n,), mean 0 inside each zone."""

    def predict(self, origins: IntArray, destinations: IntArray) -> FloatArray:
        base = self.base[self.zone_index[origins], self.zone_index[destinations]]
        return base + self.offsets[origins] + self.offsets[destinations]


def _changed_cells(
    keys: IntArray, rtt_ms: FloatArray, recent: npt.NDArray[np.bool_], cells: int
) -> npt.NDArray[np.bool_]:
    """Per zone pair: whether its recent measurements' mean moved away from its older ones' beyond their noise."""

    def stats(chosen: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, FloatArray]:
        n = np.bincount(keys[chosen], minlength=cells).astype(np.float64)
        total = np.bincount(keys[chosen], rtt_ms[chosen], cells)
        squares = np.bincount(keys[chosen], rtt_ms[chosen] ** 2, cells)
        mean = total / np.maximum(n, 1)
        variance = np.maximum(squares / np.maximum(n, 1) - mean**2, 0.0)
        return n, mean, variance

    n_recent, mean_recent, var_recent = stats(recent)
    n_older, mean_older, var_older = stats(~recent)
    error = np.sqrt(var_recent / np.maximum(n_recent, 1) + var_older / np.maximum(n_older, 1))
    moved = np.abs(mean_recent - mean_older) > np.maximum(4 * error, 0.02 * mean_older)
    return moved & (n_recent > 0) & (n_older > 0)  # type: ignore[no-any-return]


def fit_zone_offsets(
    zone_index: IntArray,
    zone_count: int,
    origins: IntArray,
    destinations: IntArray,
    rtt_ms: FloatArray,
    *,
    recent: npt.NDArray[np.bool_] | None = None,
    iterations: int = 20,
) -> ZoneOffsets:
    """Least squares by alternation (each half in closed form: a mean per zone pair, then a mean per node);
    `iterations=0` leaves every offset 0, which is the zone pair mean alone.

    `recent`: the measurements of the newest round. Where a zone pair's recent mean differs from its older one by
    more than chance allows (4 standard errors, and 2%), its base comes from the recent ones alone, so that a link
    change shows in the next round rather than once the older measurements age out (every zone pair is measured
    every round; `core.peers.ProbePlanner`); otherwise from all of them, four times fewer noise. Offsets use every
    fresh measurement."""
    count = len(zone_index)
    offsets = np.zeros(count)
    low = np.minimum(zone_index[origins], zone_index[destinations])
    high = np.maximum(zone_index[origins], zone_index[destinations])
    keys = low * zone_count + high
    cells = zone_count * zone_count
    use = np.ones(len(rtt_ms), dtype=bool)
    if recent is not None:
        use = recent | ~_changed_cells(keys, rtt_ms, recent, cells)[keys]
    degree = np.bincount(origins, minlength=count) + np.bincount(destinations, minlength=count)
    members = np.bincount(zone_index, minlength=zone_count)
    # Probe noise grows with the RTT (5% of a 40-ms pair is 2 ms, ten times a node's access delay), so each
    # measurement weighs as the inverse of its variance: a node's offset comes from its short links.
    weight = 1.0 / np.maximum(rtt_ms, 0.05) ** 2
    # (A zone pair's measurements have much the same RTT, so its base is their plain mean.)
    weight_of_node = np.bincount(origins, weight, count) + np.bincount(destinations, weight, count)
    counts = np.bincount(keys[use], minlength=cells)

    def base_for(offsets: FloatArray) -> FloatArray:
        residual = rtt_ms - offsets[origins] - offsets[destinations]
        sums = np.bincount(keys[use], residual[use], cells)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    for _ in range(iterations):  # none: offsets stay 0, and each base is its zone pair's plain mean
        pair_base = base_for(offsets)[keys]
        # Each pair's leftover, shared by its two ends: offset(i) = mean over i's pairs of (rtt - base - offset(j)).
        left = rtt_ms - pair_base
        totals = np.bincount(origins, weight * (left - offsets[destinations]), count) + np.bincount(
            destinations, weight * (left - offsets[origins]), count
        )
        offsets = np.where(degree > 0, totals / np.where(weight_of_node > 0, weight_of_node, 1), 0.0)
        zone_mean = np.bincount(zone_index, offsets, zone_count) / np.maximum(members, 1)
        offsets = offsets - zone_mean[zone_index]  # the zone's level belongs to the base
    base = base_for(offsets).reshape(zone_count, zone_count)
    base = np.where(np.isnan(base), base.T, base)  # fill the lower triangle from the upper
    return ZoneOffsets(zone_index, base, offsets)
