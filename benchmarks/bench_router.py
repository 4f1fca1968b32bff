"""Benchmark the latency router's policies side by side in one run, with real processes on loopback.

1. Policies under a load ramp: 8 replicas (the dummy workload service, one work slot each: `--work-ms` per request,
   more requests wait in line), two of them slowed (twice the work time). Capacity is the sum of the replicas'
   rates (6 x 1/W + 2 x 1/2W). One router process per policy (random, round-robin, least-request, p2c-peak-ewma,
   lowest-latency, prequal, and prequal with the paper's pool upkeep), all started at once; the open-loop generator
   (Poisson arrivals, latency from the scheduled send time) drives each of them in turn at each load step (50% ..
   150% of capacity), with the policy order rotated per step and the replicas drained between runs. Prints p50 /
   p99 / p99.9, errors and the share of requests the slowed replicas received, per step and policy, and the ratios
   the issue targets: prequal's p99 against round-robin's (target <= 0.5 at 90% and above), against
   lowest-latency's (target < 1), against P2C + peak-EWMA's, Linkerd's balancer (target <= 0.8 at 90%, <= 0.65 at
   100% and above), and against the paper's upkeep (at most 1: netaware's own parameters must not lose to it).
2. Proxy overhead: one fast replica (no work, no slot limit) at 500 requests/s, directly and through the Prequal
   router, interleaved; prints the added p50.

Writes `router-policies.png` (p50 and p99 against load, per policy) and `router-results.json` to --out.
Run: `python benchmarks/bench_router.py [--work-ms 40] [--step-s 6] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import uvloop
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from netaware.core.balancing import POLICIES
from netaware.router.loadgen import open_loop
from netaware.router.testbed import ReplicaSpec, Testbed, attempts_per_replica, drain, running

console = Console()
VARIANTS: dict[str, tuple[str, ...]] = {policy: (policy,) for policy in POLICIES} | {
    "prequal-paper": ("prequal", "--paper-parameters"),
}
"""Each router run: its name in the tables, and its policy and flags (prequal with the paper's pool upkeep too)."""
NAMES = list(VARIANTS)
LOAD_STEPS = (0.5, 0.7, 0.9, 1.1, 1.3, 1.5)
SLOWED = 2
REPLICAS = 8


def replica_specs(work_ms: float) -> list[ReplicaSpec]:
    return [ReplicaSpec(port=0, work_ms=work_ms * (2 if i < SLOWED else 1), capacity=1) for i in range(REPLICAS)]


def capacity_per_s(specs: list[ReplicaSpec]) -> float:
    return sum(spec.capacity * 1e3 / spec.work_ms for spec in specs)


def policies_under_load(testbed: Testbed, work_ms: float, step_s: float) -> list[dict[str, Any]]:
    specs = replica_specs(work_ms)
    addresses = [testbed.start_replica(spec) for spec in specs]
    slowed = set(addresses[:SLOWED])
    routers = {
        name: testbed.start_router(addresses, *VARIANTS[name], "--seed", str(index)) for index, name in enumerate(NAMES)
    }
    capacity = capacity_per_s(specs)
    console.print(
        f"[bold]policies[/]: {REPLICAS} replicas ({SLOWED} slowed to {2 * work_ms:.0f} ms, the rest "
        f"{work_ms:.0f} ms, one work slot each): capacity {capacity:.0f} requests/s; {step_s:.0f} s per policy "
        "and step"
    )
    rows: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("load steps x policies", total=len(LOAD_STEPS) * len(NAMES))
        for step_index, load in enumerate(LOAD_STEPS):
            rotation = step_index % len(NAMES)
            for policy in NAMES[rotation:] + NAMES[:rotation]:
                router = routers[policy]
                before = attempts_per_replica(router.admin)
                report = uvloop.run(
                    open_loop(f"http://{router.listen}/", rate_per_s=load * capacity, duration_s=step_s,
                              seed=step_index)
                )  # fmt: skip
                after = attempts_per_replica(router.admin)
                sent = {r: after.get(r, 0.0) - before.get(r, 0.0) for r in addresses}
                total = sum(sent.values()) or 1.0
                rows.append(
                    {"policy": policy, "load": load, "ratePerS": load * capacity, **report.summary(),
                     "slowedShare": sum(sent[r] for r in slowed) / total}
                )  # fmt: skip
                drain(addresses)
                progress.advance(task)
    return rows


def print_policies(rows: list[dict[str, Any]]) -> dict[str, float]:
    table = Table(title="router policies under load (latency ms, from scheduled send time)")
    for column in ("load", "policy", "req/s", "p50", "p99", "p99.9", "errors", "slowed share", "p99 x round-robin"):
        table.add_column(column, justify="right" if column != "policy" else "left")
    by_key = {(r["load"], r["policy"]): r for r in rows}
    ratios: dict[str, float] = {}
    targets: dict[str, float] = {}
    for load in LOAD_STEPS:
        baseline = by_key[(load, "round-robin")]["p99Ms"]
        for policy in NAMES:
            row = by_key[(load, policy)]
            table.add_row(
                f"{load:.0%}", policy, f"{row['ratePerS']:.0f}", f"{row['p50Ms']:.1f}", f"{row['p99Ms']:.1f}",
                f"{row['p999Ms']:.1f}", str(row["errors"]), f"{row['slowedShare']:.0%}",
                f"{row['p99Ms'] / baseline:.2f}",
            )  # fmt: skip
        table.add_section()
        if load >= 0.9:
            prequal = by_key[(load, "prequal")]["p99Ms"]
            # Linkerd's balancer: at most 0.8x at 90% load, 0.65x at 100% and above.
            against = {"round-robin": 0.5, "lowest-latency": 1.0, "p2c-peak-ewma": 0.8 if load < 1.0 else 0.65,
                       "prequal-paper": 1.0}  # fmt: skip
            for other, target in against.items():
                ratios[f"{load:.0%} prequal/{other}"] = prequal / by_key[(load, other)]["p99Ms"]
                targets[f"{load:.0%} prequal/{other}"] = target
    console.print(table)
    for name, ratio in ratios.items():
        target = targets[name]
        verdict = "met" if ratio <= target and not math.isnan(ratio) else "NOT met"
        console.print(f"  p99 {name}: [bold]{ratio:.2f}[/] (target <= {target}: {verdict})")
    return ratios


def plot_policies(rows: list[dict[str, Any]], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for policy in NAMES:
        mine = [r for r in rows if r["policy"] == policy]
        loads = [r["load"] * 100 for r in mine]
        for axis, key in zip(axes, ("p50Ms", "p99Ms"), strict=True):
            axis.plot(
                loads, [r[key] for r in mine], marker="o", label=policy, linewidth=2.4 if policy == "prequal" else 1.4
            )
    for axis, title in zip(axes, ("p50 latency", "p99 latency"), strict=True):
        axis.set_yscale("log")
        axis.set_xlabel("offered load (% of capacity)")
        axis.set_ylabel("ms")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    figure.suptitle("8 replicas, 2 slowed: latency by balancing policy")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def proxy_overhead(testbed: Testbed, rate: float, duration_s: float, rounds: int) -> dict[str, float]:
    backend = testbed.start_replica(ReplicaSpec(port=0, work_ms=0.0, capacity=0), threads=64)
    router = testbed.start_router([backend], "prequal")
    targets = {"direct": f"http://{backend}/", "via router": f"http://{router.listen}/"}
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    for round_index in range(rounds):
        for name, url in targets.items():
            report = uvloop.run(open_loop(url, rate_per_s=rate, duration_s=duration_s, seed=round_index))
            latencies[name] += report.latencies_ms
    import numpy as np

    figures = {f"{name} p50": float(np.percentile(values, 50)) for name, values in latencies.items()}
    figures |= {f"{name} p99": float(np.percentile(values, 99)) for name, values in latencies.items()}
    added = figures["via router p50"] - figures["direct p50"]
    console.print(
        f"[bold]proxy overhead[/] at {rate:.0f} requests/s against a fast replica ({rounds} x {duration_s:.0f} s each, "
        f"interleaved): p50 direct {figures['direct p50']:.2f} ms, via router {figures['via router p50']:.2f} ms; "
        f"added p50 [bold]{added:.2f} ms[/] (target < 1 ms: {'met' if added < 1 else 'NOT met'}); p99 direct "
        f"{figures['direct p99']:.2f} ms, via router {figures['via router p99']:.2f} ms"
    )
    return figures | {"added p50": added}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-ms", type=float, default=40.0, help="work per request on a fast replica")
    parser.add_argument("--step-s", type=float, default=6.0, help="seconds per policy and load step")
    parser.add_argument("--overhead-rate", type=float, default=500.0)
    parser.add_argument("--out", type=Path, default=None, help="where to write the plot and JSON (default: a temp dir)")
    arguments = parser.parse_args()
    out = arguments.out or Path(tempfile.mkdtemp(prefix="netaware-bench-router-"))
    out.mkdir(parents=True, exist_ok=True)
    with running(out / "logs") as testbed:
        overhead = proxy_overhead(testbed, arguments.overhead_rate, 5.0, 2)
        rows = policies_under_load(testbed, arguments.work_ms, arguments.step_s)
    ratios = print_policies(rows)
    plot_policies(rows, out / "router-policies.png")
    (out / "router-results.json").write_text(
        json.dumps({"rows": rows, "ratios": ratios, "overhead": overhead}, indent=1)
    )
    console.print(f"plot and figures: {out}/router-policies.png, {out}/router-results.json")


if __name__ == "__main__":
    main()
