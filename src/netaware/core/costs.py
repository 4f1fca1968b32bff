"""Link costs: the weighted, normalised cost of sending a workload's traffic over one directed link.

From DESIGN.md, for a link n -> m of the current topology:

    normLatency   = rtt(n, m)    / maxRtt
    normBandwidth = 1 - bw(n, m) / maxBandwidth
    normLoss      = loss(n, m)   / maxLoss
    linkCost(n,m) = wL*normLatency + wB*normBandwidth + wP*normLoss

The maxima are taken over every known pair of the topology. Rules this module adds, each so that missing data is
never cheaper than measured data:
- linkCost(n, n) = 0: co-located replicas talk over loopback.
- a zero maximum makes its term 0 for every measured pair (nothing to tell the pairs apart);
- an unknown value (unmeasured pair, or a metric not measured on that pair) takes its term's worst value, 1,
  even when the metric is known nowhere: "no bandwidth measured yet" must still favour co-location, which is
  the one placement whose bandwidth is certain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from netaware.core.appgroup import CostWeights
from netaware.core.topology import DenseTopology, FloatMatrix

# The worst value of one normalised term; an unknown metric is charged this.
WORST_TERM = 1.0


@dataclass(frozen=True)
class LinkCosts:
    """linkCost for every ordered node pair of one topology under one set of weights."""

    topology: DenseTopology
    weights: CostWeights
    cost: FloatMatrix
    """cost[n, m] = linkCost(n -> m)."""
    cost_by_destination: FloatMatrix
    """The transpose, stored C-contiguous: row m holds linkCost(n -> m) for every n (a fast row read)."""
    max_rtt_ms: float
    max_bandwidth_mbps: float
    max_loss_ratio: float
    candidate_index_cache: dict[tuple[str, ...], object] = field(default_factory=dict, compare=False, repr=False)
    """Resolved candidate lists (see scoring.candidate_indices); kube-scheduler sends the same list repeatedly."""

    @cached_property
    def centrality(self) -> npt.NDArray[np.float64]:
        """Per node, the mean link cost to and from every other node: low for nodes in the middle of the network."""
        count = self.cost.shape[0]
        if count < 2:
            return np.zeros(count, dtype=np.float64)
        diagonal = np.diagonal(self.cost).astype(np.float64)
        both_ways = self.cost.sum(axis=1, dtype=np.float64) + self.cost.sum(axis=0, dtype=np.float64) - 2 * diagonal
        centrality: npt.NDArray[np.float64] = both_ways / (2 * (count - 1))
        return centrality

    @property
    def worst_link_cost(self) -> float:
        """The cost charged for a link about which nothing is known."""
        return WORST_TERM * (self.weights.latency + self.weights.bandwidth + self.weights.loss)


def _nan_max(matrix: FloatMatrix) -> float:
    known = matrix[~np.isnan(matrix)]
    return float(known.max()) if known.size else float("nan")


def _normalised(matrix: FloatMatrix, maximum: float, *, invert: bool) -> FloatMatrix:
    """One normalised term: value/maximum (or 1 - value/maximum), NaN -> WORST_TERM, per the module rules."""
    if np.isnan(maximum) or maximum == 0:  # unknown everywhere, or nothing to tell the known pairs apart
        term = np.zeros_like(matrix)
    else:
        term = matrix / np.float32(maximum)
        if invert:
            term = np.float32(1.0) - term
    return np.where(np.isnan(matrix), np.float32(WORST_TERM), term).astype(np.float32)


def build_link_costs(topology: DenseTopology, weights: CostWeights | None = None) -> LinkCosts:
    """Compute linkCost for every pair; O(N^2) once per topology snapshot, then scoring only reads rows."""
    weights = weights or CostWeights()
    max_rtt = _nan_max(topology.rtt_ms)
    max_bandwidth = _nan_max(topology.bandwidth_mbps)
    max_loss = _nan_max(topology.loss_ratio)
    cost = (
        np.float32(weights.latency) * _normalised(topology.rtt_ms, max_rtt, invert=False)
        + np.float32(weights.bandwidth) * _normalised(topology.bandwidth_mbps, max_bandwidth, invert=True)
        + np.float32(weights.loss) * _normalised(topology.loss_ratio, max_loss, invert=False)
    ).astype(np.float32)
    np.fill_diagonal(cost, 0.0)
    return LinkCosts(
        topology=topology,
        weights=weights,
        cost=cost,
        cost_by_destination=np.ascontiguousarray(cost.T),
        max_rtt_ms=0.0 if np.isnan(max_rtt) else max_rtt,
        max_bandwidth_mbps=0.0 if np.isnan(max_bandwidth) else max_bandwidth,
        max_loss_ratio=0.0 if np.isnan(max_loss) else max_loss,
    )
