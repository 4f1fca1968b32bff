"""`netaware experiment list | run NAME | live NAME`: default scheduler vs netaware (vs random, vs optimal) on the
running lab, and a live link change on netaware's placement (the demo's second act)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netaware.experiments.live import follow_link_change
from netaware.experiments.reporting import print_comparison, print_live_change, write_live_change, write_report
from netaware.experiments.running import EXPERIMENTS, POLICIES, ExperimentError, ExperimentRunner, split_policy
from netaware.paths import REPO_ROOT, cluster_kubeconfig, lab_state_dir
from netaware.plotting import exit_unless_plots
from netaware.workloads.routing import MANIFEST_ROUTINGS

experiment_app = typer.Typer(
    help="Deploy a workload graph on the lab under each placement policy, drive load, measure, plot.",
    no_args_is_help=True,
)
console = Console(stderr=True)


@contextlib.contextmanager
def lab_runner(
    title: str, name: str, kubeconfig: Path | None, lab_state: Path | None, *, seed: int = 0
) -> Iterator[ExperimentRunner]:
    """A runner on the running lab, its progress on a spinner; an ExperimentError ends the command with its reason
    (exit 1)."""
    config = kubeconfig or cluster_kubeconfig()
    if not config.exists():
        console.print(f"[red]error:[/red] no kubeconfig at {config}: start the control plane (netaware cluster up) "
                      "and the lab (netaware lab up) first")  # fmt: skip
        raise typer.Exit(code=1)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(title, total=None)
        runner = ExperimentRunner(
            kubeconfig=config,
            lab_state_dir=lab_state or lab_state_dir(),
            seed=seed,
            progress=lambda line: bar.update(task, description=f"{name}: {line}"),
        )
        try:
            yield runner
        except ExperimentError as error:
            bar.stop()
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=1) from None


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
        str | None,
        typer.Option(
            help=f"Comma-separated policies, each PLACEMENT[+ROUTING]: placements {', '.join(POLICIES)}, "
            f"netaware-<strategy>; routings {', '.join(MANIFEST_ROUTINGS)} (kube-proxy unless named) [the experiment's]"
        ),
    ] = None,
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
    experiment = EXPERIMENTS[name]
    chosen = [p.strip() for p in policies.split(",") if p.strip()] if policies else list(experiment.policies)
    try:
        for policy in chosen:
            split_policy(policy)
    except ExperimentError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=2) from None
    exit_unless_plots(console)
    if rate is not None or requests is not None:
        experiment = replace(
            experiment, rate_per_s=rate or experiment.rate_per_s, requests=requests or experiment.requests
        )
    out_dir = out or REPO_ROOT / "experiments" / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with lab_runner(f"experiment {name}", name, kubeconfig, lab_state, seed=seed) as runner:
        result = runner.run(experiment, chosen)
    written = write_report(result, out_dir)
    output = Console()
    title = f"{name}: {result.workload} on {result.profile}, {experiment.requests} requests per policy"
    print_comparison(result, output, title=title)
    output.print(f"results: {out_dir} ({', '.join(p.name for p in written)})")


@experiment_app.command("live")
def experiment_live(
    name: Annotated[str, typer.Argument(help="Experiment name (see `netaware experiment list`)")] = "online-boutique",
    added_delay_ms: Annotated[
        float, typer.Option(min=1, help="One-way delay added to both directions of the degraded links")
    ] = 40.0,
    rate: Annotated[float, typer.Option(min=0.1, help="Requests per second during the run")] = 10.0,
    seconds: Annotated[float, typer.Option(min=10, help="Length of the run")] = 60.0,
    change_after: Annotated[float, typer.Option(min=1, help="Seconds into the run the links change")] = 15.0,
    out: Annotated[Path | None, typer.Option(help="Results folder [experiments/results/NAME-live-TIME]")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="Control plane kubeconfig [the local cluster's]")] = None,
    lab_state: Annotated[Path | None, typer.Option(help="Lab state folder [env NETAWARE_LAB_STATE_DIR]")] = None,
) -> None:
    """The demo's second act on the running lab: place the graph with netaware, degrade the inter-zone link its
    placement uses most mid-run, and measure when the published topology shows it and where new pods land; writes
    live-change.json and live-change.png."""
    if name not in EXPERIMENTS:
        console.print(f"[red]error:[/red] unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
        raise typer.Exit(code=2)
    if change_after >= seconds:
        console.print(f"[red]error:[/red] --change-after ({change_after:g} s) must fall inside the run ({seconds:g} s)")
        raise typer.Exit(code=2)
    exit_unless_plots(console)
    out_dir = out or REPO_ROOT / "experiments" / "results" / f"{name}-live-{time.strftime('%Y%m%d-%H%M%S')}"
    with lab_runner(f"live change {name}", name, kubeconfig, lab_state) as runner:
        live = follow_link_change(
            runner, EXPERIMENTS[name], added_delay_ms=added_delay_ms, rate_per_s=rate, seconds=seconds,
            change_after_s=change_after,
        )  # fmt: skip
    written = write_live_change(live, out_dir)
    output = Console()
    print_live_change(live, output)
    output.print(f"results: {out_dir} ({', '.join(p.name for p in written)})")
