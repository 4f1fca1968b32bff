"""`netaware cluster up | status | down` as a user runs them (subprocesses).

Checks: status --json lists every component with pid, endpoint and state, the kubeconfig and the extender URL;
`up` over a crashed run (a component killed -9) cleans up first and comes up again; `down` leaves no process
and no listening port and removes the state folder; a busy port and a component that exits early fail `up`
with a clear message (the latter with its last log lines).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

COMPONENTS = [
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "extender", "netaware-scheduler", "kwok",
]  # fmt: skip


def netaware(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netaware.cli", "cluster", *args],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env},
    )  # fmt: skip


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (it holds no port); /proc says Z.
    return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"NETAWARE_STATE_DIR": str(tmp_path / "state"), "NETAWARE_PORT_BASE": "25000", "COLUMNS": "200"}


def test_up_status_crash_up_again_then_down_leaves_nothing(env: dict[str, str]) -> None:
    up = netaware("up", "--fake-nodes", "3", env=env)
    assert up.returncode == 0, up.stderr[-3000:]
    status = json.loads(netaware("status", "--json", env=env).stdout)
    assert [c["name"] for c in status["components"]] == COMPONENTS
    assert all(c["state"] == "ready" for c in status["components"])
    assert status["extenderUrl"] == "http://127.0.0.1:25888"
    assert Path(status["kubeconfig"]).exists()

    os.killpg(status["components"][1]["pid"], signal.SIGKILL)  # kube-apiserver crashes
    assert netaware("status", env=env).returncode == 1  # not running any more

    again = netaware("up", env=env)  # cleans the crashed run up first
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(netaware("status", "--json", env=env).stdout)
    pids = [c["pid"] for c in second["components"]] + [c["pid"] for c in status["components"]]
    ports = [int(c["endpoint"].rsplit(":", 1)[1]) for c in second["components"]]

    down = netaware("down", env=env)
    assert down.returncode == 0
    assert [pid for pid in pids if alive(pid)] == []
    assert [port for port in ports if listening(port)] == []
    assert not Path(env["NETAWARE_STATE_DIR"]).exists()


def test_a_busy_port_is_reported(env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 25443))
        squatter.listen()
        result = netaware("up", env=env)
    assert result.returncode == 1
    assert "port in use: kube-apiserver (https://127.0.0.1:25443)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_component_that_exits_early_is_reported_with_its_log(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken-scheduler-config.yaml"
    broken.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles: 7\n")
    result = netaware("up", env={**env, "NETAWARE_SCHEDULER_CONFIG": str(broken)})
    assert result.returncode == 1
    assert "netaware-scheduler exited early" in result.stderr
    assert "Traceback" not in result.stderr
    kept = Path(env["NETAWARE_STATE_DIR"] + "-failed-logs")
    assert f"kept in {kept}" in result.stderr.replace("\n", "")
    assert "profiles" in (kept / "netaware-scheduler.log").read_text()  # the reason is in the kept log
    assert not listening(25443)  # everything started before it was stopped again


def test_missing_binaries_without_go_say_what_to_install(env: dict[str, str], tmp_path: Path) -> None:
    hack = tmp_path / "controlplane"
    (hack / "bin").mkdir(parents=True)
    (hack / "build.sh").write_text("#!/bin/sh\nexit 1\n")
    no_go_path = ":".join(p for p in os.environ["PATH"].split(":") if not (Path(p) / "go").exists())
    result = netaware("up", env={**env, "NETAWARE_CONTROLPLANE_BIN": str(hack / "bin"), "PATH": no_go_path})
    assert result.returncode == 1
    assert "Go is not installed" in result.stderr and "Traceback" not in result.stderr
