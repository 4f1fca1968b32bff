"""Where the local control plane and the lab keep their state: shared by both without either importing the other."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def cluster_state_dir() -> Path:
    """NETAWARE_STATE_DIR: the local control plane's state (PKI, kubeconfigs, etcd data, logs)."""
    return env_path("NETAWARE_STATE_DIR", Path.home() / ".local/state/netaware/cluster")


def cluster_kubeconfig() -> Path:
    return cluster_state_dir() / "admin.kubeconfig"


def lab_state_dir() -> Path:
    """NETAWARE_LAB_STATE_DIR: the lab's state (its config, status, pod logs, the Service table)."""
    return env_path("NETAWARE_LAB_STATE_DIR", Path.home() / ".local/state/netaware/lab")


def controlplane_bin_dir() -> Path:
    """NETAWARE_CONTROLPLANE_BIN: where hack/controlplane/build.sh puts etcd, kube-*, kubelet, kube-proxy and kwok."""
    return env_path("NETAWARE_CONTROLPLANE_BIN", REPO_ROOT / "hack/controlplane/bin")


def port_base() -> int:
    """NETAWARE_PORT_BASE: every local service listens on 127.0.0.1 at this base + a fixed offset."""
    return env_int("NETAWARE_PORT_BASE", 16000)


def profile_path(name_or_path: str) -> Path:
    """A link profile by name (tc-scripts/profiles/NAME.yaml) or by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return REPO_ROOT / "tc-scripts" / "profiles" / f"{name_or_path}.yaml"
