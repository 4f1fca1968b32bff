"""Starting, watching and stopping detached processes: one place for what the control plane, the lab's real nodes
and the test beds all need.

- `spawn` starts a program in a session of its own (it outlives its starter and a Ctrl-C in the terminal), its
  output appended to a log, optionally inside cgroups (joined before exec, so nothing it forks escapes them).
- `alive(pid, binary)` checks the pid still runs that binary, so a reused pid is never signalled; a zombie is dead.
- `stop` sends SIGTERM to the process group, waits, then SIGKILL, and reaps a child of this process.
- `wait_until` polls a condition with a deadline and fails early, with the log's tail, when the process exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOG_TAIL_LINES = 20

# Handles of the processes this Python process started, by pid: when the same process later stops them (tests, the
# lab daemon) it reaps them through these instead of leaving zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


class ProcessError(RuntimeError):
    """A process that exited early or did not become ready: the message has the tail of its log."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on host:port (a port a service of ours is about to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _join_cgroups(cgroups: Sequence[Path]) -> Callable[[], None]:
    def join() -> None:
        for cgroup in cgroups:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    return join


def spawn(
    argv: Sequence[str], *, log: Path, cgroups: Sequence[Path] = (), env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(argv),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            preexec_fn=_join_cgroups(cgroups) if cgroups else None,
        )
    _children[process.pid] = process
    return process


def alive(pid: int, binary: str | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, with `binary`, runs that program (its path or name in argv[0..2])."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        reap(pid)
        return False
    return binary is None or any(binary.encode() in part for part in cmdline[:3])


def reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)


def stop(pid: int, binary: str | None = None, *, grace_s: float = 10.0, group: bool = True) -> None:
    """SIGTERM (to the process group with `group`), SIGKILL after `grace_s`; reaps a child of ours."""
    if not alive(pid, binary):
        reap(pid)
        return
    send = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive(pid, binary) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid, binary):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signal.SIGKILL)
    reap(pid)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    interval_s: float = 0.1,
) -> None:
    """Poll `condition` until it holds; raise ProcessError when `process` exits first or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            tail = f"; last lines of {log}:\n{log_tail(log)}" if log else ""
            raise ProcessError(f"{what}: the process exited early (code {process.returncode}){tail}")
        if time.monotonic() > deadline:
            tail = f"; last lines of {log}:\n{log_tail(log)}" if log else ""
            raise ProcessError(f"{what}: not done after {timeout_s:.0f} s{tail}")
        time.sleep(interval_s)
