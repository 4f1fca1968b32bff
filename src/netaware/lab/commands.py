"""`netaware lab up | down | status`: lab nodes as network namespaces with shaped links, registered in the local
control plane, running their pods as real processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netaware.lab.daemon import LabConfig
from netaware.lab.running import LabError, down, status, up
from netaware.paths import cluster_kubeconfig, lab_state_dir, port_base, profile_path

lab_app = typer.Typer(
    help="The local lab: nodes as network namespaces joined by shaped links (a link profile), registered as Nodes "
    "in the local control plane, running the pods bound to them as real processes. Needs root.",
    no_args_is_help=True,
)
console = Console(stderr=True)

PHASES = {
    "starting": "starting the lab daemon",
    "links": "creating node namespaces and shaped links",
    "nodes": "starting the nodes (kubelet, containerd, kube-proxy) or registering them",
    "measuring": "measuring every link (ICMP, iperf3)",
    "ready": "ready",
}

RUNTIME_NAMES = {
    "kubelet": "real (kubelet, containerd, runc, CNI, kube-proxy; CoreDNS)",
    "process": "the lab's own pod runner (--runtime process)",
}

StateDir = Annotated[Path | None, typer.Option(help="Lab state folder [env NETAWARE_LAB_STATE_DIR]")]
Kubeconfig = Annotated[
    Path | None, typer.Option(help="Control plane kubeconfig [default: the local cluster's admin.kubeconfig]")
]


def print_status(result: dict[str, Any]) -> None:
    if not result.get("running"):
        typer.echo(f"the lab is not running (state: {result.get('stateDir')})")
        return
    console_out = Console()
    console_out.print(
        f"lab [bold]{result.get('profile')}[/bold], pid {result.get('pid')}, phase {result.get('phase')}; "
        f"nodes: {RUNTIME_NAMES.get(result.get('runtime', ''), result.get('runtime'))}; links: {result.get('emulator')}"
    )
    nodes = Table(title="lab nodes")
    for column in ("node", "zone", "address", "namespace", "pods", "kubelet/containerd/kube-proxy"):
        nodes.add_column(column)
    node_processes = result.get("nodeProcesses", {})
    pods_by_node: dict[str, int] = {}
    for pod in result.get("pods", []):
        pods_by_node[pod["node"]] = pods_by_node.get(pod["node"], 0) + 1
    for name, node in result.get("nodes", {}).items():
        running = node_processes.get(name, {})
        states = "/".join(
            "up" if running.get(k, {}).get("running") else "down" for k in ("kubelet", "containerd", "kube-proxy")
        )
        nodes.add_row(
            name, node["zone"], node["address"], node["namespace"], str(pods_by_node.get(name, 0)),
            states if running else "-",
        )  # fmt: skip
    console_out.print(nodes)
    measured = [link for link in result.get("links", []) if link.get("rttMs") is not None]
    if measured:
        zones = {name: node["zone"] for name, node in result.get("nodes", {}).items()}
        by_zone: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for link in measured:
            by_zone.setdefault((zones[link["origin"]], zones[link["destination"]]), []).append(link)
        links = Table(title="measured links by zone pair (median of node pairs)")
        for column in ("from", "to", "RTT ms", "Mbit/s", "loss %"):
            links.add_column(column, justify="right")
        for (origin, destination), entries in sorted(by_zone.items()):
            rtts = sorted(e["rttMs"] for e in entries)
            rates = sorted(e["bandwidthMbps"] for e in entries if e.get("bandwidthMbps") is not None)
            losses = sorted(e["lossRatio"] for e in entries)
            links.add_row(
                origin,
                destination,
                f"{rtts[len(rtts) // 2]:.1f}",
                f"{rates[len(rates) // 2]:.0f}" if rates else "-",
                f"{100 * losses[len(losses) // 2]:.1f}",
            )
        console_out.print(links)


@lab_app.command("up")
def lab_up(
    profile: Annotated[str, typer.Option(help="Link profile: a name in tc-scripts/profiles/ or a YAML path")] = (
        "three-zones"
    ),
    nodes: Annotated[
        int | None, typer.Option(min=1, max=200, help="Node count spread over the profile's zones [the profile's own]")
    ] = None,
    node_cpu: Annotated[str, typer.Option(help="CPU capacity of each lab node")] = "2",
    bandwidth_seconds: Annotated[
        float, typer.Option(min=0, help="iperf3 run per link when measuring (0: RTT and loss only)")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the emulated loss and jitter")] = 0,
    telemetry: Annotated[
        bool,
        typer.Option(
            help="Real nodes: run the probe agents and the aggregator (publishing continuously); "
            "--no-telemetry measures the links once at start"
        ),
    ] = True,
    runtime: Annotated[
        str,
        typer.Option(
            help="kubelet: real nodes (kubelet, containerd, runc, CNI, kube-proxy; needs `make images`); "
            "process: the lab's own pod runner (pods' commands as processes), for machines without containerd"
        ),
    ] = "kubelet",
    state_dir: StateDir = None,
    kubeconfig: Kubeconfig = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON")] = False,
) -> None:
    """Create the lab nodes and links, register the nodes, measure the links into NetworkTopology resources."""
    config = LabConfig(
        profile=profile_path(profile),
        state_dir=state_dir or lab_state_dir(),
        kubeconfig=kubeconfig or cluster_kubeconfig(),
        nodes=nodes,
        port=port_base() + 990,
        seed=seed,
        node_cpu=node_cpu,
        bandwidth_seconds=bandwidth_seconds,
        telemetry=telemetry,
        runtime=runtime,
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("lab: starting", total=None)
        try:
            result = up(config, lambda phase: bar.update(task, description=f"lab: {PHASES.get(phase, phase)}"))
        except LabError as error:
            bar.stop()
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_status(result)


@lab_app.command("down")
def lab_down(state_dir: StateDir = None, kubeconfig: Kubeconfig = None) -> None:
    """Stop the lab: its pods' processes, namespaces, links and Nodes (also after a crash or Ctrl-C)."""
    removed = down(state_dir or lab_state_dir(), kubeconfig)
    typer.echo(f"removed: {len(removed)} ({', '.join(removed[:6])}{', ...' if len(removed) > 6 else ''})")


@lab_app.command("status")
def lab_status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: nodes, pods, links with bytes and RTT")] = False,
) -> None:
    """Nodes, pods and measured links of the running lab."""
    result = status(state_dir or lab_state_dir())
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_status(result)
    if not result.get("running"):
        raise typer.Exit(code=1)
