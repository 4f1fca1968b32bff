r"""A link emulator that needs no netem: lab nodes as network namespaces joined by TUN devices and a userspace
relay that delays, drops and rate-limits each packet per directed node pair (timing from core/links.py).

    ns 0: tun 10.x.0.1/16 --fd--\                /--fd-- ns 2: tun 10.x.0.3/16
                                 relay (routes by IPv4 destination, one LinkClock per directed pair)
    ns 1: tun 10.x.0.2/16 --fd--/

Address plan (AddressPlan): node i is 10.x.0.(i+1); its pods live on 10.x.(i+1).0/24 behind a bridge `pods`
(10.x.(i+1).1) in the node's namespace, each pod in its own namespace joined to the bridge by a veth pair. The node
namespace forwards between its pods and the TUN device, so pod-to-pod traffic across nodes crosses the shaped link
of the two nodes, and traffic between pods of one node never leaves the node.

The TUN devices are created in the root namespace (where the relay holds their file descriptors) and then moved
into the lab namespaces; the descriptors stay valid. The relay is one epoll loop with a heap of release times,
run in a forked process of its own (counting bytes and drops per directed pair in shared memory); `reshape()` sends
it new shapes over a pipe it polls with the devices (a live link change: packets already in flight keep the release
time they were given, the next ones get the new shape); `stop()` ends it and removes the lab's namespaces (and with
them the devices).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import heapq
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netaware.core.links import LinkClock, LinkShape

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535
PR_SET_PDEATHSIG = 1
RELAY_PRIORITY = 10
"""The relay's SCHED_FIFO priority: above every ordinary process, far below the kernel's own real-time threads."""

log = logging.getLogger("netaware.lab")


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


WAKE_EARLY_S = 0.0002
"""The timer fires this much before a release and the relay spins the rest: waking a sleeping vCPU here takes
0.1-0.2 ms, which every packet would otherwise arrive late by (a 20 ms link read 20.5 ms instead of 20.2)."""
CLOCK_MONOTONIC = 1
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class ReleaseTimer:
    """A timerfd on CLOCK_MONOTONIC (the clock of time.monotonic()) that the relay's epoll waits on beside the TUN
    devices, armed at the next packet's release time to the nanosecond. epoll's own timeout has whole milliseconds,
    so the relay used to spin through the last one before every release: 42% of a core for 625 packets/s, and under
    SCHED_FIFO that core was taken from the lab's workloads. (os.timerfd_* arrives in Python 3.13; libc has it.)"""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self._armed_at: float | None = None

    def arm(self, at_s: float | None) -> None:
        """Fire at monotonic time `at_s` (at once if that has passed); None disarms."""
        if at_s == self._armed_at:
            return
        self._armed_at = at_s
        value = _Timespec(0, 0)  # all zero disarms
        if at_s is not None:
            seconds = int(at_s)
            value = _Timespec(seconds, int((at_s - seconds) * 1e9) or 1)
        spec = _Itimerspec(_Timespec(0, 0), value)
        if self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    def clear(self) -> None:
        """Consume the expiry count, so that epoll reports the timer again only when it fires again."""
        self._armed_at = None
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)


