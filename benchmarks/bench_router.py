"""Benchmark the latency router's policies side by side in one run, with real processes on loopback: replicas of the
dummy workload service (one work slot each: `--work-ms` per request, more requests wait in line) behind one router
process per policy, all started at once; an open-loop generator (Poisson arrivals, latency from the scheduled send
time) drives each router in turn at each load step, the policy order rotated per step and the replicas drained
between runs. Load is a share of the capacity of the replicas that answer (the sum of their rates).

Scenarios (the issue's targets, printed as met or NOT met):
1. heterogeneous: 8 replicas, 2 slowed (twice the work time); every policy (random, round-robin, least-request,
   p2c-peak-ewma, lowest-latency, prequal, prequal with the paper's pool upkeep, and prequal with 2 probes per
   request) from 50% to 150% of capacity.
   Prequal's p99 against round-robin's (<= 0.33x at 90% and above), lowest-latency's (< 1), P2C + peak-EWMA's,
   Linkerd's balancer (<= 0.8x at 90%, <= 0.65x at 100% and above), and the paper's upkeep (<= 1).
2. uniform: 8 equal replicas, 50% to 150%: Prequal's p99 at most 1.10x round-robin's and P2C + peak-EWMA's at every
   step (nothing to gain, so nothing may be lost).
3. failing: 8 replicas, 2 answering 503 at once (they look fast and idle), the router sending each request once
   (`--max-attempts 1`: retries would hide the balancer's choice as latency): Prequal's failed requests at most 0.2x
   P2C + peak-EWMA's, and no more than round-robin's at any step up to 130% of the 6 healthy replicas' capacity.
4. slowing: 8 equal replicas at 70% load; 5 s in, one replica's work time goes to 5x (`PUT /v1/faults`). Its share
   of the picks (counted when sent) in a sliding 0.5 s window; the time until that share stays below half its share
   before the change ("loses most of its traffic", target within 2 s).
Every scenario reports p50 / p99 / p99.9, errors, the share of picks per replica and probes per request (target at
most 3 for Prequal).
5. Proxy overhead: one fast replica (no work, no slot limit) at 500 requests/s, directly and through the Prequal
   router, interleaved; prints the added p50.

Writes `router-policies.png` (heterogeneous: p50 and p99 against load, per policy), `router-scenarios.png` (uniform
p99, failing requests, the slowed replica's share over time) and `router-results.json` to --out.
Run: `python benchmarks/bench_router.py [--work-ms 40] [--step-s 6] [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import uvloop
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from netaware.core.balancing import POLICIES
from netaware.router.loadgen import open_loop
from netaware.router.testbed import (
    ReplicaSpec,
    RouterAddresses,
    RouterCounts,
    Testbed,
    drain,
    router_counts,
    running,
    set_faults,
)

console = Console()
VARIANTS: dict[str, tuple[str, ...]] = {policy: (policy,) for policy in POLICIES} | {
    "prequal-paper": ("prequal", "--paper-parameters"),
    "prequal-2-probes": ("prequal", "--probes-per-query", "2"),
}
"""Each router run: its name in the tables, and its policy and flags (prequal with the paper's pool upkeep, and
with 2 probes per request instead of 3: what fewer probes cost)."""
NAMES = list(VARIANTS)
BASELINES = ("round-robin", "p2c-peak-ewma", "prequal")
"""The policies of the scenarios beyond the first: the issue's targets compare Prequal with these two."""
LOAD_STEPS = (0.5, 0.7, 0.9, 1.1, 1.3, 1.5)
SCENARIOS = ("heterogeneous", "uniform", "failing", "slowing")
REPLICAS = 8
ODD = 2
"""Replicas that differ from the rest (slowed or failing), the first ones started."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    specs: tuple[ReplicaSpec, ...]
    policies: tuple[str, ...]
    loads: tuple[float, ...]
    odd: int = 0
    """The first `odd` replicas are the slowed or failing ones (their share of the picks is a column)."""
    router_flags: tuple[str, ...] = ()

    @property
    def capacity_per_s(self) -> float:
        """Requests per second the replicas that answer can serve (a failing one serves none)."""
        return sum(spec.capacity * 1e3 / spec.work_ms for spec in self.specs if spec.fail_ratio < 1.0)


def scenarios(work_ms: float) -> list[Scenario]:
    def replica(work: float = work_ms, fail_ratio: float = 0.0) -> ReplicaSpec:
        return ReplicaSpec(port=0, work_ms=work, capacity=1, fail_ratio=fail_ratio)

    odd_then_rest = [replica(2 * work_ms)] * ODD + [replica()] * (REPLICAS - ODD)
    return [
        Scenario("heterogeneous", f"{REPLICAS} replicas, {ODD} slowed to {2 * work_ms:.0f} ms, the rest "
                 f"{work_ms:.0f} ms", tuple(odd_then_rest), tuple(NAMES), LOAD_STEPS, odd=ODD),
        Scenario("uniform", f"{REPLICAS} equal replicas, {work_ms:.0f} ms each", (replica(),) * REPLICAS,
                 BASELINES, LOAD_STEPS),
        Scenario("failing", f"{REPLICAS} replicas, {ODD} answering 503 at once; each request sent once",
                 (replica(fail_ratio=1.0),) * ODD + (replica(),) * (REPLICAS - ODD), BASELINES, (0.5, 0.9, 1.3),
                 odd=ODD, router_flags=("--max-attempts", "1")),
    ]  # fmt: skip


def start_routers(testbed: Testbed, addresses: list[str], policies: tuple[str, ...], *flags: str) -> dict[str, Any]:
    return {
        name: testbed.start_router(addresses, *VARIANTS[name], *flags, "--seed", str(index))
        for index, name in enumerate(policies)
    }


def measured_step(
    router: RouterAddresses, addresses: list[str], rate_per_s: float, duration_s: float, seed: int
) -> dict[str, Any]:
    """One policy at one load: the load report's figures, the share of picks per replica (in `addresses` order),
    failed attempts and probes per request."""
    before = router_counts(router.admin)
    report = uvloop.run(open_loop(f"http://{router.listen}/", rate_per_s=rate_per_s, duration_s=duration_s, seed=seed))
    counts = router_counts(router.admin).since(before)
    picks = sum(counts.picks.values()) or 1.0
    drain(addresses)
    return {
        **report.summary(),
        "ratePerS": rate_per_s,
        "shares": [counts.picks.get(r, 0.0) / picks for r in addresses],
        "failedAttempts": counts.failed,
        "probesPerRequest": counts.probes / max(report.requests, 1),
    }


def under_load(testbed: Testbed, scenario: Scenario, step_s: float) -> list[dict[str, Any]]:
    addresses = [testbed.start_replica(spec) for spec in scenario.specs]
    routers = start_routers(testbed, addresses, scenario.policies, *scenario.router_flags)
    capacity = scenario.capacity_per_s
    console.print(
        f"[bold]{scenario.name}[/]: {scenario.description} (one work slot each): capacity {capacity:.0f} requests/s; "
        f"{step_s:g} s per policy and step"
    )
    rows: list[dict[str, Any]] = []
    policies = list(scenario.policies)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{scenario.name}: load steps x policies", total=len(scenario.loads) * len(policies))
        for step_index, load in enumerate(scenario.loads):
            rotation = step_index % len(policies)
            for policy in policies[rotation:] + policies[:rotation]:
                step = measured_step(routers[policy], addresses, load * capacity, step_s, seed=step_index)
                rows.append({"scenario": scenario.name, "policy": policy, "load": load, **step,
                             "oddShare": sum(step["shares"][: scenario.odd])})  # fmt: skip
                progress.advance(task)
    for address in addresses:
        testbed.kill_replica(address)
    return rows


def verdict(ratio: float, target: float) -> str:
    return "met" if ratio <= target and not math.isnan(ratio) else "NOT met"


def print_rows(scenario: Scenario, rows: list[dict[str, Any]]) -> None:
    title = f"{scenario.name}: {scenario.description} (latency ms, from scheduled send time)"
    table = Table(title=title)
    columns = ["load", "policy", "req/s", "p50", "p99", "p99.9", "errors", "failed attempts"]
    columns += ["odd share"] if scenario.odd else []
    columns += ["probes/req", "picks per replica %", "p99 x round-robin"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("policy", "picks per replica %") else "right")
    by_key = {(r["load"], r["policy"]): r for r in rows}
    for load in scenario.loads:
        baseline = by_key[(load, "round-robin")]["p99Ms"]
        for policy in scenario.policies:
            row = by_key[(load, policy)]
            cells = [f"{load:.0%}", policy, f"{row['ratePerS']:.0f}", f"{row['p50Ms']:.1f}", f"{row['p99Ms']:.1f}",
                     f"{row['p999Ms']:.1f}", str(row["errors"]), f"{row['failedAttempts']:.0f}"]  # fmt: skip
            cells += [f"{row['oddShare']:.0%}"] if scenario.odd else []
            cells += [f"{row['probesPerRequest']:.2f}", " ".join(f"{share * 100:.0f}" for share in row["shares"]),
                      f"{row['p99Ms'] / baseline:.2f}"]  # fmt: skip
            table.add_row(*cells)
        table.add_section()
    console.print(table)


def targets(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every target of the issue that these rows measure: its name -> the figure and the most it may be."""
    by_key = {(r["scenario"], r["load"], r["policy"]): r for r in rows}
    found: dict[str, dict[str, float]] = {}

    def check(name: str, figure: float, most: float) -> None:
        found[name] = {"figure": figure, "target": most}

    for (scenario, load, policy), row in by_key.items():
        if policy != "prequal":
            continue
        other = {name: by_key[(scenario, load, name)] for name in NAMES if (scenario, load, name) in by_key}
        if scenario == "heterogeneous" and load >= 0.9:
            # Linkerd's balancer: at most 0.8x at 90% load, 0.65x at 100% and above.
            against = {"round-robin": 0.33, "lowest-latency": 1.0, "p2c-peak-ewma": 0.8 if load < 1.0 else 0.65,
                       "prequal-paper": 1.0}  # fmt: skip
            for name, most in against.items():
                check(f"heterogeneous {load:.0%}: p99 prequal/{name}", row["p99Ms"] / other[name]["p99Ms"], most)
        if scenario == "uniform":
            for name in ("round-robin", "p2c-peak-ewma"):
                check(f"uniform {load:.0%}: p99 prequal/{name}", row["p99Ms"] / other[name]["p99Ms"], 1.10)
        if scenario == "failing":
            failed = row["errors"]
            check(f"failing {load:.0%}: failed requests prequal/p2c-peak-ewma",
                  failed / max(other["p2c-peak-ewma"]["errors"], 1), 0.2)  # fmt: skip
            check(
                f"failing {load:.0%}: failed requests prequal - round-robin", failed - other["round-robin"]["errors"], 0
            )
        check(f"{scenario} {load:.0%}: prequal probes per request", row["probesPerRequest"], 3.0)
    return found


