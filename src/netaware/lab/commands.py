"""`netaware lab up | down | status | shape`: lab nodes as network namespaces with shaped links, registered in the local
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
from netaware.lab.running import LabError, down, shape, status, up
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
    "telemetry": "installing the probe agents and the aggregator; waiting until every link is published",
    "measuring": "measuring every link once (ICMP, iperf3)",
    "prometheus": "starting Prometheus (scrapes every netaware pod, the workloads and the schedulers)",
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
    if result.get("prometheus"):
        console_out.print(f"Prometheus: {result['prometheus']} (monitoring/grafana-dashboard.json reads it)")
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
    console_out.print(links_table(result))


def median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


def figure(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def links_table(result: dict[str, Any]) -> Table:
    """Per zone pair, the shape in force (RTT as both directions' delays) beside what was measured (median of the
    node pairs; `-` where nothing was)."""
    zones = {name: node["zone"] for name, node in result.get("nodes", {}).items()}
    shapes = {(link["origin"], link["destination"]): link.get("shape") or {} for link in result.get("links", [])}
    by_zone: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for link in result.get("links", []):
        by_zone.setdefault((zones[link["origin"]], zones[link["destination"]]), []).append(link)
    table = Table(title="links by zone pair: the shape in force | as measured (median of node pairs)")
    for column in ("from", "to", "shaped RTT ms", "shaped Mbit/s", "shaped loss %", "RTT ms", "Mbit/s", "loss %"):
        table.add_column(column, justify="right")
    for (origin, destination), entries in sorted(by_zone.items()):
        shaped_rtts, shaped_rates, shaped_losses = [], [], []
        for entry in entries:
            there = shapes[(entry["origin"], entry["destination"])]
            back = shapes.get((entry["destination"], entry["origin"]), {})
            shaped_rtts.append(there.get("delayMs", 0.0) + back.get("delayMs", 0.0))
            if there.get("rateMbps") is not None:
                shaped_rates.append(there["rateMbps"])
            shaped_losses.append(100 * there.get("lossRatio", 0.0))
        measured_loss = median([100 * e["lossRatio"] for e in entries if e.get("lossRatio") is not None])
        table.add_row(
            origin, destination,
            figure(median(shaped_rtts), ".1f"), figure(median(shaped_rates), ".0f"),
            figure(median(shaped_losses), ".1f"),
            figure(median([e["rttMs"] for e in entries if e.get("rttMs") is not None]), ".1f"),
            figure(median([e["bandwidthMbps"] for e in entries if e.get("bandwidthMbps") is not None]), ".0f"),
            figure(measured_loss, ".1f"),
        )  # fmt: skip
    return table


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
        float, typer.Option(min=0, help="iperf3 test length (one per node every 30 s; 0: RTT and loss only)")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the emulated loss and jitter")] = 0,
    telemetry: Annotated[
        bool,
        typer.Option(
            help="Real nodes: run the probe agents and the aggregator (publishing continuously); "
            "--no-telemetry measures the links once at start"
        ),
    ] = True,
    prometheus: Annotated[
        bool,
        typer.Option(
            help="Real nodes: run Prometheus on the lab's port + 1, scraping the netaware pods, the workloads and "
            "the schedulers (monitoring/prometheus.yaml)"
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
    """Create the lab's nodes and shaped links, start the nodes, install the telemetry (probe agents, aggregator),
    ready once every link is published as NetworkTopology."""
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
        prometheus=prometheus,
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


@lab_app.command("shape")
def lab_shape(
    from_zone: Annotated[str | None, typer.Option(help="Change the links from this zone (with --to-zone)")] = None,
    to_zone: Annotated[str | None, typer.Option(help="... to this zone (one zone twice: the links inside it)")] = None,
    from_node: Annotated[str | None, typer.Option(help="Or one node pair: from this node (with --to-node)")] = None,
    to_node: Annotated[str | None, typer.Option(help="... to this node")] = None,
    delay_ms: Annotated[float | None, typer.Option(min=0, help="One-way delay, as in profiles")] = None,
    jitter_ms: Annotated[float | None, typer.Option(min=0, help="Delay standard deviation")] = None,
    loss: Annotated[float | None, typer.Option(min=0, max=1, help="Loss ratio: 0.01 drops 1% of packets")] = None,
    rate_mbps: Annotated[float | None, typer.Option(min=0.001, help="Rate limit, Mbit/s")] = None,
    one_way: Annotated[bool, typer.Option(help="Change only the given direction [both, as a profile's zonePairs]")] = (
        False
    ),
    state_dir: StateDir = None,
) -> None:
    """Change running links' shape now (delay, jitter, loss, rate), without restarting the lab; fields not given keep
    their value. `lab status` shows the shape in force."""
    names = {"fromZone": from_zone, "toZone": to_zone, "fromNode": from_node, "toNode": to_node}
    figures = {"delayMs": delay_ms, "jitterMs": jitter_ms, "lossRatio": loss, "rateMbps": rate_mbps}
    change: dict[str, Any] = {key: value for key, value in (names | figures).items() if value is not None}
    change["oneWay"] = one_way
    try:
        changed = shape(state_dir or lab_state_dir(), change)
    except LabError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=1) from None
    table = Table(title=f"{len(changed)} directed links reshaped")
    for column in ("from", "to", "delay ms", "jitter ms", "loss %", "Mbit/s"):
        table.add_column(column, justify="right")
    for link in changed:
        table.add_row(
            link["origin"], link["destination"], f"{link['delayMs']:g}", f"{link['jitterMs']:g}",
            f"{100 * link['lossRatio']:g}", "-" if link["rateMbps"] is None else f"{link['rateMbps']:g}",
        )  # fmt: skip
    Console().print(table)
