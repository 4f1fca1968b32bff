"""The lab daemon: one process that holds the link emulator's devices and relay, registers the lab nodes, runs their
pods, resolves Services, measures the links and writes them as NetworkTopology resources. `netaware lab up` starts it
detached and waits until it reports ready; `netaware lab down` stops it (SIGTERM: pods stopped, Nodes and
NetworkTopologies deleted, namespaces removed) and then sweeps whatever a crash left behind.

It serves /healthz, /metrics (bytes and drops per directed link, pods running), /v1/status and `POST /v1/shape` (a
live link change, `netaware lab shape`) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from flask import Flask, Response, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from werkzeug.serving import make_server

from netaware.core.profiles import LinkProfile, ProfileError, parse_profile, shape_change, shape_document
from netaware.core.quantities import cpu_millicores
from netaware.core.topology import Topology
from netaware.kube import api as kube
from netaware.kube.api import ApiException
from netaware.kube.applying import write_networktopologies
from netaware.kube.clients import api_client
from netaware.kube.converters import (
    GROUP,
    VERSION,
    ZONES_RESOURCE,
    networktopology_resources,
    topology_from_resources,
)
from netaware.kube.watching import list_raw
from netaware.lab import installing
from netaware.lab.agent import SERVICES_FILE_ENV, NodeHeartbeat, PodRunner, ServiceTable
from netaware.lab.booting import RealNodes, parse_memory
from netaware.lab.emulating import EmulatedNetwork
from netaware.lab.kubeobjects import NodeCapacity
from netaware.lab.measuring import measure_topology
from netaware.lab.monitoring import LabPrometheus, prometheus_config
from netaware.lab.nodefiles import ManagementPlan, RealNode
from netaware.logs import configure_logging
from netaware.paths import controlplane_bin_dir

log = logging.getLogger("netaware.lab")

HEARTBEAT_S = 10.0
RECONCILE_S = 0.5


@dataclass(frozen=True)
class LabConfig:
    profile: Path
    state_dir: Path
    kubeconfig: Path
    nodes: int | None = None
    """None: the profile's own nodes; N: N nodes spread over the profile's zones."""
    prefix: str = "nalab"
    subnet: int = 240
    port: int = 16990
    seed: int = 0
    node_cpu: str = "2"
    node_memory: str = "4Gi"
    probes: int = 20
    bandwidth_seconds: float = 1.0
    telemetry: bool = True
    """Real nodes: run the probe-agent DaemonSet and the aggregator, publishing continuously; False: the lab measures
    its links once at start (what the process runtime always does)."""
    prometheus: bool = True
    """Real nodes: run a Prometheus (monitoring/prometheus.yaml) on `prometheus_port`, scraping every netaware pod,
    the workloads and the control plane's schedulers and extender."""
    runtime: str = "kubelet"
    """kubelet: real nodes (kubelet, containerd, runc, CNI, kube-proxy per node); process: the lab's own pod runner,
    for machines without containerd (the pods' commands as processes, Services through the lab's table)."""

    @property
    def prometheus_port(self) -> int:
        return self.port + 1

    @property
    def status_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def services_file(self) -> Path:
        return self.state_dir / "services.json"


