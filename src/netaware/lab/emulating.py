r"""A link emulator that needs no netem: lab nodes as network namespaces joined by TUN devices and a userspace
relay that delays, drops and rate-limits each packet per directed node pair (timing from core/links.py).

    ns 0: tun 10.x.0.1/24 --fd--\                /--fd-- ns 2: tun 10.x.0.3/24
                                 relay (routes by IPv4 destination, one LinkClock per directed pair)
    ns 1: tun 10.x.0.2/24 --fd--/

The TUN devices are created in the root namespace (where the relay holds their file descriptors) and then moved
into the lab namespaces; the descriptors stay valid. The relay is one epoll loop with a heap of release times,
run in a thread; `stop()` ends it and removes both namespaces (and with them the devices).
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import select
import struct
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netaware.core.links import LinkClock, LinkShape

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


POLL_IDLE_S = 0.05


def _poll_timeout(pending: list[tuple[float, int, int, bytes]]) -> float:
    """How long to wait for packets: until the next release, rounded DOWN to whole milliseconds (epoll rounds a
    timeout up, which would release every packet up to 1 ms late); under 1 ms this is 0, i.e. a short spin."""
    if not pending:
        return POLL_IDLE_S
    remaining_ms = (pending[0][0] - time.monotonic()) * 1e3
    return min(POLL_IDLE_S, max(0, int(remaining_ms)) / 1e3)


def setup_commands(*, namespace: str, device: str, address: str) -> list[list[str]]:
    """The ip commands that move a TUN device into its namespace and address it (built as data); the prefix
    length of `address` makes the kernel route the whole lab subnet into the device."""
    return [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "set", device, "netns", namespace],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
        ["ip", "-n", namespace, "addr", "add", address, "dev", device],
        ["ip", "-n", namespace, "link", "set", device, "up"],
    ]


def run_commands(commands: Sequence[Sequence[str]]) -> None:
    for command in commands:
        result = subprocess.run(list(command), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass
class EmulatedNetwork:
    """Lab nodes as namespaces `<prefix>-<i>`, each with a TUN device on 10.<subnet>.0.0/24; one relay carries
    every packet from its origin's device to its destination's, shaped by that directed pair's LinkShape."""

    prefix: str
    nodes: Sequence[str]
    shapes: Mapping[tuple[str, str], LinkShape]
    """Directed (origin, destination) -> shape; a missing pair is carried unshaped."""
    subnet: int = 201
    seed: int = 0
    _fds: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.nodes) <= 250:
            raise ValueError("an emulated network has 1 to 250 nodes")

    @property
    def namespaces(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(len(self.nodes))]

    @property
    def addresses(self) -> list[str]:
        return [f"10.{self.subnet}.0.{i + 1}" for i in range(len(self.nodes))]

    def namespace_of(self, node: str) -> str:
        return self.namespaces[list(self.nodes).index(node)]

    def address_of(self, node: str) -> str:
        return self.addresses[list(self.nodes).index(node)]

    def start(self) -> None:
        try:
            for i, (namespace, address) in enumerate(zip(self.namespaces, self.addresses, strict=True)):
                device = f"{self.prefix}t{i}"[:15]
                self._fds.append(open_tun(device))
                run_commands(setup_commands(namespace=namespace, device=device, address=f"{address}/24"))
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._relay, name=f"net-{self.prefix}", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
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
        base = bytes([10, self.subnet, 0])
        poller = select.epoll()
        for fd in self._fds:
            poller.register(fd, select.EPOLLIN)
        pending: list[tuple[float, int, int, bytes]] = []
        sequence = 0
        try:
            while not self._stop.is_set():
                for fd, _ in poller.poll(_poll_timeout(pending)):
                    origin = index_of_fd[fd]
                    while True:
                        try:
                            packet = os.read(fd, MAX_PACKET)
                        except BlockingIOError:
                            break
                        # IPv4 only; the destination address is bytes 16..19 of the header.
                        if len(packet) < 20 or packet[0] >> 4 != 4 or packet[16:19] != base:
                            continue
                        destination = packet[19] - 1
                        if not 0 <= destination < count or destination == origin:
                            continue
                        release = clocks[(origin, destination)].schedule(
                            now_s=time.monotonic(), size_bytes=len(packet), rng=rng
                        )
                        if release is not None:
                            heapq.heappush(pending, (release, sequence, self._fds[destination], packet))
                            sequence += 1
                now = time.monotonic()
                while pending and pending[0][0] <= now:
                    _, _, fd, packet = heapq.heappop(pending)
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.write(fd, packet)
        finally:
            poller.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)

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