def _run_in_real_time() -> None:
    """Put the calling process under SCHED_FIFO. netem delays packets in the kernel, untouched by CPU load; a
    userspace relay competing with the lab's own kubelets and workloads for two cores released packets late (a
    20 ms link measured 21.9 ms on average with three busy processes beside it, 20.1 ms under SCHED_FIFO). The
    relay sleeps in epoll between packets, and the kernel's real-time throttling keeps 5% of every core for others."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RELAY_PRIORITY))
    except PermissionError:
        log.warning("relay_not_real_time", extra={"reason": "no CAP_SYS_NICE; CPU load will delay packets"})


@dataclass(frozen=True)
class AddressPlan:
    """Where nodes and pods live inside 10.<subnet>.0.0/16."""

    subnet: int

    def node_address(self, node_index: int) -> str:
        return f"10.{self.subnet}.0.{node_index + 1}"

    def pod_subnet(self, node_index: int) -> str:
        return f"10.{self.subnet}.{node_index + 1}.0/24"

    def pod_gateway(self, node_index: int) -> str:
        return f"10.{self.subnet}.{node_index + 1}.1"

    def pod_address(self, node_index: int, slot: int) -> str:
        if not 2 <= slot <= 254:
            raise ValueError(f"pod slot must be within 2..254, got {slot}")
        return f"10.{self.subnet}.{node_index + 1}.{slot}"

    def node_of(self, packet: bytes) -> int | None:
        """The node index an IPv4 packet is addressed to (a node or one of its pods); None outside the lab."""
        if len(packet) < 20 or packet[0] >> 4 != 4 or packet[16] != 10 or packet[17] != self.subnet:
            return None
        return packet[19] - 1 if packet[18] == 0 else packet[18] - 1

    @staticmethod
    def from_pod(packet: bytes) -> bool:
        """Whether an IPv4 packet of the lab comes from a pod (10.x.(i+1).y), not from a node's own address (10.x.0.y:
        the kubelet, host-network pods such as the probe agents and their iperf3)."""
        return len(packet) >= 20 and packet[14] != 0


def setup_commands(*, namespace: str, device: str, address: str, pod_gateway: str | None = None) -> list[list[str]]:
    """The ip commands that move a TUN device into its namespace and address it (built as data); the prefix
    length of `address` makes the kernel route the whole lab subnet into the device. With `pod_gateway`, also the
    bridge its pods attach to, and forwarding between them and the device."""
    commands = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "set", device, "netns", namespace],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
        ["ip", "-n", namespace, "addr", "add", address, "dev", device],
        ["ip", "-n", namespace, "link", "set", device, "up"],
    ]
    if pod_gateway is not None:
        commands += [
            ["ip", "-n", namespace, "link", "add", "pods", "type", "bridge"],
            ["ip", "-n", namespace, "addr", "add", f"{pod_gateway}/24", "dev", "pods"],
            ["ip", "-n", namespace, "link", "set", "pods", "up"],
            ["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ]
    return commands


def pod_commands(
    *, node_namespace: str, pod_namespace: str, host_device: str, address: str, gateway: str
) -> list[list[str]]:
    """A pod's namespace joined to its node's `pods` bridge by a veth pair (the pod end is eth0)."""
    return [
        ["ip", "netns", "add", pod_namespace],
        ["ip", "link", "add", host_device, "type", "veth", "peer", "name", "eth0", "netns", pod_namespace],
        ["ip", "link", "set", host_device, "netns", node_namespace],
        ["ip", "-n", node_namespace, "link", "set", host_device, "master", "pods", "up"],
        ["ip", "-n", pod_namespace, "link", "set", "lo", "up"],
        ["ip", "-n", pod_namespace, "addr", "add", f"{address}/24", "dev", "eth0"],
        ["ip", "-n", pod_namespace, "link", "set", "eth0", "up"],
        ["ip", "-n", pod_namespace, "route", "add", "default", "via", gateway],
    ]


def run_commands(commands: Sequence[Sequence[str]]) -> None:
    for command in commands:
        result = subprocess.run(list(command), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


def namespaces_with_prefix(prefix: str) -> list[str]:
    """Existing namespaces `<prefix>-...` (a lab's nodes and pods)."""
    listing = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=False).stdout
    names = [entry["name"] for entry in json.loads(listing or "[]")]
    return [name for name in names if name.startswith(f"{prefix}-")]


