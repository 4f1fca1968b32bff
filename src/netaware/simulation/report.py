"""The simulator's report: every policy on many instances, compared with the optimum where it can be computed and
with each other everywhere, as CSV, Markdown and plots.

- small instances (8-12 nodes with 1-2 CPU each, up to 12 pods, random DAGs and the lab graphs): every policy and
  the integer-programming optimum of the network cost (and, separately, of the latency); ratios to them;
- growing clusters (50 to 1,000 nodes, about half the CPU requested): every heuristic policy, ratios to the best
  policy of the instance (no optimum at that size);
- optionally one large run (5,000 nodes, 2,000 pods): time per pod.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from netaware.core.planning import plan
from netaware.plotting import pyplot
from netaware.simulation.apps import SimApp, apps_for
from netaware.simulation.clusters import CLUSTERS, SimCluster, with_capacity
from netaware.simulation.metrics import evaluate
from netaware.simulation.placing import PlacementError, Simulation, planning_problem

HEURISTICS = (
    "default", "random", "network-overhead", "hierarchy", "netaware", "netaware-lookahead", "plan", "plan-seed",
)  # fmt: skip
SMALL_TIERS_M = (1000, 2000, 2000)


@dataclass(frozen=True)
class Row:
    tier: str
    cluster: str
    nodes: int
    workload: str
    pods: int
    seed: int
    policy: str
    network_cost: float
    latency_ms: float
    violations: int
    max_utilisation: float
    utilisation_spread: float
    ms_per_pod: float
    apps: int = 1
    optimal_cost: float | None = None
    optimal_latency_ms: float | None = None
    failed: str = ""
    """Why the policy placed nothing (a pod it could not place stays Pending); its figures are NaN."""


def run_policy(cluster: SimCluster, apps: Sequence[SimApp], policy: str, seed: int) -> tuple[Simulation, float]:
    simulation = Simulation(cluster, policy, seed=seed)
    started = time.perf_counter()
    simulation.run(apps)
    elapsed = time.perf_counter() - started
    return simulation, elapsed


def instance_rows(
    tier: str, cluster: SimCluster, workload: str, apps: Sequence[SimApp], seed: int, *, with_optimum: bool
) -> list[Row]:
    rows = []
    pods = sum(a.pods for a in apps)
    optimum_cost = optimum_latency = None
    policies = [*HEURISTICS, "optimal"] if with_optimum else list(HEURISTICS)
    results: dict[str, tuple[Any, float, Simulation]] = {}
    failures: dict[str, str] = {}
    for policy in policies:
        try:
            simulation, elapsed = run_policy(cluster, apps, policy, seed)
        except PlacementError as error:
            failures[policy] = str(error)
            continue
        metrics = evaluate(cluster, apps, simulation.placements, simulation.link_costs.cost)
        results[policy] = (metrics, elapsed, simulation)
    if with_optimum and "optimal" in results:
        optimum_cost = results["optimal"][0].network_cost
        # The latency optimum is its own integer program, with the predicted ms instead of link cost as the price.
        optimum_latency = plan(planning_problem(cluster, apps), time_limit_s=60.0, exact=True).predicted_ms
    for policy, (metrics, elapsed, _) in results.items():
        rows.append(
            Row(
                tier=tier,
                cluster=cluster.kind,
                nodes=cluster.size,
                workload=workload,
                pods=pods,
                seed=seed,
                policy=policy,
                network_cost=metrics.network_cost,
                latency_ms=metrics.latency_ms,
                violations=metrics.violations,
                max_utilisation=metrics.max_utilisation,
                utilisation_spread=metrics.utilisation_spread,
                ms_per_pod=1e3 * elapsed / max(1, pods),
                apps=len(apps),
                optimal_cost=optimum_cost,
                optimal_latency_ms=optimum_latency,
            )
        )
    nan = float("nan")
    for policy, reason in failures.items():
        if policy == "optimal":
            continue  # too large for the optimum: not a failure of a scheduler
        rows.append(
            Row(tier, cluster.kind, cluster.size, workload, pods, seed, policy, network_cost=nan, latency_ms=nan,
                violations=0, max_utilisation=nan, utilisation_spread=nan, ms_per_pod=nan, apps=len(apps),
                optimal_cost=optimum_cost, optimal_latency_ms=optimum_latency, failed=reason)
        )  # fmt: skip
    return rows


def small_instances(seeds: int) -> Iterator[tuple[SimCluster, str, list[SimApp], int]]:
    for seed in range(seeds):
        for kind in CLUSTERS:
            nodes = 8 + seed % 5
            cluster = with_capacity(CLUSTERS[kind](nodes, seed), SMALL_TIERS_M, seed)
            for workload, pods in (("random", 8), ("online-boutique", 11), ("chain", 4), ("star", 5)):
                apps = apps_for(workload, pods=pods, seed=seed)
                if sum(a.pods for a in apps) <= 12:
                    yield cluster, workload, apps, seed


def scale_instances(sizes: Sequence[int], seeds: int) -> Iterator[tuple[SimCluster, str, list[SimApp], int]]:
    for size in sizes:
        for seed in range(seeds):
            for kind in CLUSTERS:
                cluster = CLUSTERS[kind](size, seed)
                pods = int(cluster.cpu_m.sum() * 0.5 / 550)  # about half the CPU, at ~550m per pod on average
                for workload in ("random", "social-network"):
                    yield cluster, workload, apps_for(workload, pods=pods, seed=seed), seed


def build_report(
    out_dir: Path, *, seeds: int = 4, sizes: Sequence[int] = (50, 200, 1000), progress: Callable[[str], None] = print
) -> list[Row]:
    rows: list[Row] = []
    small = list(small_instances(seeds))
    for index, (cluster, workload, apps, seed) in enumerate(small, 1):
        progress(f"small instance {index}/{len(small)}: {cluster.kind} x{cluster.size}, {workload}")
        rows += instance_rows("small", cluster, workload, apps, seed, with_optimum=True)
    scale = list(scale_instances(sizes, max(1, seeds // 2)))
    for index, (cluster, workload, apps, seed) in enumerate(scale, 1):
        progress(f"scale instance {index}/{len(scale)}: {cluster.kind} x{cluster.size}, {workload}")
        rows += instance_rows("scale", cluster, workload, apps, seed, with_optimum=False)
    write(rows, out_dir)
    return rows


def write(rows: Sequence[Row], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "simulation.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    (out_dir / "summary.md").write_text(summary(rows))
    plot(rows, out_dir)


def _ratios(rows: Sequence[Row], policy: str, field: str, reference: str) -> list[float]:
    values = []
    for row in rows:
        if row.policy != policy or row.failed:
            continue
        base = getattr(row, reference)
        if base is not None and base > 1e-9:
            values.append(getattr(row, field) / base)
        elif base is not None and getattr(row, field) <= 1e-9:
            values.append(1.0)  # both zero: as good as the optimum
    return values


def _instances(rows: Sequence[Row]) -> dict[tuple[object, ...], dict[str, Row]]:
    grouped: dict[tuple[object, ...], dict[str, Row]] = {}
    for row in rows:
        if row.failed:
            continue
        grouped.setdefault((row.tier, row.cluster, row.nodes, row.workload, row.seed), {})[row.policy] = row
    return grouped


GROUP_BASELINES = ("hierarchy", "network-overhead", "netaware")


def planner_comparison(rows: Sequence[Row], baseline: str, tier: str) -> str:
    """How often `plan` has the lower latency than `baseline` on the tier's instances (a baseline that left pods
    Pending loses the instance)."""
    grouped: dict[tuple[object, ...], dict[str, Row]] = {}
    for row in rows:
        if row.tier == tier:
            grouped.setdefault((row.cluster, row.nodes, row.workload, row.seed), {})[row.policy] = row
    wins = ties = total = 0
    for by_policy in grouped.values():
        mine, theirs = by_policy.get("plan"), by_policy.get(baseline)
        if mine is None or mine.failed or theirs is None:
            continue
        total += 1
        if theirs.failed or mine.latency_ms < theirs.latency_ms - 1e-9:
            wins += 1
        elif abs(mine.latency_ms - theirs.latency_ms) <= 1e-9:
            ties += 1
    if not total:
        return f"- {tier}: no instance with both plan and {baseline}."
    return (
        f"- {tier} instances: plan better than {baseline} in {wins} of {total} ({100 * wins / total:.0f}%), "
        f"equal in {ties}."
    )


def summary(rows: Sequence[Row]) -> str:
    small = [r for r in rows if r.tier == "small"]
    lines = ["# Placement quality: the simulator's report", ""]
    lines += [
        f"Small instances (8-12 nodes, up to 12 pods, with the optimum): {len(_instances(small))}. Ratios over "
        "the instances whose optimum is above 0; where the optimum is 0 (everything fits co-located) a ratio "
        "is undefined, so the last column counts the instances a policy did not reach 0.",
        "",
    ]
    lines += [
        "| policy | cost / optimum (mean) | cost / optimum (worst) | latency / optimum (mean) | missed a 0 optimum |",
        "|---|---|---|---|---|",
    ]
    for policy in HEURISTICS:
        cost = _ratios(small, policy, "network_cost", "optimal_cost")
        latency = _ratios(small, policy, "latency_ms", "optimal_latency_ms")
        missed = sum(
            1
            for r in small
            if r.policy == policy and r.optimal_cost is not None and r.optimal_cost <= 1e-9 and r.network_cost > 1e-9
        )
        if cost:
            lines.append(
                f"| {policy} | {statistics.mean(cost):.3f} | {max(cost):.3f} | {statistics.mean(latency):.3f} "
                f"| {missed} |"
            )
    grouped = _instances(rows)
    lines += ["", "## netaware vs the NetworkOverhead re-implementation (expected end-to-end latency)", ""]
    for candidate in ("netaware", "netaware-lookahead"):
        better = [
            (g["network-overhead"].latency_ms - g[candidate].latency_ms) / g["network-overhead"].latency_ms
            for g in grouped.values()
            if candidate in g and "network-overhead" in g and g["network-overhead"].latency_ms > 1e-9
        ]
        wins = sum(1 for b in better if b > 1e-9)
        ties = sum(1 for b in better if abs(b) <= 1e-9)
        if better:
            lines.append(
                f"- {candidate} better in {wins} of {len(better)} instances ({100 * wins / len(better):.0f}%), "
                f"equal in {ties}; mean improvement {100 * statistics.mean(better):.1f}% "
                f"(median {100 * statistics.median(better):.1f}%)."
            )
    lines += ["", "## The planner vs the group baselines (expected end-to-end latency)", ""]
    lines += [planner_comparison(rows, baseline, tier) for tier in ("small", "scale") for baseline in GROUP_BASELINES]
    failed = Counter(r.policy for r in rows if r.failed)
    if failed:
        lines += ["", "Policies that left pods Pending (the instance counts as lost for them): "
                  + ", ".join(f"{policy} in {count}" for policy, count in sorted(failed.items())) + "."]  # fmt: skip
    lines += ["", "## Scale (ratio of network cost to netaware's; time per pod)", ""]
    lines += [
        "| nodes | policy | cost / netaware (mean) | latency ms per app request (mean) | ms per pod (mean) |",
        "|---|---|---|---|---|",
    ]
    for nodes in sorted({r.nodes for r in rows if r.tier != "small"}):
        at = [r for r in rows if r.tier != "small" and r.nodes == nodes and not r.failed]
        reference = {(r.cluster, r.workload, r.seed): r.network_cost for r in at if r.policy == "netaware"}
        for policy in HEURISTICS:
            mine = [r for r in at if r.policy == policy]
            ratios = [
                r.network_cost / reference[(r.cluster, r.workload, r.seed)]
                for r in mine
                if reference.get((r.cluster, r.workload, r.seed), 0) > 1e-9
            ]
            if mine:
                lines.append(
                    f"| {nodes} | {policy} | {statistics.mean(ratios) if ratios else float('nan'):.2f} | "
                    f"{statistics.mean(r.latency_ms / r.apps for r in mine):.0f} | "
                    f"{statistics.mean(r.ms_per_pod for r in mine):.2f} |"
                )
    lines += ["", "Plots: ratio-to-optimum.png, scale.png. Data: simulation.csv.", ""]
    return "\n".join(lines)


def plot(rows: Sequence[Row], out_dir: Path) -> None:
    plt = pyplot()
    small = [r for r in rows if r.tier == "small"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, (field, reference, title) in zip(
        axes,
        (("network_cost", "optimal_cost", "network cost / optimum"), ("latency_ms", "optimal_latency_ms",
                                                                     "latency / optimum")),
        strict=True,
    ):  # fmt: skip
        data = [_ratios(small, policy, field, reference) for policy in HEURISTICS]
        axis.boxplot(data, tick_labels=list(HEURISTICS), showmeans=True)
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_title(f"small instances: {title}")
        axis.set_yscale("log")
        axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "ratio-to-optimum.png", dpi=110)
    plt.close(figure)
    scale = [r for r in rows if r.tier != "small" and not r.failed]
    if not scale:
        return
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for policy in HEURISTICS:
        points = [
            (n, statistics.mean(mine))
            for n in sorted({r.nodes for r in scale})
            if (mine := [r.latency_ms / r.apps for r in scale if r.nodes == n and r.policy == policy])
        ]
        if points:
            axis.plot([n for n, _ in points], [m for _, m in points], marker="o", label=policy)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("cluster size (nodes)")
    axis.set_ylabel("expected network latency per app request (ms, mean)")
    axis.set_title("placement quality vs cluster size")
    axis.legend()
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "scale.png", dpi=110)
    plt.close(figure)
