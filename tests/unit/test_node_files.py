"""A real lab node's files and command lines, without starting anything: every path is the node's own (never a
shared system folder such as /etc/cni/net.d), the kubelet's allocatable is the lab's node size through
systemReserved, the CNI bridge serves the node's pod /24, components enter only the node's network namespace
(nsenter, not `ip netns exec`, which would hide the cgroup hierarchies), and the `kubernetes` Service's endpoint is
the management gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from netaware.lab.nodefiles import (
    CLUSTER_DNS,
    ManagementPlan,
    RealNode,
    cni_config,
    containerd_config,
    kube_proxy_command,
    kubelet_command,
    kubelet_config,
    kubernetes_endpoint_slice,
    write_node_files,
)


def node(tmp_path: Path) -> RealNode:
    return RealNode(
        name="node-a1", index=0, zone="zone-a", region="region-1", lab="nalab", netns="nalab-0",
        address="10.240.0.1", link_device="nalabt0", management_address=ManagementPlan(240).address(0),
        pod_subnet="10.240.1.0/24", pod_gateway="10.240.1.1", directory=tmp_path / "nodes/node-a1",
    )  # fmt: skip


def test_management_plan_sits_beyond_every_pod_subnet() -> None:
    plan = ManagementPlan(240)
    assert plan.gateway == "10.240.255.254"
    assert plan.address(0) == "10.240.255.1"
    assert plan.lab_range == "10.240.0.0/16"


def test_containerd_keeps_everything_under_the_node_folder(tmp_path: Path) -> None:
    config = containerd_config(node(tmp_path))
    assert "/etc/cni/net.d" not in config  # podman's default bridge lives there
    for key in ("root", "state", "address", "conf_dir", "Root"):
        lines = [
            line for line in config.splitlines() if line.strip().startswith(f"{key} =") and not line.endswith('""')
        ]  # an empty address (metrics) is a listener turned off
        assert lines and all(str(tmp_path / "nodes/node-a1") in line for line in lines), key
    assert "restrict_oom_score_adj = true" in config


def test_cni_bridge_serves_the_nodes_pod_subnet(tmp_path: Path) -> None:
    bridge = cni_config(node(tmp_path))["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["isGateway"] and not bridge["ipMasq"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.240.1.0/24", "gateway": "10.240.1.1"}]]
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


@pytest.mark.parametrize(
    ("reserved_cpu_m", "reserved_memory", "expected"),
    [
        (0, 0, None),
        (0, 1_000_000, {"memory": "1000000"}),
        (500, 2_000_000, {"cpu": "500m", "memory": "2000000"}),
    ],
)
def test_kubelet_reserves_what_exceeds_the_lab_node_size(
    tmp_path: Path, reserved_cpu_m: int, reserved_memory: int, expected: dict[str, str] | None
) -> None:
    config = kubelet_config(
        node=node(tmp_path), client_ca=tmp_path / "ca.crt", reserved_cpu_m=reserved_cpu_m,
        reserved_memory_bytes=reserved_memory,
    )  # fmt: skip
    assert config.get("systemReserved") == expected
    assert config["cgroupRoot"] == "/nalab-node-a1"
    assert config["clusterDNS"] == [CLUSTER_DNS]
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["resolvConf"].startswith(str(tmp_path))  # never the machine's resolver


def test_components_enter_only_the_nodes_namespaces(tmp_path: Path) -> None:
    real = node(tmp_path)
    kubelet = kubelet_command(node=real, binary=Path("/bin/kubelet"))
    assert kubelet[:3] == ["nsenter", "--net=/run/netns/nalab-0", f"--mount={real.mount_namespace}"]
    assert "--node-ip=10.240.0.1" in kubelet
    labels = next(a for a in kubelet if a.startswith("--node-labels="))
    assert "topology.kubernetes.io/zone=zone-a" in labels and "netaware.io/lab=nalab" in labels
    proxy = kube_proxy_command(node=real, binary=Path("/bin/kube-proxy"))
    assert proxy[:2] == ["nsenter", "--net=/run/netns/nalab-0"] and not any("--mount" in a for a in proxy)
    assert "netns" not in " ".join(kubelet[3:])


def test_node_files_are_written_with_their_identities(tmp_path: Path) -> None:
    real = node(tmp_path)
    certificates = {
        "kubelet": (tmp_path / "k.crt", tmp_path / "k.key"),
        "kube-proxy": (tmp_path / "p.crt", tmp_path / "p.key"),
    }
    write_node_files(
        node=real, server="https://10.240.255.254:16443", ca_cert=tmp_path / "ca.crt", certificates=certificates,
        cluster_cidr="10.240.0.0/16", reserved_cpu_m=0, reserved_memory_bytes=0,
    )  # fmt: skip
    kubeconfig = yaml.safe_load(real.path("kubelet/kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["tls-server-name"] == "localhost"
    assert kubeconfig["users"][0]["name"] == "system:node:node-a1"
    proxy = yaml.safe_load(real.path("kube-proxy/config.yaml").read_text())
    assert proxy["mode"] == "nftables" and proxy["hostnameOverride"] == "node-a1"
    assert json.loads(real.path("cni/net.d/10-netaware-lab.conflist").read_text())["name"] == "netaware-lab"


def test_the_kubernetes_service_points_at_the_management_gateway() -> None:
    slice_ = kubernetes_endpoint_slice(address="10.240.255.254", port=16443)
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert slice_["endpoints"][0]["addresses"] == ["10.240.255.254"]
    assert slice_["ports"] == [{"name": "https", "port": 16443, "protocol": "TCP"}]
