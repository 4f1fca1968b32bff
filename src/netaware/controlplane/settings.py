"""Settings of the local control plane: every option is a flag, an env var and a default, documented here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from netaware.paths import REPO_ROOT, cluster_state_dir, controlplane_bin_dir
from netaware.paths import env_path as _env_path
from netaware.paths import port_base as default_port_base


@dataclass(frozen=True)
class ClusterSettings:
    state_dir: Path = field(default_factory=cluster_state_dir)
    """NETAWARE_STATE_DIR: PKI, kubeconfigs, etcd data, logs and the pid file of the running cluster."""
    bin_dir: Path = field(default_factory=controlplane_bin_dir)
    """NETAWARE_CONTROLPLANE_BIN: where hack/controlplane/build.sh put etcd, kube-* and kwok."""
    port_base: int = field(default_factory=default_port_base)
    """NETAWARE_PORT_BASE: every component listens on 127.0.0.1 at port_base + a fixed offset (see PORTS)."""
    fake_nodes: int = 0
    """--fake-nodes: kwok nodes to create, spread over three zones in one region."""
    extender_config: Path = field(
        default_factory=lambda: _env_path(
            "NETAWARE_SCHEDULER_CONFIG", REPO_ROOT / "scheduler-extender/kube-scheduler-config.yaml"
        )
    )
    """NETAWARE_SCHEDULER_CONFIG: the second scheduler's KubeSchedulerConfiguration (same file as in-cluster)."""
    crd_dir: Path = REPO_ROOT / "crds"
    namespaces_manifest: Path = REPO_ROOT / "deploy/namespaces/namespaces.yaml"
    rbac_manifest: Path = REPO_ROOT / "scheduler-extender/rbac.yaml"
    ready_timeout_s: float = 180.0
    """How long `up` waits for every component to report ready."""
    extender_ignorable: bool = False
    """Whether the second scheduler treats extender errors as ignorable (then it schedules without scores)."""
    extender_node_cache_capable: bool = True
    """True: the scheduler sends node names only; False: full Node objects (the extender supports both)."""

    def port(self, component: str) -> int:
        return self.port_base + PORTS[component]


# Offsets from port_base; one place, so a clash is visible at a glance.
PORTS = {
    "etcd": 379,
    "etcd-peer": 380,
    "kube-apiserver": 443,
    "kube-controller-manager": 257,
    "kube-scheduler": 259,
    "netaware-scheduler": 269,
    "kwok": 247,
    "extender": 888,
}

NETAWARE_SCHEDULER_NAME = "netaware-scheduler"
ZONES = ("zone-a", "zone-b", "zone-c")
REGION = "region-1"
