"""A link emulator that needs no netem: two network namespaces joined by TUN devices and a userspace relay that
delays, drops and rate-limits each packet (timing from core/links.py).

    ns A: tun (10.x.0.1 peer 10.x.0.2)  <-- fd -->  relay  <-- fd -->  ns B: tun (10.x.0.2 peer 10.x.0.1)

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
from collections.abc import Sequence
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


def setup_commands(*, namespace: str, device: str, address: str, peer: str) -> list[list[str]]:
    """The ip commands that move a TUN device into its namespace and address it (built as data)."""
    return [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "set", device, "netns", namespace],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
        ["ip", "-n", namespace, "addr", "add", address, "peer", peer, "dev", device],
        ["ip", "-n", namespace, "link", "set", device, "up"],
    ]


def run_commands(commands: Sequence[Sequence[str]]) -> None:
    for command in commands:
        result = subprocess.run(list(command), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass
class EmulatedLink:
    """Two namespaces `<prefix>-a` and `<prefix>-b` joined by an emulated link, one shape per direction."""

    prefix: str
    a_to_b: LinkShape
    b_to_a: LinkShape
    subnet: int = 201
    """Addresses are 10.<subnet>.0.1 (a) and 10.<subnet>.0.2 (b)."""
    seed: int = 0
    _fds: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def namespaces(self) -> tuple[str, str]:
        return f"{self.prefix}-a", f"{self.prefix}-b"

    @property
    def addresses(self) -> tuple[str, str]:
        return f"10.{self.subnet}.0.1", f"10.{self.subnet}.0.2"

    def start(self) -> None:
        (ns_a, ns_b), (ip_a, ip_b) = self.namespaces, self.addresses
        try:
            for side, namespace, address, peer in (("a", ns_a, ip_a, ip_b), ("b", ns_b, ip_b, ip_a)):
                device = f"{self.prefix}{side}"[:15]
                self._fds[side] = open_tun(device)
                run_commands(setup_commands(namespace=namespace, device=device, address=address, peer=peer))
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._relay, name=f"link-{self.prefix}", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        rng = random.Random(self.seed)
        clocks = {"a": LinkClock(self.a_to_b), "b": LinkClock(self.b_to_a)}
        out = {"a": self._fds["b"], "b": self._fds["a"]}
        side_of = {fd: side for side, fd in self._fds.items()}
        poller = select.epoll()
        for fd in self._fds.values():
            poller.register(fd, select.EPOLLIN)
        pending: list[tuple[float, int, int, bytes]] = []
        sequence = 0
        try:
            while not self._stop.is_set():
                timeout = 0.05 if not pending else max(0.0, min(0.05, pending[0][0] - time.monotonic()))
                for fd, _ in poller.poll(timeout):
                    side = side_of[fd]
                    while True:
                        try:
                            packet = os.read(fd, MAX_PACKET)
                        except BlockingIOError:
                            break
                        release = clocks[side].schedule(now_s=time.monotonic(), size_bytes=len(packet), rng=rng)
                        if release is not None:
                            heapq.heappush(pending, (release, sequence, out[side], packet))
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
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)

    def __enter__(self) -> EmulatedLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
