"""Run Python code inside a network namespace without a subprocess.

A network namespace is a per-thread attribute in Linux: `setns(2)` moves only the calling thread. So each call gets
a fresh thread that enters the namespace, runs the function (sockets it opens live in that namespace) and ends;
no pooled thread is ever left in a lab namespace. Python 3.11 has no os.setns, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


def enter(namespace: str) -> None:
    """Move the calling thread into `namespace` (a name under /var/run/netns)."""
    fd = os.open(os.path.join(NETNS_DIR, namespace), os.O_RDONLY)  # noqa: PTH118 - a path string for os.open
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def run_in(namespace: str, function: Callable[[], T], *, timeout_s: float | None = None) -> T:
    """`function()` evaluated in `namespace`, in a thread of its own; its exception is raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            enter(namespace)
            outcome.append(function())
        except BaseException as error:  # handed to the caller
            failure.append(error)

    thread = threading.Thread(target=target, name=f"in-{namespace}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{namespace}: no answer within {timeout_s} s")
    if failure:
        raise failure[0]
    return outcome[0]
