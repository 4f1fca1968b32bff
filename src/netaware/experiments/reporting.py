"""An experiment's results as files a person reads: results.json (everything, raw latencies included), results.csv
(one row per policy), summary.md (the comparison table, the targets, the placements) and plots (latency CDF,
percentiles per policy, placements by zone, the measured RTT between nodes)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from netaware.experiments.live import LiveChangeResult
from netaware.experiments.running import ExperimentResult, PolicyResult
from netaware.plotting import pyplot

COLUMNS = ("policy", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors", "network ms/req", "cross-zone KB/req", "zones")


def table_rows(result: ExperimentResult) -> list[dict[str, str]]:
    rows = []
    for policy in result.policies:
        load = policy.load
        requests = max(1, int(load.get("requests", 0)))
        rows.append(
            {
                "policy": policy.policy,
                "p50 ms": f"{load['p50Ms']:.1f}",
                "p95 ms": f"{load['p95Ms']:.1f}",
                "p99 ms": f"{load['p99Ms']:.1f}",
                "req/s": f"{load['throughputPerS']:.1f}",
                "errors": f"{load['errors']} ({100 * load['errorRate']:.1f}%)",
                "network ms/req": f"{policy.network_cost_ms:.1f}",
                "cross-zone KB/req": f"{policy.cross_zone_bytes / requests / 1024:.1f}",
                "zones": str(len(set(replica_zones(policy, result.nodes)))),
            }
        )
    return rows


def replica_zones(policy: PolicyResult, zone_of: dict[str, str]) -> list[str]:
    """The zone of each pod (one per replica)."""
    if policy.replica_nodes:
        return [zone_of[node] for nodes in policy.replica_nodes.values() for node in nodes]
    return list(policy.zones.values())


def print_comparison(result: ExperimentResult, console: Console, *, title: str) -> None:
    """The comparison table and the targets' verdicts, as `experiment run` and the demo print them."""
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in table_rows(result):
        table.add_row(*(row[c] for c in COLUMNS))
    console.print(table)
    for target, measured, met in targets(result):
        verdict = "[green]met[/green]" if met else "[yellow]NOT met[/yellow]"
        console.print(f"target {target}: {measured} ({verdict})")


def targets(result: ExperimentResult) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for the issue's targets; None when a policy needed for it did not run."""
    netaware = result.policy("netaware")
    default = result.policy("default")
    optimal = result.policy("optimal")
    checks: list[tuple[str, str, bool | None]] = []
    if netaware and default:
        ratio = netaware.load["p50Ms"] / default.load["p50Ms"]
        checks.append(("netaware p50 <= 0.5 x default p50", f"{ratio:.2f} x", ratio <= 0.5))
    if netaware and optimal:
        ratio = netaware.load["p50Ms"] / optimal.load["p50Ms"]
        checks.append(("netaware p50 <= 1.1 x optimal p50", f"{ratio:.2f} x", ratio <= 1.1))
    prequal = result.policy("netaware+prequal")
    for baseline, name in ((netaware, "kube-proxy's"), (result.policy("netaware+prefer-close"), "PreferClose's")):
        if baseline and prequal:
            for key, percentile in (("p50Ms", "p50"), ("p99Ms", "p99")):
                ratio = prequal.load[key] / baseline.load[key]
                checks.append((f"Prequal routing {percentile} < {name}, on netaware's placement", f"{ratio:.2f} x",
                               ratio < 1.0))  # fmt: skip
    joint = result.policy("netaware-routed+prequal")
    others = [p for p in result.policies if p is not joint]
    if joint and others:
        for key, percentile in (("p50Ms", "p50"), ("p99Ms", "p99")):
            best = min(others, key=lambda p: p.load[key])
            ratio = joint.load[key] / best.load[key]
            checks.append((f"netaware-routed+prequal has the lowest {percentile} of every cell",
                           f"{ratio:.2f} x the next ({best.policy})", ratio < 1.0))  # fmt: skip
    return checks