def proxy_overhead(testbed: Testbed, rate: float, duration_s: float, rounds: int) -> dict[str, float]:
    backend = testbed.start_replica(ReplicaSpec(port=0, work_ms=0.0, capacity=0), threads=64)
    router = testbed.start_router([backend], "prequal")
    targets = {"direct": f"http://{backend}/", "via router": f"http://{router.listen}/"}
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    for round_index in range(rounds):
        for name, url in targets.items():
            report = uvloop.run(open_loop(url, rate_per_s=rate, duration_s=duration_s, seed=round_index))
            latencies[name] += report.latencies_ms
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


SLOW_AFTER_S = 5.0
SLOWING_LOAD = 0.7
SLOWDOWN = 5.0
WINDOW_S = 0.5


def slowing_mid_run(testbed: Testbed, work_ms: float, duration_s: float) -> dict[str, dict[str, Any]]:
    """Per policy: the slowed replica's share of the picks over time, and how long it took to lose most of it."""
    addresses = [testbed.start_replica(ReplicaSpec(port=0, work_ms=work_ms, capacity=1)) for _ in range(REPLICAS)]
    routers = start_routers(testbed, addresses, BASELINES)
    slowed = addresses[0]
    rate = SLOWING_LOAD * REPLICAS * 1e3 / work_ms
    console.print(
        f"[bold]slowing[/]: {REPLICAS} equal replicas ({work_ms:.0f} ms) at {SLOWING_LOAD:.0%} load ({rate:.0f} "
        f"requests/s); {SLOW_AFTER_S:.0f} s in, one replica's work time goes to {SLOWDOWN:g}x; {duration_s:.0f} s "
        "per policy"
    )
    results: dict[str, dict[str, Any]] = {}
    for index, policy in enumerate(BASELINES):
        router = routers[policy]
        samples: list[tuple[float, RouterCounts]] = []
        stop = threading.Event()
        slow = threading.Timer(SLOW_AFTER_S, set_faults, (slowed,), {"work_ms": work_ms * SLOWDOWN})
        sampler = threading.Thread(target=sample_counts, args=(router, samples, stop), name=f"sampler-{policy}")
        sampler.start()
        slow.start()
        try:
            report = uvloop.run(open_loop(f"http://{router.listen}/", rate_per_s=rate, duration_s=duration_s,
                                          seed=index))  # fmt: skip
        finally:
            stop.set()
            sampler.join()
            slow.join()
        set_faults(slowed, work_ms=work_ms)
        drain(addresses)
        results[policy] = {**report.summary(), **slowed_share_over_time(samples, slowed)}
    for address in addresses:
        testbed.kill_replica(address)
    return results


