"""The control plane's components as data: command lines, endpoints and health URLs, in start order.

Nothing here starts a process; `running.py` does, in one thin step. So the exact flags can be read and tested
without building or running anything.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netaware.controlplane.settings import NETAWARE_SCHEDULER_NAME, ClusterSettings


@dataclass(frozen=True)
class StatePaths:
    """Where each file of one running cluster lives, under the state folder."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    def kubeconfig(self, identity: str) -> Path:
        return self.root / f"{identity}.kubeconfig"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig("admin")

    @property
    def netaware_scheduler_config(self) -> Path:
        return self.root / "netaware-scheduler-config.yaml"

    @property
    def default_scheduler_config(self) -> Path:
        return self.root / "default-scheduler-config.yaml"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    endpoint: str
    health_url: str
    health_needs_token: bool = False


# Admission plugins that need controllers a throwaway loopback cluster does not want to wait for:
# TaintNodesByCondition taints every new Node not-ready until the node lifecycle controller clears it. ServiceAccount
# admission stays on, as on any cluster: pods get their account's token, which the lab's in-cluster components need
# (`up` waits until the `default` account exists, so pods created right after `up` are not refused).
DISABLED_ADMISSION = "TaintNodesByCondition"
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"
SERVICE_CIDR = "10.96.0.0/16"


def build_components(settings: ClusterSettings, paths: StatePaths) -> list[Component]:
    """Every component, in the order they must start."""
    binary = settings.bin_dir
    pki = paths.pki
    etcd_url = f"http://127.0.0.1:{settings.port('etcd')}"
    apiserver = f"https://127.0.0.1:{settings.port('kube-apiserver')}"

    def secure(name: str, extra: list[str]) -> Component:
        port = settings.port(name)
        return Component(
            name=name,
            argv=(
                *extra,
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--authorization-always-allow-paths={HEALTH_PATHS}",
            ),
            endpoint=f"https://127.0.0.1:{port}",
            health_url=f"https://127.0.0.1:{port}/healthz",
        )

    return [
        Component(
            name="etcd",
            argv=(
                str(binary / "etcd"),
                "--name=netaware-local",
                f"--data-dir={paths.etcd_data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{settings.port('etcd-peer')}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{settings.port('etcd-peer')}",
                f"--initial-cluster=netaware-local=http://127.0.0.1:{settings.port('etcd-peer')}",
                "--unsafe-no-fsync=true",  # throwaway data: fsync only costs time
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=4294967296",
            ),
            endpoint=etcd_url,
            health_url=f"{etcd_url}/health",
        ),
        Component(
            name="kube-apiserver",
            argv=(
                str(binary / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={settings.port('kube-apiserver')}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--disable-admission-plugins={DISABLED_ADMISSION}",
                # A loopback advertise address fails the `kubernetes` Endpoints validation otherwise.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                # Kubelets (the lab's real nodes) are reached at their InternalIP, never by a host name that only
                # the machine's resolver could answer, and authenticate the apiserver by its client certificate.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            ),
            endpoint=apiserver,
            health_url=f"{apiserver}/readyz",
            health_needs_token=True,
        ),
        secure(
            "kube-controller-manager",
            [
                str(binary / "kube-controller-manager"),
                f"--kubeconfig={paths.kubeconfig('kube-controller-manager')}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                # Each controller acts as its own service account, with the RBAC roles Kubernetes bootstraps for it
                # (the manager's own identity may not create ReplicaSets or EndpointSlices).
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*,-nodeipam",
            ],
        ),
        secure(
            "kube-scheduler",
            [str(binary / "kube-scheduler"), f"--config={paths.default_scheduler_config}"],
        ),
        Component(
            name="extender",
            argv=(
                sys.executable,
                "-m",
                "netaware.extender",
                "--host=127.0.0.1",
                f"--port={settings.port('extender')}",
                f"--kubeconfig={paths.kubeconfig(NETAWARE_SCHEDULER_NAME)}",
            ),
            endpoint=f"http://127.0.0.1:{settings.port('extender')}",
            health_url=f"http://127.0.0.1:{settings.port('extender')}/readyz",
        ),
        secure(
            "netaware-scheduler",
            [str(binary / "kube-scheduler"), f"--config={paths.netaware_scheduler_config}"],
        ),
        Component(
            name="kwok",
            argv=(
                str(binary / "kwok"),
                f"--kubeconfig={paths.kubeconfig('kwok')}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.244.0.1",
                f"--server-address=127.0.0.1:{settings.port('kwok')}",
                "--node-lease-duration-seconds=40",
            ),
            endpoint=f"http://127.0.0.1:{settings.port('kwok')}",
            health_url=f"http://127.0.0.1:{settings.port('kwok')}/healthz",
        ),
    ]


def default_scheduler_config(settings: ClusterSettings, paths: StatePaths) -> dict[str, Any]:
    """The default scheduler with the same client QPS/burst as the netaware one, so the two differ only by the
    extender (what the throughput benchmark compares)."""
    netaware = netaware_scheduler_config(settings, paths)
    connection = dict(netaware.get("clientConnection", {}))
    connection["kubeconfig"] = str(paths.kubeconfig("kube-scheduler"))
    return {
        "apiVersion": netaware["apiVersion"],
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": connection,
        "leaderElection": {"leaderElect": False},
    }


def netaware_scheduler_config(settings: ClusterSettings, paths: StatePaths) -> dict[str, Any]:
    """scheduler-extender/kube-scheduler-config.yaml with only the local kubeconfig, the extender's port and the
    lease's namespace changed."""
    config: dict[str, Any] = yaml.safe_load(settings.extender_config.read_text())
    config.setdefault("clientConnection", {})["kubeconfig"] = str(paths.kubeconfig(NETAWARE_SCHEDULER_NAME))
    # This scheduler is a process of the local control plane, not netaware's pod: its lease lives with the control
    # plane's, so removing netaware's namespace (as an uninstall does) never takes the running scheduler's lease.
    config.setdefault("leaderElection", {})["resourceNamespace"] = "kube-system"
    for extender in config.get("extenders", []):
        extender["urlPrefix"] = f"http://127.0.0.1:{settings.port('extender')}/"
        extender["ignorable"] = settings.extender_ignorable
        extender["nodeCacheCapable"] = settings.extender_node_cache_capable
    return config
