"""Synthetic clusters for the simulator: node names, zones, regions, CPU capacity and the link matrices (RTT,
bandwidth, loss) as a DenseTopology, built with numpy so 5,000 nodes take seconds.

- `multi-region`: regions of zones of nodes. RTT inside a zone 0.2-0.5 ms, between zones of a region 1-3 ms,
  between regions 30-150 ms (a fixed figure per region pair, as between cloud regions), each link +-5%.
- `cloud-edge`: one cloud zone (a fifth of the nodes) and edge sites of about five nodes; cloud-edge 20-80 ms per
  site, edge-to-edge through the cloud (the sum), edge links lossy (0.5-3%) and slow (10-100 Mbit/s).
- `geometric`: nodes scattered over a 2,000 km square, RTT from distance (fibre at 200 km/ms, both ways, x1.5 for
  routing) + 0.2 ms; zones are the cells of a 4 x 4 grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from netaware.core.topology import DenseTopology

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SimCluster:
    kind: str
    nodes: tuple[str, ...]
    zones: tuple[str, ...]
    regions: tuple[str, ...]
    cpu_m: npt.NDArray[np.int64]
    topology: DenseTopology

    @property
    def size(self) -> int:
        return len(self.nodes)


CPU_TIERS_M = (4000, 8000, 16000)
"""Node CPU sizes (millicores), drawn 30/50/20%; small instances use tighter nodes so capacity matters."""


def _finish(
    kind: str, zones: list[str], regions: list[str], rtt: FloatArray, bandwidth: FloatArray, loss: FloatArray,
    rng: np.random.Generator, cpu_tiers_m: tuple[int, int, int] = CPU_TIERS_M,
) -> SimCluster:  # fmt: skip
    n = len(zones)
    np.fill_diagonal(rtt, 0.0)
    np.fill_diagonal(loss, 0.0)
    nodes = tuple(f"{zones[i]}-n{i}" for i in range(n))
    topology = DenseTopology.from_matrices(nodes=nodes, rtt_ms=rtt, bandwidth_mbps=bandwidth, loss_ratio=loss)
    cpu = rng.choice(np.array(cpu_tiers_m), size=n, p=[0.3, 0.5, 0.2]).astype(np.int64)
    return SimCluster(kind, nodes, tuple(zones), tuple(regions), cpu, topology)


def with_capacity(cluster: SimCluster, cpu_tiers_m: tuple[int, int, int], seed: int) -> SimCluster:
    """The same cluster with node CPU drawn from other tiers."""
    rng = np.random.default_rng(seed + 7)
    cpu = rng.choice(np.array(cpu_tiers_m), size=cluster.size, p=[0.3, 0.5, 0.2]).astype(np.int64)
    return replace(cluster, cpu_m=cpu)


def _noise(rng: np.random.Generator, n: int, spread: float = 0.05) -> FloatArray:
    noise = rng.uniform(1 - spread, 1 + spread, size=(n, n))
    return (noise + noise.T) / 2  # symmetric: one link, two directions alike


def multi_region(n: int, seed: int, *, regions: int = 3, zones_per_region: int = 3) -> SimCluster:
    rng = np.random.default_rng(seed)
    zone_count = regions * zones_per_region
    zone_of = np.arange(n) % zone_count
    region_of = zone_of // zones_per_region
    same_zone = zone_of[:, None] == zone_of[None, :]
    same_region = region_of[:, None] == region_of[None, :]
    region_rtt = rng.uniform(30, 150, size=(regions, regions))
    region_rtt = (region_rtt + region_rtt.T) / 2
    zone_rtt = rng.uniform(1, 3, size=(zone_count, zone_count))
    zone_rtt = (zone_rtt + zone_rtt.T) / 2
    rtt = np.where(
        same_zone,
        rng.uniform(0.2, 0.5),
        np.where(same_region, zone_rtt[zone_of][:, zone_of], region_rtt[region_of][:, region_of]),
    ) * _noise(rng, n)
    bandwidth = np.where(same_zone, 10_000.0, np.where(same_region, 5_000.0, 1_000.0))
    loss = np.where(same_region, 0.0, 0.001)
    zones = [f"r{region_of[i]}z{zone_of[i] % zones_per_region}" for i in range(n)]
    return _finish("multi-region", zones, [f"r{r}" for r in region_of], rtt, bandwidth, loss, rng)


def cloud_edge(n: int, seed: int) -> SimCluster:
    rng = np.random.default_rng(seed)
    cloud = max(1, n // 5)
    sites = max(1, (n - cloud) // 5)
    site_of = np.concatenate([np.full(cloud, -1), np.arange(n - cloud) % sites])
    to_cloud = rng.uniform(20, 80, size=sites)
    site_loss = rng.uniform(0.005, 0.03, size=sites)
    site_rate = rng.uniform(10, 100, size=sites)
    hop = np.where(site_of >= 0, to_cloud[np.maximum(site_of, 0)], 0.0)  # RTT to the cloud; 0 for cloud nodes
    same_site = site_of[:, None] == site_of[None, :]
    rtt = np.where(same_site, 0.3, hop[:, None] + hop[None, :]) * _noise(rng, n)
    lossy = np.where(site_of >= 0, site_loss[np.maximum(site_of, 0)], 0.0)
    loss = np.where(same_site, 0.0, 1 - (1 - lossy[:, None]) * (1 - lossy[None, :]))
    rate = np.where(site_of >= 0, site_rate[np.maximum(site_of, 0)], 10_000.0)
    bandwidth = np.where(same_site, 10_000.0, np.minimum(rate[:, None], rate[None, :]))
    zones = ["cloud" if s < 0 else f"edge{s}" for s in site_of]
    regions = ["cloud" if s < 0 else "edge" for s in site_of]
    return _finish("cloud-edge", zones, regions, rtt, bandwidth, loss, rng)


def geometric(n: int, seed: int) -> SimCluster:
    rng = np.random.default_rng(seed)
    position = rng.uniform(0, 2000, size=(n, 2))
    distance = np.sqrt(((position[:, None, :] - position[None, :, :]) ** 2).sum(axis=2))
    rtt = 0.2 + 1.5 * 2 * distance / 200.0
    bandwidth = np.clip(10_000.0 / (1 + distance / 100), 100, 10_000)
    loss = np.clip(distance / 2000 * 0.004, 0, 0.01)
    cell = (position // 500).astype(int)
    zones = [f"g{x}{y}" for x, y in cell]
    regions = [f"g{x // 2}{y // 2}" for x, y in cell]
    return _finish("geometric", zones, regions, rtt, bandwidth, loss, rng)


CLUSTERS: dict[str, Callable[[int, int], SimCluster]] = {
    "multi-region": multi_region,
    "cloud-edge": cloud_edge,
    "geometric": geometric,
}
