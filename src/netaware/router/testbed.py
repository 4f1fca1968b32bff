"""Real processes on loopback for the router's benchmark and tests: replicas (the dummy workload service, each with
its own capacity) and routers (`netaware-router proxy`), started, waited for, drained and stopped."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from netaware import processes
from netaware.router.replica import PROBE_PATH
from netaware.scraping import counter_totals

HOST = "127.0.0.1"
GUNICORN_LISTENING = re.compile(r"Listening at: http://(?P<address>[^ ]+)")


def gunicorn_listening(line: str) -> dict[str, str] | None:
    """gunicorn's own start line ("Listening at: http://127.0.0.1:40123 (pid)"): the address it bound."""
    found = GUNICORN_LISTENING.search(line)
    return found.groupdict() if found else None


def logged_fields(message: str, *keys: str) -> Callable[[str], dict[str, str] | None]:
    """An extractor for `Testbed.logged`: `keys` of the structured log line whose message is `message` (the line a
    service writes once it listens, with the addresses it bound)."""

    def extract(line: str) -> dict[str, str] | None:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("message") == message:
                return {key: str(entry[key]) for key in keys}
        return None

    extract.__name__ = repr(message)
    return extract


@dataclass(frozen=True)
class RouterAddresses:
    listen: str
    """Where the proxy takes requests."""
    admin: str
    """/healthz, /metrics, /v1/state."""


@dataclass(frozen=True)
class ReplicaSpec:
    port: int
    """0: the kernel picks a free port (`start_replica` returns the address it got)."""
    work_ms: float
    capacity: int = 1
    fail_ratio: float = 0.0
    host: str = HOST
    netns: str | None = None
    """Run inside this network namespace (`ip netns exec`), listening on `host` there."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Testbed:
    """Processes started here are stopped by `stop()` (or leaving the `running` context), whatever happened."""

    __test__ = False  # not a pytest test class, whatever its name says
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    replicas: dict[str, str] = field(default_factory=dict)
    """A started replica's address -> its process name."""
    serial: Iterator[int] = field(default_factory=itertools.count)
    """Numbers for process names, never reused within a testbed."""
    log_starts: dict[str, int] = field(default_factory=dict)
    """Where each process's output begins in its log: logs are appended to, and an earlier run in the same folder
    left lines (its listening address) that are not this process's."""

    def start(self, name: str, argv: list[str]) -> None:
        """Start `argv` as `name`, its output in `<log_dir>/<name>.log`."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = self.log_dir / f"{name}.log"
        self.log_starts[name] = log.stat().st_size if log.exists() else 0
        # A session of its own, so a kill reaches gunicorn's worker too, not only its master.
        self.processes[name] = processes.spawn(argv, log=log, env=env)

    def start_replica(self, spec: ReplicaSpec, *, threads: int = 256) -> str:
        """Start a replica and wait until it answers; returns its address (the port the kernel picked for port 0)."""
        name = f"replica-{spec.port or next(self.serial)}"
        inside = ["ip", "netns", "exec", spec.netns] if spec.netns else []
        self.start(
            name,
            [*inside, sys.executable, "-m", "netaware.workloads.commands", "serve", "--name", name,
             "--host", spec.host, "--port", str(spec.port), "--work-ms", str(spec.work_ms), "--capacity",
             str(spec.capacity), "--fail-ratio", str(spec.fail_ratio), "--threads", str(threads),
             "--payload-bytes", "256"],
        )  # fmt: skip
        address = spec.address if spec.port else self.logged(name, gunicorn_listening)["address"]
        wait_until_answering(f"http://{address}/healthz", self, name)
        self.replicas[address] = name
        return address

    def start_router(
        self,
        replicas: Sequence[str],
        policy: str,
        *extra: str,
        port: int = 0,
        admin_port: int = 0,
        wait_healthy: bool = True,
    ) -> RouterAddresses:
        """Start a router over `replicas` (none: `extra` says where they come from, e.g. `--service`) and wait
        until it listens, and unless `wait_healthy` is False until its /healthz is OK; port 0 (the default) lets the
        kernel pick."""
        name = f"router-{policy}-{port or next(self.serial)}"
        argv = [sys.executable, "-m", "netaware.router.commands", "proxy", "--listen", f"{HOST}:{port}",
                "--admin", f"{HOST}:{admin_port}", "--policy", policy, *extra]  # fmt: skip
        for replica in replicas:
            argv += ["--replica", replica]
        self.start(name, argv)
        serving = self.logged(name, logged_fields("router serving", "listen", "admin"))
        addresses = RouterAddresses(listen=serving["listen"], admin=serving["admin"])
        if wait_healthy:
            wait_until_answering(f"http://{addresses.admin}/healthz", self, name)
        return addresses

    def logged(
        self, name: str, extract: Callable[[str], dict[str, str] | None], timeout_s: float = 30.0
    ) -> dict[str, str]:
        """What `extract` finds in the first line of a process's log it recognises, waiting for that line."""
        log = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError), log.open("rb") as output:
                output.seek(self.log_starts.get(name, 0))
                for line in output.read().decode(errors="replace").splitlines():
                    if (found := extract(line)) is not None:
                        return found
            if (reason := self.exited(name)) is not None:
                raise RuntimeError(reason)
            time.sleep(0.05)
        raise TimeoutError(f"{name} logged no {extract.__name__} line within {timeout_s:.0f} s")

    def kill_replica(self, address: str) -> None:
        self.kill(self.replicas.pop(address))

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a replica's gunicorn worker): a crash, not a shutdown."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():  # all asked at once, then each waited for
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            processes.stop(process.pid, grace_s=5)
        self.processes.clear()

    def exited(self, name: str) -> str | None:
        """The last lines of a process's log if it has exited, else None."""
        process = self.processes[name]
        if process.poll() is None:
            return None
        lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return f"{name} exited with {process.returncode}:\n" + "\n".join(lines[-15:])


