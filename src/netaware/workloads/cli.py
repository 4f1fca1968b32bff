"""`netaware workload list | render`: the service graphs and their manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from netaware.paths import REPO_ROOT
from netaware.workloads.graphs import GRAPHS, graph_named
from netaware.workloads.manifests import render, rendered_yaml

workload_app = typer.Typer(
    help="Service graphs built from the dummy service, as Kubernetes manifests.", no_args_is_help=True
)


@workload_app.command("list")
def workload_list() -> None:
    """The graphs: services, call edges, calls per request."""
    table = Table()
    for column in ("name", "entry", "services", "edges", "calls/request", "what"):
        table.add_column(column)
    for graph in GRAPHS.values():
        calls = graph.calls_per_request()
        table.add_row(graph.name, graph.entry, str(len(graph.services)), str(len(calls)), str(sum(calls.values())),
                      graph.description)  # fmt: skip
    Console().print(table)


@workload_app.command("render")
def workload_render(
    name: Annotated[str | None, typer.Argument(help="Graph name (see `netaware workload list`)")] = None,
    namespace: Annotated[str, typer.Option(help="Namespace of every object")] = "default",
    scheduler: Annotated[str, typer.Option(help="netaware or default")] = "netaware",
    all_graphs: Annotated[bool, typer.Option("--all", help="Write workloads/<name>.yaml for every graph")] = False,
    out_dir: Annotated[Path, typer.Option(help="Folder for --all")] = REPO_ROOT / "workloads",
) -> None:
    """Print a graph's Deployments, Services and AppGroup as YAML (or write every graph's with --all)."""
    if all_graphs:
        for graph in GRAPHS.values():
            (out_dir / f"{graph.name}.yaml").write_text(rendered_yaml(graph))
            typer.echo(f"wrote {out_dir / f'{graph.name}.yaml'}")
        return
    if name is None:
        typer.echo("error: name a graph or pass --all", err=True)
        raise typer.Exit(code=2)
    try:
        documents = render(graph_named(name), namespace=namespace, scheduler=scheduler)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)
