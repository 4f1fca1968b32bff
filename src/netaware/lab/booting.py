"""Booting and removing the lab's real nodes: kubelet, containerd, runc, CNI and kube-proxy in each node's network
namespace (the files they read come from nodefiles.py).

`RealNodes.start()` sets up the management network (bridge, DNAT to the apiserver, routes), then per node: its
cgroup parent in every hierarchy, its mount namespace, containerd, the images (OCI archives from `make images`),
the kubelet and kube-proxy; it waits until every Node is Ready. `sweep()` removes everything of a lab by name and
path alone, not by remembered pids, so it works the same after `kill -9` of any lab process: it kills every process
in the nodes' cgroups and namespaces, unmounts the mount namespaces, removes the cgroups, the bridge, the nftables
table and the routes, and restores the kernel settings the kubelets changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netaware import processes
from netaware.certificates import issue_client_certificate
from netaware.images.building import ImageBuildError, archives
from netaware.images.catalog import ImageSpec
from netaware.kube import api as kube
from netaware.kube.api import ApiException
from netaware.kube.applying import apply_manifests, load_manifests
from netaware.lab.emulating import run_commands
from netaware.lab.nodefiles import (
    HOST_PATHS,
    KERNEL_SYSCTLS,
    MANAGEMENT_DEVICE,
    SERVICE_CIDR,
    ManagementPlan,
    RealNode,
    containerd_command,
    kube_proxy_command,
    kubelet_command,
    kubernetes_endpoint_slice,
    write_node_files,
)
from netaware.paths import REPO_ROOT

log = logging.getLogger("netaware.lab")

CGROUP_ROOT = Path("/sys/fs/cgroup")
NODE_READY_TIMEOUT_S = 120.0
DNS_READY_TIMEOUT_S = 120.0
COREDNS_MANIFEST = REPO_ROOT / "hack/lab/coredns.yaml"
CONTAINERD_TIMEOUT_S = 20.0
NODE_MEMORY_MIB = 400
"""Memory one real node is given room for: idle it takes ~195 MiB (kubelet 83, kube-proxy 58, containerd 46), plus
~14 MiB per pod shim and the pods themselves."""
REQUIRED = {"containerd": "containerd", "runc": "runc", "ctr": "containerd", "nsenter": "util-linux", "nft": "nftables"}


def management_veth(prefix: str, index: int) -> str:
    """The root namespace's end of node `index`'s management veth (on the bridge `<prefix>m`)."""
    return f"{prefix}m{index}"[:15]


class NodeBootError(RuntimeError):
    """A real node that could not start: the message names the step, and the log to read."""


def cgroup_hierarchies() -> list[Path]:
    """The writable cgroup v1 hierarchies (cpu, memory, pids, ..., name=systemd); the v2 `unified` mount is left out."""
    found = []
    for entry in sorted(CGROUP_ROOT.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and entry.name != "unified" and (entry / "cgroup.procs").exists():
            found.append(entry)
    return found


def make_cgroups(relative: str) -> list[Path]:
    """The cgroup `relative` (and its parents) in every hierarchy, ready to take tasks; returns them."""
    made = []
    for hierarchy in cgroup_hierarchies():
        path = hierarchy
        for part in Path(relative).parts:
            path = path / part
            path.mkdir(exist_ok=True)
            if hierarchy.name.startswith("cpuset"):  # a cpuset cgroup takes no task until it has cpus and mems
                for setting in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / setting).read_text().strip():
                        (path / setting).write_text((hierarchy / setting).read_text())
        made.append(path)
    return made


def remove_cgroups(relative: str) -> None:
    """Remove the cgroup `relative` and its children from every hierarchy, as far as their tasks are gone."""
    for hierarchy in cgroup_hierarchies():
        _remove_cgroup_tree(hierarchy / relative)


def missing_tools() -> list[str]:
    return sorted({package for command, package in REQUIRED.items() if shutil.which(command) is None})


def preflight(*, bin_dir: Path, nodes: int) -> list[tuple[ImageSpec, Path]]:
    """What real nodes need, checked before anything is made: each failure is one line naming what to do. Returns
    the image archives the nodes import."""
    missing = missing_tools()
    if missing:
        raise NodeBootError(
            f"missing Debian packages: {' '.join(missing)} (run `make debian`, or `lab up --runtime process`)"
        )
    for binary in ("kubelet", "kube-proxy"):
        if not (bin_dir / binary).exists():
            raise NodeBootError(f"{bin_dir / binary} is missing (run `make controlplane`)")
    try:
        images = archives()
    except ImageBuildError as error:
        raise NodeBootError(str(error)) from None
    available_mib = _available_memory_mib()
    needed_mib = nodes * NODE_MEMORY_MIB
    if needed_mib > available_mib:
        most = max(1, available_mib // NODE_MEMORY_MIB)
        raise NodeBootError(
            f"{nodes} real nodes need about {needed_mib} MiB (~{NODE_MEMORY_MIB} MiB each: kubelet, containerd, "
            f"kube-proxy, a few pods) and this machine has {available_mib} MiB available: use --nodes {most} or fewer"
        )
    if not cgroup_hierarchies():
        raise NodeBootError(f"no cgroup v1 hierarchies under {CGROUP_ROOT}; the lab's kubelets need them")
    return images


def _available_memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def _run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeBootError(f"{' '.join(command)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def _set_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


@dataclass
class RealNodes:
    """The lab's nodes as real Kubernetes nodes. `nodes` come from the lab's emulated network (one per namespace)."""

    api: kube.ApiClient
    nodes: list[RealNode]
    prefix: str
    subnet: int
    state_dir: Path
    bin_dir: Path
    apiserver_port: int
    pki_dir: Path
    node_cpu_m: int
    node_memory_bytes: int
    progress: Callable[[str], None] = lambda _: None
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def plan(self) -> ManagementPlan:
        return ManagementPlan(self.subnet)

    @property
    def bridge(self) -> str:
        return f"{self.prefix}m"[:15]

    @property
    def saved_sysctls(self) -> Path:
        return self.state_dir / "kernel-sysctls.json"

    # -- start -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        images = preflight(bin_dir=self.bin_dir, nodes=len(self.nodes))
        if not self.saved_sysctls.exists():
            self.saved_sysctls.write_text(json.dumps({name: _sysctl(name) for name in KERNEL_SYSCTLS}))
        self._management_network()
        for node in self.nodes:
            self._prepare(node)
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda node: self._boot(node, images), self.nodes))
        apply_manifests(self.api, [kubernetes_endpoint_slice(address=self.plan.gateway, port=self.apiserver_port)])
        self._wait_ready()
        self._start_cluster_dns()

    def _start_cluster_dns(self) -> None:
        """CoreDNS, one replica per zone, as the cluster DNS Service every kubelet points its pods at."""
        documents = load_manifests([COREDNS_MANIFEST])
        zones = len({node.zone for node in self.nodes})
        for document in documents:
            if document["kind"] == "Deployment":
                document["spec"]["replicas"] = zones
        apply_manifests(self.api, documents)
        apps = kube.AppsV1Api(self.api)

        def available() -> bool:
            status = apps.read_namespaced_deployment_status("coredns", "kube-system").status
            return bool(status and (status.available_replicas or 0) >= zones)

        processes.wait_until(available, timeout_s=DNS_READY_TIMEOUT_S, what="CoreDNS (kube-system/coredns)",
                             interval_s=0.3)  # fmt: skip
        self.progress(f"cluster DNS: CoreDNS ready ({zones} replicas)")

    def _management_network(self) -> None:
        plan, bridge = self.plan, self.bridge
        commands = [
            ["ip", "link", "add", bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{plan.gateway}/24", "dev", bridge],
            ["ip", "link", "set", bridge, "up"],
            # Nothing of the lab's range ever leaves the machine: what no node route covers is unreachable.
            ["ip", "route", "add", "unreachable", plan.lab_range],
            ["nft", "add", "table", "ip", self.prefix],
            ["nft", f"add chain ip {self.prefix} prerouting "
                    "{ type nat hook prerouting priority dstnat; policy accept; }"],
            ["nft", f"add rule ip {self.prefix} prerouting iifname {bridge} ip daddr {plan.gateway} "
                    f"tcp dport {self.apiserver_port} dnat to 127.0.0.1:{self.apiserver_port}"],
        ]  # fmt: skip
        run_commands(commands)
        # The DNAT's target is a loopback address: allowed for packets that came in on the bridge.
        _set_sysctl(f"net.ipv4.conf.{bridge}.route_localnet", "1")

    def _prepare(self, node: RealNode) -> None:
        """The node's management veth and routes, cgroup parent, mount namespace and files."""
        host_end = management_veth(self.prefix, node.index)
        ns = node.netns
        run_commands(
            [
                ["ip", "link", "add", host_end, "type", "veth", "peer", "name", MANAGEMENT_DEVICE, "netns", ns],
                ["ip", "link", "set", host_end, "master", self.bridge, "up"],
                ["ip", "-n", ns, "addr", "add", f"{node.management_address}/24", "dev", MANAGEMENT_DEVICE],
                ["ip", "-n", ns, "link", "set", MANAGEMENT_DEVICE, "up"],
                ["ip", "-n", ns, "route", "add", SERVICE_CIDR, "dev", node.link_device],
                ["ip", "route", "add", f"{node.address}/32", "via", node.management_address],
                ["ip", "route", "add", node.pod_subnet, "via", node.management_address],
            ]
        )
        make_cgroups(f"{node.cgroup_parent.lstrip('/')}/runtime")
        self._mount_namespace(node)
        pki = self.pki_dir
        certificates = {
            "kubelet": issue_client_certificate(
                pki, f"node-{self.prefix}-{node.name}", common_name=f"system:node:{node.name}",
                organizations=("system:nodes",), output_dir=node.path("pki"),
            ),
            "kube-proxy": issue_client_certificate(
                pki, f"kube-proxy-{self.prefix}-{node.name}", common_name="system:kube-proxy",
                output_dir=node.path("pki"),
            ),
        }  # fmt: skip
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        write_node_files(
            node=node,
            server=f"https://{self.plan.gateway}:{self.apiserver_port}",
            ca_cert=pki / "ca.crt",
            certificates=certificates,
            cluster_cidr=self.plan.lab_range,
            reserved_cpu_m=max(0, (os.cpu_count() or 1) * 1000 - self.node_cpu_m),
            reserved_memory_bytes=max(0, total_memory - self.node_memory_bytes),
        )

    def _mount_namespace(self, node: RealNode) -> None:
        """A persistent mount namespace for the node (host mounts propagate in, none of the node's out), with the
        node's own folders bound over the paths kubelet and containerd hard-code."""
        ns_dir = node.path("ns")
        ns_dir.mkdir(parents=True, exist_ok=True)
        node.mount_namespace.touch()
        # The namespace file must sit on a private mount, else the bind mount of the namespace would propagate.
        _run(["mount", "--bind", str(ns_dir), str(ns_dir)])
        _run(["mount", "--make-private", str(ns_dir)])
        _run(["unshare", f"--mount={node.mount_namespace}", "--propagation", "slave", "true"])
        binds = []
        for host_path in HOST_PATHS:
            Path(host_path).mkdir(parents=True, exist_ok=True)
            own = node.path("host", host_path.strip("/").replace("/", "-"))
            own.mkdir(parents=True, exist_ok=True)
            binds.append(f"mount --bind {own} {host_path}")
        _run(["nsenter", f"--mount={node.mount_namespace}", "sh", "-ec", "; ".join(binds)])

    def _spawn(self, key: str, node: RealNode, argv: list[str]) -> subprocess.Popen[bytes]:
        cgroups = [h / node.cgroup_parent.lstrip("/") / "runtime" for h in cgroup_hierarchies()]
        process = processes.spawn(argv, log=node.path("logs", f"{key}.log"), cgroups=cgroups)
        self._processes[f"{node.name}/{key}"] = process
        return process

    def _boot(self, node: RealNode, images: list[tuple[ImageSpec, Path]]) -> None:
        started = time.monotonic()
        containerd = self._spawn("containerd", node, containerd_command(node))
        processes.wait_until(
            node.containerd_socket.exists, timeout_s=CONTAINERD_TIMEOUT_S, what=f"{node.name}: containerd",
            process=containerd, log=node.path("logs/containerd.log"),
        )  # fmt: skip
        for _spec, archive in images:
            _run(["ctr", "--address", str(node.containerd_socket), "--namespace", "k8s.io", "images", "import",
                  "--all-platforms", str(archive)])  # fmt: skip
        imported = time.monotonic()
        self._spawn("kubelet", node, kubelet_command(node=node, binary=self.bin_dir / "kubelet"))
        self._spawn("kube-proxy", node, kube_proxy_command(node=node, binary=self.bin_dir / "kube-proxy"))
        log.info(
            "node started",
            extra={"node": node.name, "images_s": round(imported - started, 1), "zone": node.zone},
        )
        self.progress(f"{node.name}: kubelet started ({imported - started:.0f} s for containerd and images)")

    def _wait_ready(self) -> None:
        core = kube.CoreV1Api(self.api)
        names = {node.name for node in self.nodes}

        def all_ready() -> bool:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    node, key = name.split("/")
                    logfile = self.state_dir / "nodes" / node / "logs" / f"{key}.log"
                    raise NodeBootError(f"{name} exited ({process.returncode}); last lines of {logfile}:\n"
                                        f"{processes.log_tail(logfile)}")  # fmt: skip
            ready = set()
            for item in core.list_node(label_selector=f"netaware.io/lab={self.prefix}").items:
                conditions = {c.type: c.status for c in ((item.status and item.status.conditions) or [])}
                if conditions.get("Ready") == "True" and item.metadata is not None:
                    ready.add(item.metadata.name)
            return names <= ready

        processes.wait_until(all_ready, timeout_s=NODE_READY_TIMEOUT_S, what="the lab's Nodes to be Ready",
                             interval_s=0.3)  # fmt: skip

    def status(self) -> dict[str, dict[str, Any]]:
        """Per node: the pid and state of its containerd, kubelet and kube-proxy."""
        result: dict[str, dict[str, Any]] = {}
        for name, process in self._processes.items():
            node, key = name.split("/")
            result.setdefault(node, {})[key] = {"pid": process.pid, "running": process.poll() is None}
        return result

    # -- stop --------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful where it is cheap: kubelets and kube-proxies first, then the sweep (which finds the rest)."""
        for name, process in self._processes.items():
            if name.endswith(("/kubelet", "/kube-proxy")):
                processes.stop(process.pid, grace_s=5)
        with contextlib.suppress(ApiException):
            kube.DiscoveryV1Api(self.api).delete_namespaced_endpoint_slice("kubernetes", "default")
        sweep(prefix=self.prefix, subnet=self.subnet, state_dir=self.state_dir)
        for process in self._processes.values():
            processes.reap(process.pid)


