"""The `netaware` command line: explain scores now; cluster, lab and experiments as they land."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from netaware.controlplane.commands import cluster_app
from netaware.core.appgroup import AppGroup, AppGroupError, CostWeights
from netaware.core.costs import build_link_costs
from netaware.core.nodeselection import HOSTNAME_LABEL, ZONE_LABEL, NodeSelectionError, pod_fits_node
from netaware.core.planning import (
    EdgeTime,
    InfeasibleError,
    Objective,
    PlanningProblem,
    parse_nodes_csv,
    placement_network_ms,
    plan,
)
from netaware.core.scoring import DEFAULT_STRATEGY, STRATEGIES, NodeScore, UnknownStrategyError, score_nodes
from netaware.core.topology import TopologyError, parse_links_csv
from netaware.demo import demo
from netaware.experiments.commands import experiment_app
from netaware.images.commands import images_app
from netaware.kube.converters import ConversionError, appgroup_from_resource, workload_pods
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


def _score_json(scores: list[NodeScore], network_ms: Mapping[str, float]) -> dict[str, Any]:
    return {
        "nodes": {
            s.node: {
                "dependencyCost": s.dependency_cost,
                "dependantCost": s.dependant_cost,
                "totalCost": s.total_cost,
                "score": s.score,
                "extenderScore": s.extender_score,
                "predictedNetworkMs": network_ms[s.node],
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
        # The planner's measure beside the seed's numbers: network ms per request with the pod on each node (calls
        # to workloads not placed yet count 0).
        dense = topology.dense()
        network_ms = {
            s.node: placement_network_ms(group, dense, {**placed, workload: [*placed.get(workload, []), s.node]})
            for s in scores
        }
    except (InputError, TopologyError, ConversionError, AppGroupError, UnknownStrategyError) as error:
        fail(str(error))
        return
    if as_json:
        typer.echo(json.dumps(_score_json(scores, network_ms), indent=2))
        return
    table = Table(title=f"netaware score: next pod of {workload!r} ({group.namespace}/{group.name})")
    for column in (
        "node",
        "dependency cost",
        "dependant cost",
        "total cost",
        "score",
        "extender",
        "network ms",
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
            f"{network_ms[s.node]:.2f}",
            s.filtered or "",
        )
    Console().print(table)


def _load_documents(path: Path) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(_read(path, "manifests")) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"manifests {path}: malformed YAML{where}") from None


def planning_problem_from_files(
    manifests: Path, links: Path, nodes: Path, objective: Objective
) -> tuple[AppGroup, PlanningProblem]:
    """The AppGroup in MANIFESTS with its controllers' replicas and requests, on the nodes and links of the CSVs."""
    documents = _load_documents(manifests)
    groups = [d for d in documents if isinstance(d, dict) and d.get("kind") == "AppGroup"]
    if len(groups) != 1:
        raise InputError(f"manifests {manifests}: expected one AppGroup, found {len(groups)}")
    group = appgroup_from_resource(groups[0])
    pods = workload_pods(documents, group)
    try:
        rows = parse_nodes_csv(_read(nodes, "nodes"))
    except ValueError as error:
        raise InputError(f"nodes {nodes}: {error}") from None
    topology = parse_links_csv(_read(links, "links"))
    names = [row.name for row in rows]
    unknown = sorted(set(topology.nodes) - set(names))
    if unknown:
        raise InputError(f"links {links} name nodes that {nodes} does not list: {', '.join(unknown)}")
    labels = {row.name: {HOSTNAME_LABEL: row.name, **({ZONE_LABEL: row.zone} if row.zone else {})} for row in rows}
    try:
        allowed = {
            workload: frozenset(n for n in names if pod_fits_node(found.pod_spec, n, labels[n]))
            for workload, found in pods.items()
        }
    except NodeSelectionError as error:
        raise InputError(f"manifests {manifests}: {error}") from None
    problem = PlanningProblem.from_appgroup(
        group,
        replicas={w: found.replicas for w, found in pods.items()},
        cpu_m={w: found.cpu_m for w, found in pods.items()},
        nodes=names,
        free_cpu_m=[row.free_cpu_m for row in rows],
        topology=topology.dense(),
        allowed={w: nodes_ for w, nodes_ in allowed.items() if len(nodes_) < len(names)},
        objective=objective,
    )
    return group, problem


def _edge_json(edge: EdgeTime) -> dict[str, Any]:
    return {"caller": edge.caller, "callee": edge.callee, "calls": edge.calls, "msPerCall": round(edge.ms_per_call, 3),
            "ms": round(edge.ms, 3)}  # fmt: skip


@app.command("plan")
def plan_command(
    manifests: Annotated[Path, typer.Option(help="YAML: the app's Deployments (or StatefulSets) and its AppGroup")],
    links: Annotated[Path, typer.Option(help="CSV: origin,destination,rtt_ms,bandwidth_mbps,loss_ratio")],
    nodes: Annotated[Path, typer.Option(help="CSV: name,zone,cpu_millicores (free CPU per node)")],
    time_limit_s: Annotated[
        float, typer.Option("--time-limit-s", min=0.1, help="Stop searching after this long; the best plan so far")
    ] = 10.0,
    objective: Annotated[
        Objective, typer.Option(help="latency: predicted ms per request; seed: the mission's cost function")
    ] = Objective.LATENCY,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
) -> None:
    """Plan the whole AppGroup at once: every replica's node, the predicted network ms of one request, per edge."""
    try:
        group, problem = planning_problem_from_files(manifests, links, nodes, objective)
        result = plan(problem, time_limit_s=time_limit_s)
    except (InputError, TopologyError, ConversionError, AppGroupError, InfeasibleError) as error:
        fail(str(error))
        return
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "placements": result.placements,
                    "predictedNetworkMs": round(result.predicted_ms, 3),
                    "optimal": result.optimal,
                    "method": result.method,
                    "edges": [_edge_json(e) for e in result.edges],
                },
                indent=2,
            )
        )
        return
    console = Console()
    placed = Table(title=f"netaware plan: {group.namespace}/{group.name} ({objective.value})")
    placed.add_column("workload")
    placed.add_column("replicas", justify="right")
    placed.add_column("nodes")
    for workload, nodes_ in result.placements.items():
        placed.add_row(workload, str(len(nodes_)), ", ".join(nodes_))
    console.print(placed)
    edges = Table(title="predicted network time per request, by call edge")
    for column in ("caller -> callee", "calls", "ms per call", "ms", "share"):
        edges.add_column(column, justify="left" if column == "caller -> callee" else "right")
    for edge in sorted(result.edges, key=lambda e: e.ms, reverse=True):
        share = edge.ms / result.predicted_ms if result.predicted_ms > 0 else 0.0
        edges.add_row(f"{edge.caller} -> {edge.callee}", f"{edge.calls:g}", f"{edge.ms_per_call:.2f}",
                      f"{edge.ms:.2f}", f"{100 * share:.0f}%")  # fmt: skip
    console.print(edges)
    proof = "optimal (integer program)" if result.optimal else f"best found by {result.method}, not proven optimal"
    console.print(f"predicted network time: {result.predicted_ms:.2f} ms per request; {proof}; {result.seconds:.2f} s")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
