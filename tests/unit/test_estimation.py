"""Telemetry at scale, in pure code: the probe budget (core/peers.ProbePlanner), the estimators of unmeasured pairs
(core/coordinates: zone offsets, network coordinates) and the telemetry simulator (simulation/telemetry.py).

Checks: the planner spends every node's budget and no more, measures every ordered zone pair every round, reaches
every peer every round in a six-node cluster, and its rotation reaches every ordered pair; zone offsets recover a
base-plus-offsets network from a sample of its pairs and follow a changed zone pair from its newest measurements
alone; coordinates fitted to a plane's distances predict the pairs left out; a small simulation meets the targets
with zone offsets and reflects a live change in the round it happens, where the zone mean still mixes in the old
figure.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from netaware.core.coordinates import Coordinates, fit, fit_zone_offsets
from netaware.core.peers import ProbePlanner
from netaware.simulation.telemetry import AGGREGATOR_ESTIMATOR, simulate, verdicts


def zones_of(count: int, zones: int) -> dict[str, str]:
    return {f"n{i:03d}": f"z{i % zones}" for i in range(count)}


def test_the_planner_stays_in_budget_and_measures_every_zone_pair_every_round() -> None:
    zones = zones_of(120, 6)
    planner = ProbePlanner(zones, probes_per_round=10, probes_per_peer=2)
    for round_index in range(4):
        covered = set()
        for node in zones:
            peers = planner.peers(node, round_index)
            assert len(peers) == 5 and node not in peers and len(set(peers)) == len(peers)  # the budget, all spent
            covered |= {(zones[node], zones[p]) for p in peers}
        assert covered == set(itertools.product(sorted(set(zones.values())), repeat=2)), round_index
    with pytest.raises(ValueError, match="1 or more"):
        ProbePlanner(zones, probes_per_round=0)


def test_in_a_small_cluster_the_budget_reaches_every_peer_every_round() -> None:
    """The lab's six nodes: a round's five slots are five different peers, though duty, ring and rotation overlap."""
    zones = zones_of(6, 3)
    planner = ProbePlanner(zones, probes_per_round=10, probes_per_peer=2)
    for round_index in (0, 1, 179_641_271):  # rounds are numbered from the clock
        for node in zones:
            assert sorted(planner.peers(node, round_index)) == sorted(set(zones) - {node}), (node, round_index)


def test_the_rotation_reaches_every_ordered_pair() -> None:
    zones = zones_of(30, 3)
    planner = ProbePlanner(zones, probes_per_round=6, probes_per_peer=2)
    seen = {(node, peer) for round_index in range(30) for node in zones for peer in planner.peers(node, round_index)}
    assert seen == {(a, b) for a in zones for b in zones if a != b}


def base_plus_offsets(count: int, zone_count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    zone_index = np.arange(count) % zone_count
    base = rng.uniform(5, 60, (zone_count, zone_count))
    base = (base + base.T) / 2
    np.fill_diagonal(base, 0.3)
    offsets = rng.uniform(-0.05, 0.05, count)
    for zone in range(zone_count):
        offsets[zone_index == zone] -= offsets[zone_index == zone].mean()
    return zone_index, base, offsets


def test_zone_offsets_recover_the_network_from_a_tenth_of_its_pairs() -> None:
    zone_index, base, offsets = base_plus_offsets(200, 5, seed=1)
    pairs = np.array([(a, b) for a in range(200) for b in range(200) if a != b])
    rng = np.random.default_rng(2)
    sample = pairs[rng.random(len(pairs)) < 0.1]

    def truth(o: np.ndarray, d: np.ndarray) -> np.ndarray:
        return base[zone_index[o], zone_index[d]] + offsets[o] + offsets[d]  # type: ignore[no-any-return]

    model = fit_zone_offsets(zone_index, 5, sample[:, 0], sample[:, 1], truth(sample[:, 0], sample[:, 1]))
    assert np.allclose(model.predict(pairs[:, 0], pairs[:, 1]), truth(pairs[:, 0], pairs[:, 1]), atol=1e-3)


def test_a_zone_pair_base_follows_its_newest_measurements() -> None:
    zone_index = np.array([0, 0, 1, 1])
    origins, destinations = np.array([0, 1, 0, 1]), np.array([2, 3, 3, 2])
    rtt = np.array([20.0, 20.0, 30.0, 30.0])  # the first two older, before the link changed to 30 ms
    recent = np.array([False, False, True, True])
    assert fit_zone_offsets(zone_index, 2, origins, destinations, rtt, recent=recent).base[0, 1] == pytest.approx(30)
    assert fit_zone_offsets(zone_index, 2, origins, destinations, rtt).base[0, 1] == pytest.approx(25)


def test_coordinates_fitted_to_a_plane_predict_the_pairs_left_out() -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 50, (40, 2))
    heights = rng.uniform(0.1, 1.0, 40)
    pairs = np.array([(a, b) for a in range(40) for b in range(40) if a != b])
    origins, destinations = pairs[:, 0], pairs[:, 1]
    rtt = np.linalg.norm(points[origins] - points[destinations], axis=1) + heights[origins] + heights[destinations]
    train = rng.random(len(pairs)) < 0.5
    start = Coordinates.initial(np.zeros(40, dtype=np.int64), seed=0, scale_ms=20.0)
    start.points = rng.normal(0, 20, start.points.shape)  # spread: one zone would start every node at one point
    fitted = fit(start, pairs[train, 0], pairs[train, 1], rtt[train], steps=1500)
    relative = np.abs(fitted.predict(pairs[~train, 0], pairs[~train, 1]) - rtt[~train]) / rtt[~train]
    assert np.median(relative) < 0.05, np.median(relative)


def test_a_small_simulation_meets_the_targets_and_follows_a_live_change() -> None:
    simulation, figures = simulate(300, rounds=10, seed=4, change_round=8)
    results = {v.what: v for v in verdicts(simulation, figures, change_round=8)}
    estimates = [f.estimates[AGGREGATOR_ESTIMATOR] for f in figures]
    assert all(v.met for what, v in results.items() if not what.startswith("nearest")), results
    assert estimates[8].changed_pair_median_relative_error < 0.1  # the round of the change itself
    zone_mean = [f.estimates["zone-mean"] for f in figures]
    assert zone_mean[8].changed_pair_median_relative_error > 0.1  # the old estimate still mixed in the old figure
    assert figures[-1].probes_per_node_per_s <= 1.0
