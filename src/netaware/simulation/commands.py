"""`netaware simulate run | report`: placement quality on synthetic clusters, with the extender's own scoring."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netaware.paths import REPO_ROOT
from netaware.plotting import exit_unless_plots
from netaware.simulation.apps import NAMED, apps_for
from netaware.simulation.clusters import CLUSTERS
from netaware.simulation.report import build_report, instance_rows

simulate_app = typer.Typer(
    help="Simulate pod placement on synthetic clusters (10 to 5,000 nodes) under each policy, with the extender's "
    "own scoring code, against the optimum on small instances.",
    no_args_is_help=True,
)
console = Console(stderr=True)


@simulate_app.command("run")
def simulate_run(
    cluster: Annotated[str, typer.Option(help=f"Cluster kind: {', '.join(CLUSTERS)}")] = "multi-region",
    nodes: Annotated[int, typer.Option(min=2, max=10_000, help="Nodes")] = 50,
    workload: Annotated[str, typer.Option(help=f"Workload: {', '.join([*NAMED, 'random'])}")] = "random",
    pods: Annotated[int, typer.Option(min=1, help="Pods to place (copies of the workload until reached)")] = 60,
    policy: Annotated[
        list[str] | None, typer.Option(help="Policies (repeat): default, random, network-overhead, netaware, optimal")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the cluster, the workload and random choices")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows")] = False,
) -> None:
    """Place one workload on one synthetic cluster under each policy and compare the placements."""
    if cluster not in CLUSTERS:
        console.print(f"[red]error:[/red] unknown cluster {cluster!r}; known: {', '.join(CLUSTERS)}")
        raise typer.Exit(code=2)
    try:
        apps = apps_for(workload, pods=pods, seed=seed)
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    built = CLUSTERS[cluster](nodes, seed)
    started = time.perf_counter()
    rows = instance_rows("run", built, workload, apps, seed, with_optimum="optimal" in (policy or []))
    if policy:
        rows = [r for r in rows if r.policy in policy]
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=1))
        return
    table = Table(title=f"{workload} ({sum(a.pods for a in apps)} pods) on {cluster} x{nodes}, seed {seed}")
    for column in ("policy", "network cost", "latency ms", "violations", "max CPU", "ms/pod"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in rows:
        table.add_row(r.policy, f"{r.network_cost:.2f}", f"{r.latency_ms:.1f}", str(r.violations),
                      f"{100 * r.max_utilisation:.0f}%", f"{r.ms_per_pod:.2f}")  # fmt: skip
    Console().print(table)
    console.print(f"took {time.perf_counter() - started:.1f} s")


@simulate_app.command("report")
def simulate_report(
    out: Annotated[Path, typer.Option(help="Folder for simulation.csv, summary.md and plots")] = REPO_ROOT
    / "experiments/results/simulation",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per small-instance setting")] = 4,
    sizes: Annotated[str, typer.Option(help="Comma-separated cluster sizes of the scale tier")] = "50,200,1000",
) -> None:
    """Every policy on small instances (with the optimum) and on growing clusters; CSV, Markdown, plots."""
    exit_unless_plots(console)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("simulating", total=None)
        build_report(
            out,
            seeds=seeds,
            sizes=[int(s) for s in sizes.split(",") if s.strip()],
            progress=lambda line: bar.update(task, description=line),
        )
    typer.echo((out / "summary.md").read_text())


@simulate_app.command("telemetry")
def simulate_telemetry(
    nodes: Annotated[int, typer.Option(min=20, max=20_000, help="Nodes of the ground-truth network")] = 1000,
    rounds: Annotated[int, typer.Option(min=2, help="10-s probe rounds")] = 16,
    change_round: Annotated[int, typer.Option(help="Round at which a zone pair's RTT changes 1.5x (-1: none)")] = 12,
    probes_per_second: Annotated[float, typer.Option(min=0.1, help="Each node's ICMP probe budget")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the network and the probes' noise")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for telemetry-N.csv and telemetry-N.png")] = REPO_ROOT
    / "experiments/results/telemetry",
) -> None:
    """Probe a simulated network under the per-node budget, fold the reports in with the aggregator's code, and hold
    every estimated pair against the truth: three estimators side by side, round by round, then the targets."""
    from netaware.simulation import telemetry

    exit_unless_plots(console)
    change = change_round if 0 <= change_round < rounds else None
    started = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"{nodes} nodes: round 0 of {rounds}", total=rounds)

        def advance(figure: telemetry.RoundFigures) -> None:
            bar.update(task, advance=1, description=f"{nodes} nodes: round {figure.round_index + 1} of {rounds}")

        simulation, figures = telemetry.simulate(nodes, rounds=rounds, seed=seed, change_round=change,
                                                 probes_per_second=probes_per_second, progress=advance)  # fmt: skip
    table = Table(title=f"telemetry on {nodes} nodes, {len(simulation.truth.zone_names)} zones: estimated pairs")
    table.add_column("t (s)", justify="right")
    for name in telemetry.ESTIMATORS:
        table.add_column(f"{name}\nbetween zones", justify="right")
        table.add_column(f"{name}\ninside (ms)", justify="right")
    table.add_column("changed pair\n" + telemetry.AGGREGATOR_ESTIMATOR, justify="right")
    for figure in figures:
        cells = [f"{figure.at_s:.0f}" + (" *" if figure.round_index == change else "")]
        for name in telemetry.ESTIMATORS:
            estimate = figure.estimates[name]
            cells += [f"{100 * estimate.inter_zone_median_relative_error:.2f}%",
                      f"{estimate.intra_zone_median_abs_error_ms:.3f}"]  # fmt: skip
        changed = figure.estimates[telemetry.AGGREGATOR_ESTIMATOR].changed_pair_median_relative_error
        cells.append("" if changed != changed else f"{100 * changed:.1f}%")
        table.add_row(*cells)
    Console().print(table)
    for verdict in telemetry.verdicts(simulation, figures, change):
        mark = "[green]met[/green]" if verdict.met else "[red]NOT met[/red]"
        Console().print(f"  {verdict.what}: {verdict.figure} {mark}")
    out.mkdir(parents=True, exist_ok=True)
    rows = telemetry.figures_rows(figures)
    with (out / f"telemetry-{nodes}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = f"{nodes} nodes, {probes_per_second:g} probe/s per node (dotted: a zone pair's RTT 1.5x)"
    telemetry.plot(figures, out / f"telemetry-{nodes}.png", change_round=change, title=title)
    console.print(f"took {time.perf_counter() - started:.1f} s; wrote {out}/telemetry-{nodes}.csv and .png")
