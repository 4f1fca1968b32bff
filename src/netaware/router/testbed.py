"""Real processes on loopback for the router's benchmark and tests: replicas (the dummy workload service, each with
its own capacity) and routers (`netaware-router proxy`), started, waited for, drained and stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from netaware import processes
from netaware.router.replica import PROBE_PATH

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReplicaSpec:
    port: int
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

    def start(self, name: str, argv: list[str]) -> None:
        """Start `argv` as `name`, its output in `<log_dir>/<name>.log`."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A session of its own, so a kill reaches gunicorn's worker too, not only its master.
        self.processes[name] = processes.spawn(argv, log=self.log_dir / f"{name}.log", env=env)

    def start_replica(self, spec: ReplicaSpec, *, threads: int = 256) -> None:
        inside = ["ip", "netns", "exec", spec.netns] if spec.netns else []
        self.start(
            f"replica-{spec.port}",
            [*inside, sys.executable, "-m", "netaware.workloads.commands", "serve", "--name", f"replica-{spec.port}",
             "--host", spec.host, "--port", str(spec.port), "--work-ms", str(spec.work_ms), "--capacity",
             str(spec.capacity), "--fail-ratio", str(spec.fail_ratio), "--threads", str(threads),
             "--payload-bytes", "256"],
        )  # fmt: skip
        wait_until_answering(f"http://{spec.address}/healthz", self, f"replica-{spec.port}")

    def start_router(self, port: int, admin_port: int, replicas: Sequence[str], policy: str, *extra: str) -> None:
        argv = [sys.executable, "-m", "netaware.router.commands", "proxy", "--listen", f"{HOST}:{port}",
                "--admin", f"{HOST}:{admin_port}", "--policy", policy, *extra]  # fmt: skip
        for replica in replicas:
            argv += ["--replica", replica]
        self.start(f"router-{policy}-{port}", argv)
        wait_until_answering(f"http://{HOST}:{admin_port}/healthz", self, f"router-{policy}-{port}")

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
    log_dir.mkdir(parents=True, exist_ok=True)
    testbed = Testbed(log_dir)
    try:
        yield testbed
    finally:
        testbed.stop()


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


def attempts_per_replica(admin_address: str) -> dict[str, float]:
    """Attempts the router sent to each replica so far (from its /metrics)."""
    counts: dict[str, float] = {}
    text = requests.get(f"http://{admin_address}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "netaware_router_attempts":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    replica = sample.labels["replica"]
                    counts[replica] = counts.get(replica, 0.0) + sample.value
    return counts