def load_profile(config: LabConfig) -> LinkProfile:
    profile = parse_profile(yaml.safe_load(config.profile.read_text()))
    return profile.with_nodes(config.nodes) if config.nodes else profile


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc (loaded, or loadable as a module)."""
    if Path("/sys/module/sch_netem").exists():
        return True
    release = os.uname().release
    modules = Path("/lib/modules") / release / "modules.dep"
    return modules.exists() and "sch_netem" in modules.read_text()


def emulator_choice() -> str:
    """Which link emulator the lab uses, and why (reported by `lab up` and `lab status`)."""
    if netem_available():
        return "tun-relay (netem exists in this kernel, but the lab's netem backend is not built yet)"
    return "tun-relay (this kernel has no netem qdisc)"


class _LinkCollector(Collector):
    def __init__(self, lab: Lab):
        self.lab = lab

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sent = CounterMetricFamily(
            "netaware_lab_link_bytes", "IP bytes the emulated link delivered", labels=["origin", "destination"]
        )
        dropped = CounterMetricFamily(
            "netaware_lab_link_dropped_packets", "Packets the emulated link dropped", labels=["origin", "destination"]
        )
        for (origin, destination), value in list(self.lab.network.link_bytes.items()):
            sent.add_metric([origin, destination], value)
        for (origin, destination), value in list(self.lab.network.link_drops.items()):
            dropped.add_metric([origin, destination], value)
        from_pods = CounterMetricFamily(
            "netaware_lab_link_pod_bytes", "IP bytes the emulated link delivered from pods (not host-network ones)",
            labels=["origin", "destination"],
        )  # fmt: skip
        for (origin, destination), value in list(self.lab.network.link_pod_bytes.items()):
            from_pods.add_metric([origin, destination], value)
        pods = GaugeMetricFamily("netaware_lab_pods", "Pods the lab runs", labels=["node"])
        counts = {node: 0 for node in self.lab.network.nodes}
        for running in list(self.lab.pods.running.values()):
            counts[running.node] += 1
        for node, count in counts.items():
            pods.add_metric([node], count)
        yield from (sent, dropped, from_pods, pods)


RUNTIMES = ("kubelet", "process")


def apiserver_port(kubeconfig: Path) -> int:
    """The apiserver's port, from the kubeconfig's server URL (the lab's nodes reach it through a DNAT)."""
    server = str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
    return urlsplit(server).port or 443


class Lab:
    def __init__(self, config: LabConfig):
        if config.runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {config.runtime!r}; known: {', '.join(RUNTIMES)}")
        self.config = config
        self.profile = load_profile(config)
        self.network = EmulatedNetwork(
            config.prefix,
            list(self.profile.nodes),
            self.profile.shapes(),
            subnet=config.subnet,
            seed=config.seed,
            pod_networks=config.runtime == "process",  # real nodes get their pod bridge from the CNI plugin
        )
        self.api = api_client(config.kubeconfig)
        zones = dict(self.profile.nodes)
        regions = {node: self.profile.zones[zone] or "region-1" for node, zone in zones.items()}
        self.real_nodes: RealNodes | None = None
        if config.runtime == "kubelet":
            plan = ManagementPlan(config.subnet)
            self.real_nodes = RealNodes(
                api=self.api,
                nodes=[
                    RealNode(
                        name=node, index=i, zone=zones[node], region=regions[node], lab=config.prefix,
                        netns=self.network.namespace_of(node), address=self.network.address_of(node),
                        link_device=self.network.device_of(node),
                        management_address=plan.address(i), pod_subnet=self.network.plan.pod_subnet(i),
                        pod_gateway=self.network.plan.pod_gateway(i), directory=config.state_dir / "nodes" / node,
                    )
                    for i, node in enumerate(self.network.nodes)
                ],
                prefix=config.prefix,
                subnet=config.subnet,
                state_dir=config.state_dir,
                bin_dir=controlplane_bin_dir(),
                apiserver_port=apiserver_port(config.kubeconfig),
                pki_dir=config.kubeconfig.parent / "pki",
                node_cpu_m=cpu_millicores(config.node_cpu),
                node_memory_bytes=parse_memory(config.node_memory),
                progress=lambda line: log.info(line),
            )  # fmt: skip
        self.heartbeat = NodeHeartbeat(
            self.api,
            self.network,
            zones=zones,
            regions={node: self.profile.zones[zone] or "region-1" for node, zone in zones.items()},
            lab=config.prefix,
            capacity=NodeCapacity(cpu=config.node_cpu, memory=config.node_memory),
        )
        self.pods = PodRunner(
            self.api,
            self.network,
            config.state_dir / "pods",
            extra_env={SERVICES_FILE_ENV: str(config.services_file)},
        )
        self.services = ServiceTable(self.api, config.services_file)
        self.topology: Topology | None = None
        self.telemetry_overlay = installing.write_overlay(
            config.state_dir / "telemetry", bandwidth_seconds=config.bandwidth_seconds
        )
        self.prometheus: LabPrometheus | None = None
        if config.runtime == "kubelet" and config.prometheus:
            self.prometheus = LabPrometheus(
                binary=controlplane_bin_dir() / "prometheus", folder=config.state_dir / "prometheus",
                port=config.prometheus_port, prefix=config.prefix,
                config=prometheus_config(kubeconfig=config.kubeconfig,
                                         cluster_state=config.kubeconfig.parent / "cluster.json"),
            )  # fmt: skip
        self.emulator = emulator_choice()
        self.phase = "starting"
        self.stopping = threading.Event()

    def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.phase = "links"
        self.network.start()
        log.info("links up", extra={"nodes": len(self.network.nodes), "emulator": self.emulator})
        self.phase = "nodes"
        if self.real_nodes is not None:
            self.real_nodes.start()
        else:
            self.heartbeat.register()
            self._loop("heartbeat", HEARTBEAT_S, self.heartbeat.beat)
            self._loop("pods", RECONCILE_S, self.pods.reconcile)
            self._loop("services", RECONCILE_S, self.services.reconcile)
        if self.real_nodes is not None and self.config.telemetry:
            # Telemetry as users run it: the probe-agent DaemonSet and the aggregator, publishing continuously.
            self.phase = "telemetry"
            started = time.time()
            installing.install(
                self.telemetry_overlay, bin_dir=controlplane_bin_dir(), kubeconfig=self.config.kubeconfig
            )
            installing.wait_published(self.api, self.network.nodes, since_s=started)
            log.info("telemetry publishing", extra={"seconds": round(time.time() - started, 1)})
        else:
            self.phase = "measuring"  # no DaemonSet (process runtime, or telemetry off): the lab measures once itself
            self.measure()
        if self.prometheus is not None:
            self.phase = "prometheus"
            self.prometheus.start()
            log.info("prometheus ready", extra={"url": self.prometheus.url})
        self.phase = "ready"
        self._write_status_file()
        log.info("lab ready", extra={"status": str(self.config.status_file)})

    def measure(self) -> Topology:
        topology = measure_topology(
            self.network,
            probes=self.config.probes,
            bandwidth_seconds=self.config.bandwidth_seconds,
            progress=lambda line: log.info(line),
        )
        resources = networktopology_resources(topology, zones=dict(self.profile.nodes), now_s=time.time())
        write_networktopologies(self.api, resources)
        self.topology = topology
        return topology

    def _loop(self, name: str, period_s: float, step: Callable[[], None]) -> None:
        def run() -> None:
            while not self.stopping.wait(period_s):
                try:
                    step()
                except Exception:  # a failed round is logged and retried next period; the loop never dies
                    log.exception("%s round failed", name)

        threading.Thread(target=run, name=f"lab-{name}", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()
        self.phase = "stopping"
        if self.prometheus is not None:
            with contextlib.suppress(Exception):
                self.prometheus.stop()
        if self.real_nodes is not None:
            with contextlib.suppress(Exception):  # before the nodes go, while the API can still say so
                installing.uninstall(
                    self.telemetry_overlay, bin_dir=controlplane_bin_dir(), kubeconfig=self.config.kubeconfig
                )
            with contextlib.suppress(Exception):
                self.real_nodes.stop()
        else:
            with contextlib.suppress(Exception):
                self.pods.stop_all()
        custom = kube.CustomObjectsApi(self.api)
        for name in [*self.network.nodes, ZONES_RESOURCE]:
            with contextlib.suppress(ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, "networktopologies", name)
        with contextlib.suppress(Exception):
            self.heartbeat.deregister()
        self.network.stop()
        self.config.status_file.unlink(missing_ok=True)
        log.info("lab stopped")

    def status(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "pid": os.getpid(),
            "relayPid": self.network.relay_pid,
            "port": self.config.port,
            "profile": self.profile.name,
            "emulator": self.emulator,
            "runtime": self.config.runtime,
            "prometheus": self.prometheus.url if self.prometheus is not None else None,
            "nodeProcesses": self.real_nodes.status() if self.real_nodes is not None else {},
            "prefix": self.config.prefix,
            "nodes": {
                node: {
                    "zone": self.profile.nodes[node],
                    "namespace": self.network.namespace_of(node),
                    "address": self.network.address_of(node),
                }
                for node in self.network.nodes
            },
            "pods": self._pods(),
            "links": self._links(),
            "servicesFile": str(self.config.services_file),
            "config": {k: str(v) for k, v in asdict(self.config).items()},
        }

    def _pods(self) -> list[dict[str, Any]]:
        """The pods on the lab's nodes: as their kubelets report them (real nodes), or as the runner runs them."""
        if self.real_nodes is None:
            return [
                {"pod": p.key, "node": p.node, "ip": p.ip, "netns": p.netns, "ready": p.ready, "failure": p.failure}
                for p in list(self.pods.running.values())
            ]
        nodes = set(self.network.nodes)
        found = []
        pods: list[Any] = kube.CoreV1Api(self.api).list_pod_for_all_namespaces(_request_timeout=5).items
        for pod in pods:
            if pod.spec.node_name not in nodes:
                continue
            conditions = {c.type: c.status for c in (pod.status.conditions or [])}
            found.append({
                "pod": f"{pod.metadata.namespace}/{pod.metadata.name}", "node": pod.spec.node_name,
                "ip": pod.status.pod_ip, "netns": None, "ready": conditions.get("Ready") == "True",
                "failure": None if pod.status.phase in ("Running", "Pending", "Succeeded") else pod.status.phase,
            })  # fmt: skip
        return found

    def _links(self) -> list[dict[str, Any]]:
        """Every directed link: bytes and drops carried so far, and its figures: as the aggregator last published
        them (real nodes), or as the lab measured them at start (process runtime)."""
        # One snapshot each, not one per pair.
        carried, dropped, from_pods = self.network.link_bytes, self.network.link_drops, self.network.link_pod_bytes
        topology = self.topology
        if self.real_nodes is not None:
            with contextlib.suppress(Exception):  # the API away: the figures are unknown, not stale ones shown
                topology = None
                custom = kube.CustomObjectsApi(self.api)
                listed = list_raw(
                    lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, "networktopologies", **kw)
                )
                topology = topology_from_resources(listed.get("items") or [])
        links = topology.links if topology else {}
        result = []
        for pair, sent in carried.items():
            measured = links.get(pair)
            result.append(
                {
                    "origin": pair[0],
                    "destination": pair[1],
                    "bytes": sent,
                    "podBytes": from_pods.get(pair, 0),
                    "dropped": dropped.get(pair, 0),
                    "rttMs": measured.rtt_ms if measured else None,
                    "bandwidthMbps": measured.bandwidth_mbps if measured else None,
                    "lossRatio": measured.loss_ratio if measured else None,
                    "shape": shape_document(self.network.shape_of(*pair)),
                }
            )
        return result

    def reshape(self, change: Any) -> dict[tuple[str, str], Any]:
        """Apply a live link change (see core.profiles.shape_change); raises ProfileError with the reason."""
        changes = shape_change(change, dict(self.profile.nodes), self.network.shapes)
        self.network.reshape(changes)
        log.info("links reshaped", extra={"change": change, "links": len(changes)})
        return changes

    def _write_status_file(self) -> None:
        self.config.status_file.write_text(json.dumps(self.status(), indent=1))


def create_app(lab: Lab) -> Flask:
    app = Flask("netaware-lab")
    registry = CollectorRegistry()
    registry.register(_LinkCollector(lab))

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(phase=lab.phase), 200 if lab.phase == "ready" else 503

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")

    @app.get("/v1/status")
    def status() -> Response:
        return jsonify(lab.status())

    @app.post("/v1/shape")
    def shape() -> tuple[Response, int]:
        try:
            changes = lab.reshape(request.get_json(silent=True))
        except ProfileError as error:
            return jsonify(error=str(error)), 400
        changed = [{"origin": o, "destination": d, **shape_document(s)} for (o, d), s in sorted(changes.items())]
        return jsonify(changed=changed), 200

    return app


def parse_config(argv: list[str] | None = None) -> LabConfig:
    parser = argparse.ArgumentParser(prog="python -m netaware.lab", description="The lab daemon (use `netaware lab`).")
    parser.add_argument("--config", type=Path, required=True, help="JSON file with the LabConfig fields")
    arguments = parser.parse_args(argv)
    fields = json.loads(arguments.config.read_text())
    for name in ("profile", "state_dir", "kubeconfig"):
        fields[name] = Path(fields[name])
    return LabConfig(**fields)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    config = parse_config(argv)
    lab = Lab(config)
    server = make_server("127.0.0.1", config.port, create_app(lab), threaded=True)
    threading.Thread(target=server.serve_forever, name="lab-http", daemon=True).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        lab.start()
        done.wait()
    except Exception:
        log.exception("lab failed")
        raise
    finally:
        lab.stop()
        server.shutdown()