def sample_counts(router: RouterAddresses, samples: list[tuple[float, RouterCounts]], stop: threading.Event) -> None:
    """Append the router's counts every 0.1 s (seconds since the start, counts) until `stop` is set."""
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, router_counts(router.admin)))
        stop.wait(0.1)


def slowed_share_over_time(samples: list[tuple[float, RouterCounts]], slowed: str) -> dict[str, Any]:
    """The slowed replica's share of the picks in each sliding window, its share before the change, and the seconds
    from the change until its share stayed below half of that (None: it never did)."""
    times, shares = [], []
    for (t, now), (_, earlier) in zip(samples[5:], samples, strict=False):  # 5 samples apart: 0.5 s windows
        counts = now.since(earlier)
        picks = sum(counts.picks.values())
        if picks:
            times.append(t)
            shares.append(counts.picks.get(slowed, 0.0) / picks)
    before = [share for t, share in zip(times, shares, strict=True) if WINDOW_S + 0.5 <= t <= SLOW_AFTER_S]
    share_before = float(np.mean(before)) if before else float("nan")
    lost_at: float | None = None
    for t, share in zip(times, shares, strict=True):
        if t <= SLOW_AFTER_S:
            continue
        below = share < share_before / 2
        lost_at = (lost_at or t) if below else None  # above again: it got its traffic back, not lost yet
    after = [share for t, share in zip(times, shares, strict=True) if t > SLOW_AFTER_S + 3]
    return {
        "times": times,
        "shares": shares,
        "shareBefore": share_before,
        "shareLate": float(np.mean(after)) if after else float("nan"),
        "lostAfterS": None if lost_at is None else max(0.0, lost_at - SLOW_AFTER_S),
    }