def remove_namespace(namespace: str) -> None:
    """Kill whatever runs in the namespace, then delete it (its veth and TUN devices go with it)."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False).stdout
    for pid in pids.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def remove_namespaces(prefix: str) -> list[str]:
    """Pods first, nodes last; returns what was removed."""
    found = sorted(namespaces_with_prefix(prefix), key=lambda name: (-name.count("-"), name))
    for namespace in found:
        remove_namespace(namespace)
    return found


@dataclass
class EmulatedNetwork:
    """Lab nodes as namespaces `<prefix>-<i>`, each with a TUN device on 10.<subnet>.0.0/24; one relay carries
    every packet from its origin's device to its destination's, shaped by that directed pair's LinkShape."""

    prefix: str
    nodes: Sequence[str]
    shapes: dict[tuple[str, str], LinkShape]
    """Directed (origin, destination) -> shape; a missing pair is carried unshaped."""
    subnet: int = 201
    seed: int = 0
    pod_networks: bool = False
    """Give every node a `pods` bridge on 10.<subnet>.(i+1).0/24 (the lab's pods attach there)."""
    _fds: list[int] = field(default_factory=list)
    _counters: Any = None
    """Shared memory the relay process counts in: per directed pair (i*n+j), bytes delivered, then packets dropped,
    then bytes delivered from pods."""
    _relay_process: multiprocessing.process.BaseProcess | None = None
    _parent_pid: int = 0
    _reshapes: Any = None
    """The write end of the pipe the relay reads new shapes from: {(origin index, destination index): LinkShape}."""
    _reshaping: threading.Lock = field(default_factory=threading.Lock)
    """One sender at a time on that pipe (the lab daemon serves requests on several threads)."""

    @property
    def relay_pid(self) -> int | None:
        return self._relay_process.pid if self._relay_process is not None else None

    def __post_init__(self) -> None:
        if not 1 <= len(self.nodes) <= 250:
            raise ValueError("an emulated network has 1 to 250 nodes")
        self.shapes = dict(self.shapes)  # our own copy: reshape() changes it

    def shape_of(self, origin: str, destination: str) -> LinkShape:
        """The shape in force on the directed link (unshaped where the profile gave none)."""
        return self.shapes.get((origin, destination), LinkShape())

    def reshape(self, changes: Mapping[tuple[str, str], LinkShape]) -> None:
        """Give the directed links in `changes` their new shapes, now, without stopping the relay."""
        index = {node: i for i, node in enumerate(self.nodes)}
        unknown = [pair for pair in changes if pair[0] not in index or pair[1] not in index or pair[0] == pair[1]]
        if unknown:
            raise ValueError(f"not links of this network: {unknown}")
        with self._reshaping:
            if self._reshapes is None:
                raise RuntimeError("the network is not started")
            self._reshapes.send({(index[o], index[d]): shape for (o, d), shape in changes.items()})
            self.shapes.update(changes)

    @property
    def namespaces(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(len(self.nodes))]

    @property
    def plan(self) -> AddressPlan:
        return AddressPlan(self.subnet)

    @property
    def addresses(self) -> list[str]:
        return [self.plan.node_address(i) for i in range(len(self.nodes))]

    def device_of(self, node: str) -> str:
        """The node's TUN device (inside its namespace): its end of the shaped links."""
        return f"{self.prefix}t{list(self.nodes).index(node)}"[:15]

    def namespace_of(self, node: str) -> str:
        return self.namespaces[list(self.nodes).index(node)]

    def address_of(self, node: str) -> str:
        return self.addresses[list(self.nodes).index(node)]

    def start(self) -> None:
        try:
            for i, (namespace, address) in enumerate(zip(self.namespaces, self.addresses, strict=True)):
                device = self.device_of(self.nodes[i])
                self._fds.append(open_tun(device))
                gateway = self.plan.pod_gateway(i) if self.pod_networks else None
                run_commands(
                    setup_commands(namespace=namespace, device=device, address=f"{address}/16", pod_gateway=gateway)
                )
        except BaseException:
            self.stop()
            raise
        # The relay runs in a process of its own (forked; it inherits the TUN descriptors): in a thread it would share
        # the GIL with everything else the lab process does, and every busy moment there would delay packets.
        context = multiprocessing.get_context("fork")
        self._parent_pid = os.getpid()
        self._counters = context.RawArray("q", 3 * len(self.nodes) ** 2)
        reshapes, self._reshapes = context.Pipe(duplex=False)
        self._relay_process = context.Process(
            target=self._relay, args=(reshapes,), name=f"relay-{self.prefix}", daemon=True
        )
        self._relay_process.start()
        reshapes.close()  # the relay holds its copy of the read end

    def _counter_view(self, offset: int) -> dict[tuple[str, str], int]:
        if self._counters is None:
            return {}
        count = len(self.nodes)
        return {
            (origin, destination): int(self._counters[offset + i * count + j])
            for i, origin in enumerate(self.nodes)
            for j, destination in enumerate(self.nodes)
            if i != j
        }

    @property
    def link_bytes(self) -> dict[tuple[str, str], int]:
        """IP bytes delivered per directed node pair since start."""
        return self._counter_view(0)

    @property
    def link_drops(self) -> dict[tuple[str, str], int]:
        """Packets dropped per directed node pair by the emulated loss."""
        return self._counter_view(len(self.nodes) ** 2)

    @property
    def link_pod_bytes(self) -> dict[tuple[str, str], int]:
        """IP bytes delivered per directed node pair from pods: the workloads' traffic, without the nodes' own (the
        probe agents' ICMP and iperf3 run on the host network)."""
        return self._counter_view(2 * len(self.nodes) ** 2)

    def _relay(self, reshapes: Any) -> None:
        rng = random.Random(self.seed)
        count = len(self.nodes)
        unshaped = LinkShape()
        clocks = {
            (i, j): LinkClock(self.shapes.get((self.nodes[i], self.nodes[j]), unshaped))
            for i in range(count)
            for j in range(count)
            if i != j
        }
        index_of_fd = {fd: i for i, fd in enumerate(self._fds)}
        plan = self.plan
        counters = self._counters
        drops_offset = count * count
        pods_offset = 2 * count * count
        from_pod = plan.from_pod
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # Die with the process that started the relay, even when it is killed outright (SIGKILL runs no clean-up).
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != self._parent_pid:  # the parent died before prctl took effect
            sys.exit(0)
        _run_in_real_time()
        poller = select.epoll()
        for fd in self._fds:
            poller.register(fd, select.EPOLLIN)
        timer = ReleaseTimer()
        poller.register(timer.fd, select.EPOLLIN)
        poller.register(reshapes.fileno(), select.EPOLLIN)
        pending: list[tuple[float, int, int, bytes]] = []
        sequence = 0
        try:
            while True:
                timer.arm(pending[0][0] - WAKE_EARLY_S if pending else None)
                for fd, _ in poller.poll():
                    if fd == timer.fd:
                        timer.clear()
                        continue
                    if fd == reshapes.fileno():
                        try:
                            for pair, shape in reshapes.recv().items():
                                clocks[pair].shape = shape
                        except EOFError:  # the lab process is gone; PR_SET_PDEATHSIG ends us too
                            poller.unregister(fd)
                        continue
                    origin = index_of_fd[fd]
                    while True:
                        try:
                            packet = os.read(fd, MAX_PACKET)
                        except BlockingIOError:
                            break
                        destination = plan.node_of(packet)
                        if destination is None or not 0 <= destination < count or destination == origin:
                            continue
                        pair = (origin, destination)
                        release = clocks[pair].schedule(now_s=time.monotonic(), size_bytes=len(packet), rng=rng)
                        if release is None:
                            counters[drops_offset + origin * count + destination] += 1
                            continue
                        counters[origin * count + destination] += len(packet)
                        if from_pod(packet):
                            counters[pods_offset + origin * count + destination] += len(packet)
                        heapq.heappush(pending, (release, sequence, self._fds[destination], packet))
                        sequence += 1
                while pending and pending[0][0] <= time.monotonic() + WAKE_EARLY_S:
                    release, _, fd, packet = heapq.heappop(pending)
                    while time.monotonic() < release:  # the last WAKE_EARLY_S: a wake-up's own lateness, spun
                        pass
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.write(fd, packet)
        finally:
            poller.close()

    def pod_namespace(self, node: str, slot: int) -> str:
        return f"{self.namespace_of(node)}-{slot}"

    def attach_pod(self, node: str, slot: int) -> tuple[str, str]:
        """A new pod namespace on `node` at address slot `slot` (2..254): returns (namespace, IP)."""
        i = list(self.nodes).index(node)
        address = self.plan.pod_address(i, slot)
        namespace = self.pod_namespace(node, slot)
        remove_namespace(namespace)  # a leftover of a crashed run would make `ip netns add` fail
        commands = pod_commands(
            node_namespace=self.namespaces[i],
            pod_namespace=namespace,
            host_device=f"{self.prefix}v{i}s{slot}"[:15],
            address=address,
            gateway=self.plan.pod_gateway(i),
        )
        try:
            run_commands(commands)
        except BaseException:
            remove_namespace(namespace)
            raise
        return namespace, address

    def stop(self) -> None:
        if self._reshapes is not None:
            self._reshapes.close()
            self._reshapes = None
        if self._relay_process is not None and self._relay_process.pid is not None:
            self._relay_process.terminate()
            self._relay_process.join(timeout=5)
            if self._relay_process.is_alive():
                self._relay_process.kill()
                self._relay_process.join(timeout=5)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        remove_namespaces(self.prefix)

    def __enter__(self) -> EmulatedNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def emulated_link(
    prefix: str, a_to_b: LinkShape, b_to_a: LinkShape, *, subnet: int = 201, seed: int = 0
) -> EmulatedNetwork:
    """Two nodes `a` and `b` joined by one link, shaped per direction."""
    return EmulatedNetwork(prefix, ["a", "b"], {("a", "b"): a_to_b, ("b", "a"): b_to_a}, subnet=subnet, seed=seed)
