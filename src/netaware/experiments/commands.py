"""`netaware experiment list | run NAME`: default scheduler vs netaware (vs random, vs optimal) on the running lab."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netaware.experiments.reporting import print_comparison, write_report
from netaware.experiments.running import EXPERIMENTS, POLICIES, ExperimentError, ExperimentRunner
from netaware.paths import REPO_ROOT, cluster_kubeconfig, lab_state_dir
from netaware.plotting import exit_unless_plots

experiment_app = typer.Typer(
    help="Deploy a workload graph on the lab under each placement policy, drive load, measure, plot.",
    no_args_is_help=True,
)
console = Console(stderr=True)


@experiment_app.command("list")
def experiment_list() -> None:
    """The experiments and what they run."""
    table = Table()
    for column in ("name", "workload", "profile", "load", "what"):
        table.add_column(column)
    for e in EXPERIMENTS.values():
        table.add_row(e.name, e.workload, e.profile, f"{e.requests} @ {e.rate_per_s:g}/s", e.description)
    Console().print(table)


@experiment_app.command("run")
def experiment_run(
    name: Annotated[str, typer.Argument(help="Experiment name (see `netaware experiment list`)")] = "online-boutique",
    policies: Annotated[
        str, typer.Option(help=f"Comma-separated placement policies: {', '.join(POLICIES)}, netaware-<strategy>")
    ] = ",".join(POLICIES),
    rate: Annotated[float | None, typer.Option(min=0.1, help="Requests per second [the experiment's]")] = None,
    requests: Annotated[int | None, typer.Option(min=10, help="Requests per policy [the experiment's]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random placement")] = 0,
    out: Annotated[Path | None, typer.Option(help="Results folder [experiments/results/NAME-TIME]")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="Control plane kubeconfig [the local cluster's]")] = None,
    lab_state: Annotated[Path | None, typer.Option(help="Lab state folder [env NETAWARE_LAB_STATE_DIR]")] = None,
) -> None:
    """Run one experiment on the running lab and write results.json/csv, summary.md and plots."""
    if name not in EXPERIMENTS:
        console.print(f"[red]error:[/red] unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
        raise typer.Exit(code=2)
    chosen = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in POLICIES and not p.startswith("netaware-")]
    if unknown:
        console.print(
            f"[red]error:[/red] unknown policies {unknown}; known: {', '.join(POLICIES)}, netaware-<strategy>"
        )
        raise typer.Exit(code=2)
    exit_unless_plots(console)
    experiment = EXPERIMENTS[name]
    if rate is not None or requests is not None:
        experiment = replace(
            experiment, rate_per_s=rate or experiment.rate_per_s, requests=requests or experiment.requests
        )
    out_dir = out or REPO_ROOT / "experiments" / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"experiment {name}", total=None)
        runner = ExperimentRunner(
            kubeconfig=kubeconfig or cluster_kubeconfig(),
            lab_state_dir=lab_state or lab_state_dir(),
            seed=seed,
            progress=lambda line: bar.update(task, description=f"{name}: {line}"),
        )
        try:
            result = runner.run(experiment, chosen)
        except ExperimentError as error:
            bar.stop()
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=1) from None
    written = write_report(result, out_dir)
    output = Console()
    title = f"{name}: {result.workload} on {result.profile}, {experiment.requests} requests per policy"
    print_comparison(result, output, title=title)
    output.print(f"results: {out_dir} ({', '.join(p.name for p in written)})")
