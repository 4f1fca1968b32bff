"""`netaware demo` (what `make demo` runs): the whole story on one machine. Start a local control plane and a lab on
the `three-zones` profile (real nodes, netaware's telemetry installed from its own manifests), run the standard
experiment (Online Boutique under the default scheduler, netaware, a random and the optimal placement), then the
routing experiment (two replicas per service spread over zones, on netaware's placement: kube-proxy's random replica
vs each caller's Prequal router), then a live link change on netaware's placement (experiments/live.py), print all
three, write the plots (one folder per act), tear everything down.

It uses state folders and ports of its own (`~/.local/state/netaware/demo`, ports from 17000), so it never touches
a cluster or lab you started yourself.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from netaware.controlplane.running import ClusterError
from netaware.controlplane.running import down as cluster_down
from netaware.controlplane.running import up as cluster_up
from netaware.controlplane.settings import ClusterSettings
from netaware.experiments.live import follow_link_change
from netaware.experiments.reporting import print_comparison, print_live_change, write_live_change, write_report
from netaware.experiments.running import EXPERIMENTS, POLICIES, ExperimentError, ExperimentRunner
from netaware.lab.daemon import LabConfig
from netaware.lab.running import LabError
from netaware.lab.running import down as lab_down
from netaware.lab.running import up as lab_up
from netaware.paths import REPO_ROOT, profile_path
from netaware.plotting import exit_unless_plots

DEMO_PORT_BASE = 17000
console = Console(stderr=True)


def demo(
    state_dir: Annotated[Path, typer.Option(help="State folder of the demo's cluster and lab")] = Path.home()
    / ".local/state/netaware/demo",
    out: Annotated[Path | None, typer.Option(help="Results folder [experiments/results/demo-TIME]")] = None,
    requests: Annotated[
        int | None, typer.Option(min=10, help="Requests per policy in each experiment [the experiments' 400]")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Leave the cluster and lab running afterwards")] = False,
) -> None:
    """Control plane + lab + the standard experiment (Online Boutique on three-zones), then tear down."""
    exit_unless_plots(console)
    started = time.monotonic()
    experiment, routing = EXPERIMENTS["online-boutique"], EXPERIMENTS["routing"]
    if requests:
        experiment, routing = replace(experiment, requests=requests), replace(routing, requests=requests)
    cluster = ClusterSettings(state_dir=state_dir / "cluster", port_base=DEMO_PORT_BASE)
    kubeconfig = cluster.state_dir / "admin.kubeconfig"
    lab = LabConfig(
        profile=profile_path(experiment.profile),
        state_dir=state_dir / "lab",
        kubeconfig=kubeconfig,
        port=DEMO_PORT_BASE + 990,
        prefix="nademo",
        subnet=241,
        # The telemetry runs as users run it (probe agents, aggregator), without bandwidth tests: the lab's relay is
        # one process, and each 2-s iperf3 flow through it stalls every link (default p50 986 vs 630 ms measured).
        bandwidth_seconds=0,
    )
    out_dir = out or REPO_ROOT / "experiments" / "results" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("demo", total=None)

            def say(line: str) -> None:
                bar.update(task, description=line)

            say("control plane: starting etcd, kube-apiserver, controllers, two schedulers, extender")
            cluster_up(cluster, lambda component, state: say(f"control plane: {component} {state}"))
            say("lab: node namespaces, shaped links, Nodes, measuring links")
            lab_up(lab, lambda phase: say(f"lab: {phase}"))
            runner = ExperimentRunner(kubeconfig=kubeconfig, lab_state_dir=lab.state_dir, progress=say)
            result = runner.run(experiment, list(POLICIES))
            routed = runner.run(routing, list(routing.policies))
            live = follow_link_change(runner, experiment)
            say("writing results and plots")
            written = write_report(result, out_dir) + write_report(routed, out_dir / "routing")
            written += write_live_change(live, out_dir)
    except (ClusterError, LabError, ExperimentError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(code=1) from None
    finally:
        if not keep:
            console.print("tearing down the lab and the control plane")
            lab_down(lab.state_dir, kubeconfig, prefix=lab.prefix)
            cluster_down(cluster)
    output = Console(width=140)
    for run, ran in ((result, experiment), (routed, routing)):
        print_comparison(run, output, title=f"{run.workload} on {run.profile}: {ran.requests} requests per policy")
    print_live_change(live, output)
    output.print(f"results and plots: {out_dir} ({', '.join(str(p.relative_to(out_dir)) for p in written)})")
    output.print(f"demo took {time.monotonic() - started:.0f} s")
