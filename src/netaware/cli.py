"""The `netaware` command line: explain scores now; cluster, lab and experiments as they land."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from netaware.controlplane.commands import cluster_app
from netaware.core.appgroup import AppGroupError, CostWeights
from netaware.core.costs import build_link_costs
from netaware.core.scoring import DEFAULT_STRATEGY, STRATEGIES, NodeScore, UnknownStrategyError, score_nodes
from netaware.core.topology import TopologyError, parse_links_csv
from netaware.demo import demo
from netaware.experiments.commands import experiment_app
from netaware.images.commands import images_app
from netaware.kube.converters import ConversionError, appgroup_from_resource
from netaware.lab.commands import lab_app
from netaware.simulation.commands import simulate_app
from netaware.tc.commands import tc_app
from netaware.workloads.cli import workload_app

app = typer.Typer(
    help="netaware: network-aware scheduling and latency-aware routing for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


app.add_typer(cluster_app, name="cluster")
app.add_typer(lab_app, name="lab")
app.add_typer(experiment_app, name="experiment")
app.add_typer(tc_app, name="tc")
app.add_typer(simulate_app, name="simulate")
app.add_typer(workload_app, name="workload")
app.add_typer(images_app, name="images")
app.command("demo")(demo)


@app.callback()
def netaware() -> None:
    """netaware: network-aware scheduling and latency-aware routing for Kubernetes."""


class InputError(Exception):
    """Bad user input: reported as one line, exit code 2."""


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise InputError(f"{what} {path}: cannot read ({error.__class__.__name__})") from None


def _load_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(_read(path, what))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{what} {path}: malformed YAML{where}") from None


def load_placements(path: Path) -> dict[str, list[str]]:
    data = _load_yaml(path, "placements")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"placements {path}: expected a mapping of workload name to a list of node names")
    placements: dict[str, list[str]] = {}
    for workload, nodes in data.items():
        if nodes is None:
            nodes = []
        if not isinstance(nodes, list) or not all(isinstance(n, str) and n for n in nodes):
            raise InputError(f"placements {path}: {workload!r} must map to a list of node names")
        placements[str(workload)] = nodes
    return placements


def parse_weights(text: str) -> CostWeights:
    parts = text.split(",")
    if len(parts) != 3:
        raise InputError(f"--weights must be three numbers L,B,P (each 0..1), got {text!r}")
    try:
        latency, bandwidth, loss = (float(p) for p in parts)
        return CostWeights(latency=latency, bandwidth=bandwidth, loss=loss)
    except ValueError as error:
        raise InputError(f"--weights {text!r}: {error}") from None


def _score_json(scores: list[NodeScore]) -> dict[str, Any]:
    return {
        "nodes": {
            s.node: {
                "dependencyCost": s.dependency_cost,
                "dependantCost": s.dependant_cost,
                "totalCost": s.total_cost,
                "score": s.score,
                "extenderScore": s.extender_score,
                "filtered": s.filtered,
            }
            for s in scores
        }
    }


@app.command()
def score(
    links: Annotated[Path, typer.Option(help="CSV: origin,destination,rtt_ms,bandwidth_mbps,loss_ratio")],
    appgroup: Annotated[Path, typer.Option(help="AppGroup custom resource (YAML)")],
    placements: Annotated[Path, typer.Option(help="YAML: workload name -> list of nodes of its replicas")],
    workload: Annotated[str, typer.Option(help="The workload whose next pod is being placed")],
    strategy: Annotated[
        str, typer.Option(help=f"Scoring strategy ({', '.join(sorted(STRATEGIES))})")
    ] = DEFAULT_STRATEGY,
    weights: Annotated[
        str | None, typer.Option(help="Cost weights L,B,P (latency, bandwidth, loss; each 0..1)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Explain a placement decision: score every node in LINKS for the next pod of WORKLOAD, best first."""
    try:
        topology = parse_links_csv(_read(links, "links"))
        group = appgroup_from_resource(_load_yaml(appgroup, "appgroup"))
        placed = load_placements(placements)
        group.workload(workload)  # unknown workload -> AppGroupError
        unknown = sorted(set(placed) - set(group.workload_names))
        if unknown:
            raise InputError(f"placements name workloads the AppGroup does not have: {', '.join(unknown)}")
        chosen = parse_weights(weights) if weights else (group.weights or CostWeights())
        link_costs = build_link_costs(topology.dense(), chosen)
        scores = score_nodes(
            link_costs=link_costs,
            appgroup=group,
            workload=workload,
            placements=placed,
            candidates=list(topology.nodes),
            strategy=group.strategy if (group.strategy and strategy == DEFAULT_STRATEGY) else strategy,
        )
    except (InputError, TopologyError, ConversionError, AppGroupError, UnknownStrategyError) as error:
        fail(str(error))
        return
    if as_json:
        typer.echo(json.dumps(_score_json(scores), indent=2))
        return
    table = Table(title=f"netaware score: next pod of {workload!r} ({group.namespace}/{group.name})")
    for column in (
        "node",
        "dependency cost",
        "dependant cost",
        "total cost",
        "score",
        "extender",
        "filtered",
    ):
        table.add_column(column, justify="left" if column in ("node", "filtered") else "right")
    for s in scores:
        table.add_row(
            s.node,
            f"{s.dependency_cost:.4f}",
            f"{s.dependant_cost:.4f}",
            f"{s.total_cost:.4f}",
            f"{s.score:.2f}",
            str(s.extender_score),
            s.filtered or "",
        )
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