def _node_dirs(state_dir: Path) -> list[Path]:
    nodes = state_dir / "nodes"
    return sorted(p for p in nodes.iterdir() if p.is_dir()) if nodes.exists() else []


def _kill_cgroup_tree(cgroup: Path) -> int:
    killed = 0
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
                    killed += 1
    return killed


def _remove_cgroup_tree(cgroup: Path) -> None:
    for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            directory.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()


def lab_mounts(state_dir: Path) -> list[str]:
    """Mount points of the root mount namespace under the lab's state folder, deepest first."""
    root = str(state_dir.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == root or point.startswith(root + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def sweep(*, prefix: str, subnet: int, state_dir: Path) -> list[str]:
    """Remove every trace of a lab's real nodes, found by name and path (works after any crash)."""
    removed: list[str] = []
    # 1. every process of the nodes: containerd, shims and pods live in the nodes' cgroups; kubelet and kube-proxy
    #    too. Twice, as a shim may fork while the first pass runs.
    for _ in range(2):
        for hierarchy in cgroup_hierarchies():
            for cgroup in hierarchy.glob(f"{prefix}-*"):
                if _kill_cgroup_tree(cgroup):
                    removed.append(f"processes in {cgroup.name}")
        time.sleep(0.1)
    # 2. the mount namespaces (and with them every mount of the nodes: overlays, volumes, pod network namespaces)
    for point in lab_mounts(state_dir):
        _run(["umount", "--lazy", point], check=False)
        removed.append(f"mount {point}")
    # 3. cgroups, deepest first (a cgroup goes once its tasks are gone)
    for hierarchy in cgroup_hierarchies():
        for cgroup in hierarchy.glob(f"{prefix}-*"):
            _remove_cgroup_tree(cgroup)
    # 4. the management network in the root namespace
    plan = ManagementPlan(subnet)
    if _run(["ip", "link", "show", f"{prefix}m"[:15]], check=False).returncode == 0:
        _run(["ip", "link", "del", f"{prefix}m"[:15]], check=False)
        removed.append(f"bridge {prefix}m")
    # The nodes' veths too, by name: deleting a node's namespace frees the pair only once the kernel lets the
    # namespace go, which after a crash waits minutes for its orphaned TCP sockets to time out (a `lab up` right
    # after such a `down` met "narealm0: File exists"). Deleting the root end frees the name now.
    links = json.loads(_run(["ip", "-j", "link", "show"], check=False).stdout or "[]")
    for link in links:
        name = str(link.get("ifname", ""))
        if re.fullmatch(rf"{re.escape(prefix)}m\d+", name):
            _run(["ip", "link", "del", name], check=False)
            removed.append(f"veth {name}")
    if _run(["nft", "list", "table", "ip", prefix], check=False).returncode == 0:
        _run(["nft", "delete", "table", "ip", prefix], check=False)
        removed.append(f"nftables table ip {prefix}")
    routes = _run(["ip", "-j", "route", "show"], check=False).stdout
    for route in json.loads(routes or "[]"):
        destination = str(route.get("dst", ""))
        if destination == plan.lab_range or (destination.startswith(f"10.{subnet}.") and route.get("gateway", "")
                                              .startswith(f"10.{subnet}.255.")):  # fmt: skip
            kind = ["unreachable"] if route.get("type") == "unreachable" else []
            _run(["ip", "route", "del", *kind, destination], check=False)
    # 5. the kernel settings the kubelets changed
    saved = state_dir / "kernel-sysctls.json"
    if saved.exists():
        with contextlib.suppress(OSError, ValueError):
            for name, value in json.loads(saved.read_text()).items():
                _set_sysctl(name, value)
            saved.unlink()
            removed.append("kernel sysctls restored")
    # 6. the nodes' folders (containerd's root and state, kubelet's root, logs are kept in lab.log's folder)
    for directory in _node_dirs(state_dir):
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"node folder {directory.name}")
    return removed


def parse_memory(quantity: str) -> int:
    return kube.quantity_bytes(quantity)