def print_slowing(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    table = Table(title=f"slowing: one of {REPLICAS} replicas {SLOWDOWN:g}x slower {SLOW_AFTER_S:.0f} s in")
    for column in ("policy", "p50", "p99", "errors", "its share before", "its share 3 s after", "lost most after s"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for policy, result in results.items():
        lost = result["lostAfterS"]
        table.add_row(policy, f"{result['p50Ms']:.1f}", f"{result['p99Ms']:.1f}", str(result["errors"]),
                      f"{result['shareBefore']:.0%}", f"{result['shareLate']:.0%}",
                      "never" if lost is None else f"{lost:.1f}")  # fmt: skip
    console.print(table)
    lost = results["prequal"]["lostAfterS"]
    return {"slowing: seconds until prequal sends the slowed replica less than half its share":
            {"figure": math.inf if lost is None else lost, "target": 2.0}}  # fmt: skip


def plot_heterogeneous(rows: list[dict[str, Any]], path: Path) -> None:
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
    figure.suptitle(f"{REPLICAS} replicas, {ODD} slowed: latency by balancing policy")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_scenarios(rows: list[dict[str, Any]], slowing: dict[str, dict[str, Any]], path: Path) -> None:
    figure, (uniform, failing, slowed) = plt.subplots(1, 3, figsize=(15, 4.2))
    for policy in BASELINES:
        width = 2.4 if policy == "prequal" else 1.4
        mine = [r for r in rows if r["policy"] == policy and r["scenario"] == "uniform"]
        uniform.plot([r["load"] * 100 for r in mine], [r["p99Ms"] for r in mine], marker="o", label=policy,
                     linewidth=width)  # fmt: skip
        mine = [r for r in rows if r["policy"] == policy and r["scenario"] == "failing"]
        failing.plot([r["load"] * 100 for r in mine], [100 * r["errors"] / max(r["requests"], 1) for r in mine],
                     marker="o", label=policy, linewidth=width)  # fmt: skip
        slowed.plot(slowing[policy]["times"], [100 * share for share in slowing[policy]["shares"]], label=policy,
                    linewidth=width)  # fmt: skip
    uniform.set(title=f"uniform: p99, {REPLICAS} equal replicas", xlabel="offered load (% of capacity)", ylabel="ms",
                yscale="log")  # fmt: skip
    failing.set(title=f"failing: {ODD} of {REPLICAS} answer 503 at once", xlabel="offered load (% of healthy capacity)",
                ylabel="failed requests %")  # fmt: skip
    slowed.axvline(SLOW_AFTER_S, color="black", linestyle="--", linewidth=1)
    slowed.annotate(f"work x{SLOWDOWN:g}", (SLOW_AFTER_S, 0), xytext=(4, 4), textcoords="offset points")
    slowed.set(title=f"slowing: the slowed replica's share of picks ({WINDOW_S:g} s windows)",
               xlabel="seconds into the run", ylabel="share of picks %")  # fmt: skip
    for axis in (uniform, failing, slowed):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_targets(found: dict[str, dict[str, float]]) -> None:
    for name, target in found.items():
        figure, most = target["figure"], target["target"]
        console.print(f"  {name}: [bold]{figure:.2f}[/] (target <= {most:g}: {verdict(figure, most)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-ms", type=float, default=40.0, help="work per request on a fast replica")
    parser.add_argument("--step-s", type=float, default=6.0, help="seconds per policy and load step")
    parser.add_argument("--slowing-s", type=float, default=14.0, help="seconds per policy in the slowing scenario")
    parser.add_argument("--overhead-rate", type=float, default=500.0)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, default=None,
                        help="run only this scenario (repeatable; default: all, and the proxy overhead)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the plots and JSON (default: a temp dir)"
    )
    arguments = parser.parse_args()
    out = arguments.out or Path(tempfile.mkdtemp(prefix="netaware-bench-router-"))
    out.mkdir(parents=True, exist_ok=True)
    chosen = set(arguments.scenario or SCENARIOS)
    rows: list[dict[str, Any]] = []
    overhead: dict[str, float] = {}
    slowing: dict[str, dict[str, Any]] = {}
    with running(out / "logs") as testbed:
        if arguments.scenario is None:
            overhead = proxy_overhead(testbed, arguments.overhead_rate, 5.0, 2)
        for scenario in scenarios(arguments.work_ms):
            if scenario.name in chosen:
                mine = under_load(testbed, scenario, arguments.step_s)
                print_rows(scenario, mine)
                rows += mine
        if "slowing" in chosen:
            slowing = slowing_mid_run(testbed, arguments.work_ms, arguments.slowing_s)
    found = targets(rows) | (print_slowing(slowing) if slowing else {})
    console.print("[bold]targets[/]")
    print_targets(found)
    if "heterogeneous" in chosen:
        plot_heterogeneous([r for r in rows if r["scenario"] == "heterogeneous"], out / "router-policies.png")
    if chosen >= {"uniform", "failing", "slowing"}:
        plot_scenarios(rows, slowing, out / "router-scenarios.png")
    (out / "router-results.json").write_text(
        json.dumps({"rows": rows, "slowing": slowing, "targets": found, "overhead": overhead}, indent=1)
    )
    console.print(
        f"plots and figures: {out}/router-policies.png, {out}/router-scenarios.png, {out}/router-results.json"
    )


if __name__ == "__main__":
    main()
