r"""What a real lab node is made of, as data (pure, so every setting is unit-testable): the configuration files of
its containerd, CNI, kubelet and kube-proxy, their command lines, and the address plan of the management network.

A real node is a network namespace (the emulator's, whose TUN device carries its shaped links) running a kubelet,
containerd (runc, Debian's CNI plugins) and kube-proxy, as upstream builds them, in a mount namespace of its own:

    root namespace                                         node i's network namespace
    apiserver 127.0.0.1:P <-DNAT- bridge <prefix>m         mgmt0 10.s.255.(i+1)/24 (unshaped: API traffic only)
              10.s.255.254/24 --veth-------------------->  tun   10.s.0.(i+1)/16   (the shaped links: InternalIP)
    routes: 10.s.0.(i+1)/32 and 10.s.(i+1).0/24            cni0  10.s.(i+1).1/24   (pods, from the CNI bridge)
            via 10.s.255.(i+1); unreachable 10.s.0.0/16

The Node's InternalIP is its TUN address, so everything that addresses a node or a pod (probe agents, pods on other
nodes, kube-proxy's endpoints) crosses the emulated links; only the apiserver reaches a kubelet, and a pod reaches
the apiserver, over the management veth. The settings marked (VM) are this kind of machine's: root without
CAP_SYS_RESOURCE, cgroup v1, no systemd (../shared/reference/real-nodes.md lists each with its symptom).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netaware.images.catalog import PAUSE_IMAGE

CNI_BIN_DIR = Path("/usr/lib/cni")
SERVICE_CIDR = "10.96.0.0/16"
"""The control plane's --service-cluster-ip-range: a node needs a route for it (into its link device) so that its
own sockets reach ClusterIPs; kube-proxy rewrites the destination before the packet leaves."""
CLUSTER_DOMAIN = "cluster.local"
CLUSTER_DNS = "10.96.0.10"
"""The kube-dns Service's ClusterIP (within the control plane's service range 10.96.0.0/16)."""
KUBELET_PORT = 10250
MANAGEMENT_OCTET = 255
"""The management network is 10.<subnet>.255.0/24: beyond every node's pod /24 (10.<subnet>.1-250.0)."""
CNI_BRIDGE = "cni0"
MANAGEMENT_DEVICE = "mgmt0"
HOST_PATHS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/run/containerd")
"""Paths a kubelet or containerd uses whatever its flags say (device-plugin sockets, container log links, shim
sockets): each node binds a folder of its own over them inside its mount namespace, so nodes never share them and
nothing of a node is left there after it is gone."""
KERNEL_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
"""Global (not per network namespace) sysctls the kubelet sets at start; the lab restores them when it goes."""


@dataclass(frozen=True)
class ManagementPlan:
    subnet: int

    @property
    def gateway(self) -> str:
        """The root namespace's end: where nodes and pods reach the apiserver (DNAT to its loopback address)."""
        return f"10.{self.subnet}.{MANAGEMENT_OCTET}.254"

    def address(self, node_index: int) -> str:
        return f"10.{self.subnet}.{MANAGEMENT_OCTET}.{node_index + 1}"

    @property
    def lab_range(self) -> str:
        return f"10.{self.subnet}.0.0/16"


@dataclass(frozen=True)
class RealNode:
    """One real node's identity, addresses and folder."""

    name: str
    index: int
    zone: str
    region: str
    lab: str
    """The lab's prefix (label netaware.io/lab)."""
    netns: str
    """The node's network namespace (a name under /run/netns)."""
    address: str
    """InternalIP: the node's TUN address on the shaped links."""
    link_device: str
    """The node's TUN device (its end of the shaped links)."""
    management_address: str
    pod_subnet: str
    pod_gateway: str
    directory: Path

    @property
    def cgroup_parent(self) -> str:
        """The node's cgroup in every v1 hierarchy: containerd, the shims and every pod of the node live below it."""
        return f"/{self.lab}-{self.name}"

    @property
    def containerd_socket(self) -> Path:
        return self.directory / "containerd/containerd.sock"

    @property
    def mount_namespace(self) -> Path:
        return self.directory / "ns/mnt"

    def path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)


def containerd_config(node: RealNode) -> str:
    """containerd 1.6's configuration (version 2): everything of the node under its folder, the CRI on the lab's
    pause image and CNI folder (never /etc/cni/net.d, where podman keeps its default bridge)."""
    d = node.directory
    return f"""\
version = 2
root = "{d / "containerd/root"}"
state = "{d / "containerd/state"}"
oom_score = 0
[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = "{node.containerd_socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd/opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The streaming server (exec, attach, port-forward) on the node namespace's own loopback.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # (VM) the CRI's oom_score_adj -998 for sandboxes needs CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "{d / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{d / "cni/net.d"}"
    max_conf_num = 1
"""


