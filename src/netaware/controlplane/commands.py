"""`netaware cluster up | down | status`: the local control plane from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from netaware.controlplane.running import ClusterError, down, status, up
from netaware.controlplane.settings import ClusterSettings

cluster_app = typer.Typer(
    help="A real local control plane (etcd, kube-apiserver, kube-controller-manager, the default and the "
    "netaware kube-scheduler, kwok, the extender) built from Go modules and run on 127.0.0.1.",
    no_args_is_help=True,
)
console = Console(stderr=True)

StateDir = Annotated[Path | None, typer.Option(help="State folder (PKI, kubeconfig, logs) [env NETAWARE_STATE_DIR]")]


def _settings(state_dir: Path | None, **overrides: object) -> ClusterSettings:
    settings = ClusterSettings(**overrides)  # type: ignore[arg-type]
    if state_dir is not None:
        settings = ClusterSettings(**{**settings.__dict__, "state_dir": state_dir})
    return settings


def _print_status(result: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"netaware local cluster ({result.get('stateDir')})")
    for column in ("component", "pid", "endpoint", "state"):
        table.add_column(column)
    for component in result.get("components", []):  # type: ignore[attr-defined]
        table.add_row(component["name"], str(component["pid"]), component["endpoint"], component["state"])
    Console().print(table)
    if result.get("kubeconfig"):
        typer.echo(f"kubeconfig: {result['kubeconfig']}")
        typer.echo(f"extender:   {result['extenderUrl']}  (schedulerName: {result['schedulerName']})")


@cluster_app.command("up")
def cluster_up(
    fake_nodes: Annotated[int, typer.Option(min=0, help="kwok nodes to create, spread over zone-a/b/c")] = 0,
    extender_ignorable: Annotated[
        bool, typer.Option(help="Let the netaware scheduler schedule without the extender when it fails")
    ] = False,
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON")] = False,
) -> None:
    """Start the local control plane and wait until every component is ready (cleans up a crashed run first)."""
    settings = _settings(state_dir, fake_nodes=fake_nodes, extender_ignorable=extender_ignorable)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(component: str, state: str) -> None:
            if component not in tasks:
                tasks[component] = progress.add_task(f"{component}: {state}", total=1)
            else:
                progress.update(tasks[component], description=f"{component}: {state}")
            if state == "ready":
                progress.update(tasks[component], completed=1)

        try:
            result = up(settings, report)
        except ClusterError as error:
            progress.stop()
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=1) from None
    _print_status(result, as_json)


@cluster_app.command("down")
def cluster_down(state_dir: StateDir = None) -> None:
    """Stop exactly the processes `up` started and remove the state folder."""
    stopped = down(_settings(state_dir))
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@cluster_app.command("status")
def cluster_status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: components, pids, endpoints, states")] = False,
) -> None:
    """Show each component's pid, endpoint and state, the kubeconfig and the extender's URL."""
    result = status(_settings(state_dir))
    _print_status(result, as_json)
    if not result["running"]:
        raise typer.Exit(code=1)