def write_report(result: ExperimentResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    results_json = out_dir / "results.json"
    results_json.write_text(json.dumps(asdict(result), indent=1))
    written.append(results_json)
    rows = table_rows(result)
    results_csv = out_dir / "results.csv"
    with results_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    written.append(results_csv)
    written += plot(result, out_dir)
    summary = out_dir / "summary.md"
    summary.write_text(markdown(result, rows))
    written.append(summary)
    return written


def markdown(result: ExperimentResult, rows: list[dict[str, str]]) -> str:
    lines = [
        f"# Experiment {result.experiment}: {result.workload} on {result.profile}",
        "",
        f"Started {result.started}; seed {result.seed}; {result.requests} requests at {result.rate_per_s:g}/s per "
        f"policy (open loop), client next to the entry service. Network ms/req: the placement's traffic-weighted "
        f"measured RTT. Cross-zone KB/req: IP bytes the link emulator carried between zones, per request.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    checks = targets(result)
    if checks:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {'yes' if met else 'no'} |" for name, value, met in checks]
    lines += ["", "## Placements", ""]
    services = list(result.policies[0].placement) if result.policies else []
    lines += ["| service | " + " | ".join(p.policy for p in result.policies) + " |"]
    lines += ["|---|" + "---|" * len(result.policies)]
    for service in services:
        cells = [", ".join(f"{node} ({result.nodes.get(node, '-')})"
                           for node in p.replica_nodes.get(service) or [p.placement.get(service, "-")])
                 for p in result.policies]  # fmt: skip
        lines.append(f"| {service} | " + " | ".join(cells) + " |")
    lines += ["", "Plots: latency-cdf.png, latency-percentiles.png, placements.png, measured-rtt.png", ""]
    return "\n".join(lines)


def plot(result: ExperimentResult, out_dir: Path) -> list[Path]:
    plt = pyplot()
    written = []
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for policy in result.policies:
        latencies = np.sort(np.array(policy.latencies_ms))
        if latencies.size:
            axis.plot(latencies, np.arange(1, latencies.size + 1) / latencies.size, label=policy.policy)
    axis.set_xscale("log")
    axis.set_xlabel("end-to-end latency (ms, log scale)")
    axis.set_ylabel("share of requests")
    axis.set_title(f"{result.workload} on {result.profile}: latency CDF")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    written.append(_save(figure, out_dir / "latency-cdf.png"))

    figure, axis = plt.subplots(figsize=(7, 4.5))
    names = [p.policy for p in result.policies]
    positions = np.arange(len(names))
    for offset, (key, label) in enumerate((("p50Ms", "p50"), ("p95Ms", "p95"), ("p99Ms", "p99"))):
        values = [p.load[key] for p in result.policies]
        axis.bar(positions + (offset - 1) * 0.27, values, width=0.27, label=label)
    axis.set_xticks(positions, names)
    axis.set_ylabel("end-to-end latency (ms)")
    axis.set_title(f"{result.workload} on {result.profile}: latency by placement policy")
    axis.legend()
    axis.grid(True, axis="y", alpha=0.3)
    written.append(_save(figure, out_dir / "latency-percentiles.png"))

    zones = sorted(set(result.nodes.values()))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    bottom = np.zeros(len(result.policies))
    for zone in zones:
        counts = np.array([sum(1 for z in replica_zones(p, result.nodes) if z == zone) for p in result.policies],
                          dtype=float)  # fmt: skip
        axis.bar(names, counts, bottom=bottom, label=zone)
        bottom += counts
    axis.set_ylabel("pods")
    axis.set_title("where each policy put the services, by zone")
    axis.legend()
    written.append(_save(figure, out_dir / "placements.png"))

    nodes = list(result.nodes)
    matrix = np.full((len(nodes), len(nodes)), np.nan)
    for link in result.links:
        if link.get("rttMs") is not None:
            matrix[nodes.index(link["origin"]), nodes.index(link["destination"])] = link["rttMs"]
    figure, axis = plt.subplots(figsize=(6, 5))
    image = axis.imshow(matrix, cmap="viridis")
    axis.set_xticks(range(len(nodes)), nodes, rotation=45, ha="right")
    axis.set_yticks(range(len(nodes)), nodes)
    for i in range(len(nodes)):
        for j in range(len(nodes)):
            if not np.isnan(matrix[i, j]):
                axis.text(j, i, f"{matrix[i, j]:.0f}", ha="center", va="center", color="white", fontsize=8)
    figure.colorbar(image, label="RTT ms (measured)")
    axis.set_title("measured RTT between lab nodes")
    written.append(_save(figure, out_dir / "measured-rtt.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def print_live_change(result: LiveChangeResult, console: Console) -> None:
    """The second act's table: what the change was, how long each part took to see it, where new pods went."""
    a, b = result.zones
    table = Table(title=f"live change: {a} <-> {b} one-way delay +{result.added_delay_ms:g} ms, mid-run")
    for column in ("measure", "measured", "target"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    published = result.published_after_s
    table.add_row("(a) published in the NetworkTopology after",
                  "not within 90 s" if published is None else f"{published:.1f} s", "<= 25 s")  # fmt: skip
    reroute = result.reroute
    if reroute is None:
        table.add_row("(b) the router moved the traffic after", f"not measured: {result.not_rerouted}", "<= 5 s")
    else:
        moved = "not within the run" if reroute.moved_after_s is None else f"{reroute.moved_after_s:.1f} s"
        table.add_row(f"(b) a {reroute.front_zone} caller's Prequal moved its calls to {reroute.far_zone} after",
                      moved, "<= 5 s")  # fmt: skip
        table.add_row(f"    {reroute.far_zone}'s share of its calls: 10 s before -> from 5 s after",
                      f"{reroute.far_share_before:.0%} -> {reroute.far_share_after:.0%}", "most after")  # fmt: skip
    table.add_row(f"(c) calls/request over {a} <-> {b}: pods before -> pods created after",
                  f"{result.calls_before:g} -> {result.calls_after:g}", "fewer")  # fmt: skip
    table.add_row("    network ms/request on the changed links: before -> after",
                  f"{result.network_ms_before:.0f} -> {result.network_ms_after:.0f}", "lower")  # fmt: skip
    console.print(table)


def write_live_change(result: LiveChangeResult, out_dir: Path) -> list[Path]:
    """live-change.json and the timeline plot: p50 and p99 per second of send time, the change and its publication
    marked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "live-change.json"
    data.write_text(json.dumps(asdict(result), indent=1))
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5))
    seconds = [point["second"] for point in result.timeline]
    axis.plot(seconds, [point["p50Ms"] for point in result.timeline], label="p50")
    axis.plot(seconds, [point["p99Ms"] for point in result.timeline], label="p99", alpha=0.8)
    axis.axvline(result.changed_at_s, color="red", linestyle="--", label=f"{' <-> '.join(result.zones)} degraded")
    if result.published_after_s is not None:
        axis.axvline(result.changed_at_s + result.published_after_s, color="green", linestyle=":",
                     label=f"published ({result.published_after_s:.0f} s later)")  # fmt: skip
    axis.set_xlabel(f"send time (s), {result.rate_per_s:g} requests/s on netaware's placement")
    axis.set_ylabel("end-to-end latency (ms)")
    axis.set_title("a live link change: latency per second")
    axis.grid(True, alpha=0.3)
    axis.legend()
    return [data, _save(figure, out_dir / "live-change.png")]