def cni_config(node: RealNode) -> dict[str, Any]:
    """Debian's CNI bridge on the node's pod /24 (host-local addresses kept in the node's folder) and portmap."""
    return {
        "cniVersion": "1.0.0",
        "name": "netaware-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # pod addresses are routable across the lab; nothing leaves it
                "hairpinMode": True,  # a pod reaching itself through its Service
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.path("cni/ipam")),
                    "ranges": [[{"subnet": node.pod_subnet, "gateway": node.pod_gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    *, node: RealNode, client_ca: Path, reserved_cpu_m: int, reserved_memory_bytes: int
) -> dict[str, Any]:
    """The KubeletConfiguration: the node's own cgroup parent, log and runtime paths; x509 + webhook authentication
    and webhook authorization as on any cluster; cluster DNS; the reservations that make its allocatable the lab's
    node size on this machine."""
    reserved: dict[str, str] = {}
    if reserved_cpu_m > 0:
        reserved["cpu"] = f"{reserved_cpu_m}m"
    if reserved_memory_bytes > 0:
        reserved["memory"] = str(reserved_memory_bytes)
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",  # (VM) no systemd; containerd 1.6 cannot report its driver
        "cgroupRoot": node.cgroup_parent,
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        "failCgroupV1": False,  # (VM) cgroup v1 only
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": "0.0.0.0",  # inside the node's network namespace
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods with dnsPolicy Default, and the search path, come from this file, never from the machine's resolver.
        "resolvConf": str(node.path("resolv.conf")),
        "podLogsDir": str(node.path("pod-logs")),
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "maxPods": 110,
        "enforceNodeAllocatable": ["pods"],
        "nodeStatusReportFrequency": "10s",
    }
    if reserved:
        config["systemReserved"] = reserved
    return config


def resolv_conf() -> str:
    return f"nameserver {CLUSTER_DNS}\nsearch {CLUSTER_DOMAIN}\noptions ndots:5\n"


def kube_proxy_config(*, node: RealNode, kubeconfig: Path, cluster_cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node.name,
        "bindAddress": node.address,
        "mode": "nftables",
        "clusterCIDR": cluster_cidr,
        "conntrack": {"maxPerCore": 0, "min": 0},  # leave the machine-wide nf_conntrack_max alone
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
    }


def kubeconfig(*, server: str, ca_cert: Path, client_cert: Path, client_key: Path, user: str) -> dict[str, Any]:
    """A kubeconfig for a node component: the apiserver through the management gateway, whose serving certificate
    names localhost (hence tls-server-name), and the component's own client certificate."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {"server": server, "certificate-authority": str(ca_cert), "tls-server-name": "localhost"},
            }
        ],
        "users": [{"name": user, "user": {"client-certificate": str(client_cert), "client-key": str(client_key)}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    }


def in_node(node: RealNode, argv: list[str], *, mount: bool = True) -> list[str]:
    """`argv` run inside the node's network namespace (and its mount namespace). nsenter execs, so the pid is the
    program's own; only the network namespace is entered (not `ip netns exec`, which remounts /sys and would hide
    the cgroup hierarchies)."""
    namespaces = [f"--net=/run/netns/{node.netns}"]
    if mount:
        namespaces.append(f"--mount={node.mount_namespace}")
    return ["nsenter", *namespaces, "--", *argv]


def containerd_command(node: RealNode) -> list[str]:
    return in_node(node, ["containerd", "--config", str(node.path("containerd/config.toml"))])


def kubelet_command(*, node: RealNode, binary: Path) -> list[str]:
    labels = {
        "topology.kubernetes.io/zone": node.zone,
        "topology.kubernetes.io/region": node.region,
        "netaware.io/lab": node.lab,
    }
    return in_node(
        node,
        [
            str(binary),
            f"--config={node.path('kubelet/config.yaml')}",
            f"--kubeconfig={node.path('kubelet/kubeconfig')}",
            f"--root-dir={node.path('kubelet/root')}",
            f"--cert-dir={node.path('kubelet/pki')}",
            f"--hostname-override={node.name}",
            f"--node-ip={node.address}",
            f"--node-labels={','.join(f'{k}={v}' for k, v in labels.items())}",
            "--v=1",
        ],
    )


def kube_proxy_command(*, node: RealNode, binary: Path) -> list[str]:
    return in_node(node, [str(binary), f"--config={node.path('kube-proxy/config.yaml')}", "--v=1"], mount=False)


def write_node_files(
    *,
    node: RealNode,
    server: str,
    ca_cert: Path,
    certificates: dict[str, tuple[Path, Path]],
    cluster_cidr: str,
    reserved_cpu_m: int,
    reserved_memory_bytes: int,
) -> None:
    """Every configuration file of the node, under its folder. `certificates` maps kubelet and kube-proxy to their
    (certificate, key)."""
    for folder in ("containerd", "cni/net.d", "cni/ipam", "kubelet/pki", "kubelet/root", "kube-proxy", "pod-logs"):
        node.path(folder).mkdir(parents=True, exist_ok=True)
    node.path("containerd/config.toml").write_text(containerd_config(node))
    node.path("cni/net.d/10-netaware-lab.conflist").write_text(json.dumps(cni_config(node), indent=1))
    node.path("resolv.conf").write_text(resolv_conf())
    kubelet = kubelet_config(
        node=node, client_ca=ca_cert, reserved_cpu_m=reserved_cpu_m, reserved_memory_bytes=reserved_memory_bytes
    )
    node.path("kubelet/config.yaml").write_text(yaml.safe_dump(kubelet, sort_keys=False))
    for component, user in (("kubelet", f"system:node:{node.name}"), ("kube-proxy", "system:kube-proxy")):
        cert, key = certificates[component]
        document = kubeconfig(server=server, ca_cert=ca_cert, client_cert=cert, client_key=key, user=user)
        node.path(component, "kubeconfig").write_text(yaml.safe_dump(document, sort_keys=False))
    proxy = kube_proxy_config(node=node, kubeconfig=node.path("kube-proxy/kubeconfig"), cluster_cidr=cluster_cidr)
    node.path("kube-proxy/config.yaml").write_text(yaml.safe_dump(proxy, sort_keys=False))


def kubernetes_endpoint_slice(*, address: str, port: int) -> dict[str, Any]:
    """The `kubernetes` Service's endpoints: the control plane runs with `--endpoint-reconciler-type=none` (its own
    address is loopback), so the lab, which gives it an address pods can reach, publishes it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "netaware-lab",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