@contextlib.contextmanager
def running(log_dir: Path) -> Iterator[Testbed]:
    """A testbed whose processes are stopped on leaving, also when the caller is stopped with SIGTERM: they run in
    sessions of their own, so without this a benchmark killed mid-run left its replicas and routers running (and
    probing each other) behind it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    testbed = Testbed(log_dir)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    try:
        yield testbed
    finally:
        testbed.stop()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def wait_until_answering(url: str, testbed: Testbed, name: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).ok:
                return
        if (reason := testbed.exited(name)) is not None:
            raise RuntimeError(reason)
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not answer {url} within {timeout_s:.0f} s")


def drain(replicas: Sequence[str], timeout_s: float = 120.0) -> None:
    """Wait until no replica has a request in flight (an overloaded step leaves queues behind)."""
    deadline = time.monotonic() + timeout_s
    with requests.Session() as session:
        while time.monotonic() < deadline:
            busy = sum(session.get(f"http://{r}{PROBE_PATH}", timeout=5).json()["rif"] for r in replicas)
            if busy == 0:
                return
            time.sleep(0.2)
    raise TimeoutError(f"replicas still busy after {timeout_s:.0f} s")


@dataclass(frozen=True)
class RouterCounts:
    """A router's counters at one moment, from its /metrics; `since` gives what happened between two of them."""

    picks: dict[str, float]
    """Requests sent to each replica (retries included), counted when sent."""
    failed: float
    """Attempts that ended in an error (5xx, timeout, connection error)."""
    probes: float
    """Probes sent, whatever their outcome."""

    def since(self, earlier: RouterCounts) -> RouterCounts:
        return RouterCounts(
            picks={r: n - earlier.picks.get(r, 0.0) for r, n in self.picks.items()},
            failed=self.failed - earlier.failed,
            probes=self.probes - earlier.probes,
        )


def router_counts(admin_address: str) -> RouterCounts:
    metrics = f"http://{admin_address}/metrics"
    picks = counter_totals(metrics, "netaware_router_picks", ("replica",))
    attempts = counter_totals(metrics, "netaware_router_attempts", ("outcome",))
    probes = counter_totals(metrics, "netaware_router_probes", ())
    return RouterCounts(
        picks={replica: count for (replica,), count in picks.items()},
        failed=attempts.get(("error",), 0.0),
        probes=sum(probes.values()),
    )


def set_faults(replica: str, *, work_ms: float | None = None, fail_ratio: float | None = None) -> None:
    """Change a running replica's work time or failure ratio (the workload service's `PUT /v1/faults`)."""
    body = {"workMs": work_ms, "failRatio": fail_ratio}
    requests.put(
        f"http://{replica}/v1/faults", json={k: v for k, v in body.items() if v is not None}, timeout=5
    ).raise_for_status()


def attempts_per_replica(admin_address: str) -> dict[str, float]:
    """Attempts the router sent to each replica so far (from its /metrics)."""
    totals = counter_totals(f"http://{admin_address}/metrics", "netaware_router_attempts", ("replica",))
    return {replica: count for (replica,), count in totals.items()}
