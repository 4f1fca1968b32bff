"""`lab up`, `lab down`, `lab status` as functions: start the lab daemon detached and wait for it, stop it and sweep
what a crash left behind, read its status."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

from netaware import processes
from netaware.kube import api as kube
from netaware.kube.api import ApiException
from netaware.kube.clients import api_client
from netaware.kube.converters import GROUP, VERSION, ZONES_RESOURCE
from netaware.lab import installing
from netaware.lab.booting import NodeBootError, preflight, sweep
from netaware.lab.daemon import LabConfig, load_profile
from netaware.lab.emulating import remove_namespaces
from netaware.lab.kubeobjects import LAB_LABEL
from netaware.paths import controlplane_bin_dir
from netaware.processes import log_tail, port_in_use

UP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 15


DAEMON_MODULE = "netaware.lab"
"""What the daemon's command line runs: a pid from the pid file counts only while it still runs this."""


class LabError(RuntimeError):
    """A problem the user can act on."""


def _config_file(state_dir: Path) -> Path:
    return state_dir / "config.json"


def _log_file(state_dir: Path) -> Path:
    return state_dir / "lab.log"


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "lab.pid"


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int(_pid_file(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return pid if processes.alive(pid, DAEMON_MODULE) else None


def _tail(path: Path) -> str:
    return log_tail(path, LOG_TAIL_LINES)


def up(config: LabConfig, report: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, TUN devices, raw ICMP sockets)")
    if not config.kubeconfig.exists():
        raise LabError(f"no kubeconfig at {config.kubeconfig}: start the control plane first (netaware cluster up)")
    if not config.profile.exists():
        raise LabError(f"no link profile at {config.profile}")
    if _running_pid(config.state_dir) is not None:
        raise LabError(f"the lab is already up (pid {_running_pid(config.state_dir)}); `netaware lab down` first")
    if port_in_use(config.port):
        raise LabError(f"port {config.port} (the lab's status server) is in use; stop what listens there or set "
                       "NETAWARE_PORT_BASE to another base")  # fmt: skip
    if config.runtime == "kubelet" and config.prometheus:
        if not (controlplane_bin_dir() / "prometheus").exists():
            raise LabError(f"{controlplane_bin_dir() / 'prometheus'} is missing (run `make controlplane`, or "
                           "`lab up --no-prometheus`)")  # fmt: skip
        if port_in_use(config.prometheus_port):
            raise LabError(f"port {config.prometheus_port} (the lab's Prometheus) is in use; stop what listens "
                           "there or set NETAWARE_PORT_BASE to another base")  # fmt: skip
    if config.runtime == "kubelet":
        try:
            preflight(bin_dir=controlplane_bin_dir(), nodes=len(load_profile(config).nodes))
        except NodeBootError as error:
            raise LabError(str(error)) from None
    down(config.state_dir, config.kubeconfig, prefix=config.prefix)  # whatever a crashed run left
    config.state_dir.mkdir(parents=True, exist_ok=True)
    _config_file(config.state_dir).write_text(
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()})
    )
    # A session of its own: it outlives `lab up`, and Ctrl-C in this terminal does not reach it.
    process = processes.spawn(
        [sys.executable, "-m", DAEMON_MODULE, "--config", str(_config_file(config.state_dir))],
        log=_log_file(config.state_dir),
    )
    _pid_file(config.state_dir).write_text(str(process.pid))
    deadline = time.monotonic() + UP_TIMEOUT_S
    phase = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabError(
                f"the lab daemon exited ({process.returncode}); last log lines:\n{_tail(_log_file(config.state_dir))}"
            )
        with contextlib.suppress(requests.RequestException, ValueError):
            current = requests.get(f"http://127.0.0.1:{config.port}/healthz", timeout=2).json()["phase"]
            if current != phase:
                phase = current
                report(phase)
            if phase == "ready":
                return status(config.state_dir)
        time.sleep(0.3)
    raise LabError(
        f"the lab was not ready after {UP_TIMEOUT_S:.0f} s (phase {phase!r}); see {_log_file(config.state_dir)}"
    )


def _saved_config(state_dir: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(_config_file(state_dir).read_text())
        if isinstance(saved, dict):
            return saved
    return {}


def down(state_dir: Path, kubeconfig: Path | None, *, prefix: str | None = None) -> list[str]:
    """Stop the daemon (it removes its pods, Nodes, NetworkTopologies and namespaces), then remove whatever is left:
    namespaces `<prefix>-*` and the processes in them, Nodes labelled by the lab. Returns what was removed."""
    saved = _saved_config(state_dir)
    prefix = prefix or saved.get("prefix") or LabConfig.prefix
    removed = []
    pid = _running_pid(state_dir)
    if pid is not None:
        processes.stop(pid, DAEMON_MODULE, grace_s=STOP_TIMEOUT_S, group=False)  # it cleans up on SIGTERM
        removed.append(f"daemon {pid}")
    subnet = int(saved.get("subnet") or LabConfig.subnet)
    removed += sweep(prefix=prefix, subnet=subnet, state_dir=state_dir)  # real nodes' processes, mounts, cgroups
    removed += [f"namespace {name}" for name in remove_namespaces(prefix)]
    kubeconfig = kubeconfig or (Path(saved["kubeconfig"]) if saved.get("kubeconfig") else None)
    if kubeconfig is not None and kubeconfig.exists():
        overlay = state_dir / "telemetry"
        if (overlay / "kustomization.yaml").exists():  # what a crashed daemon installed: the DaemonSet and Deployment
            with contextlib.suppress(Exception):
                installing.uninstall(overlay, bin_dir=controlplane_bin_dir(), kubeconfig=kubeconfig)
                removed.append("telemetry (probe agents, aggregator)")
        removed += _delete_lab_nodes(kubeconfig, prefix)
    for path in (_pid_file(state_dir), state_dir / "lab.json", state_dir / "services.json"):
        path.unlink(missing_ok=True)
    return removed


def _delete_lab_nodes(kubeconfig: Path, prefix: str) -> list[str]:
    removed = []
    try:
        api = api_client(kubeconfig)
        core = kube.CoreV1Api(api)
        custom = kube.CustomObjectsApi(api)
        for node in core.list_node(label_selector=f"{LAB_LABEL}={prefix}", _request_timeout=5).items:
            name = str(node.metadata.name) if node.metadata else ""
            with contextlib.suppress(ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, "networktopologies", name)
            with contextlib.suppress(ApiException):
                core.delete_node(name)
                removed.append(f"node {name}")
        with contextlib.suppress(ApiException):  # the compact form's zone model, written by the lab's aggregator
            custom.delete_cluster_custom_object(GROUP, VERSION, "networktopologies", ZONES_RESOURCE)
    except Exception:  # the control plane may already be down: nothing of ours left there to remove
        return removed
    return removed


def status(state_dir: Path) -> dict[str, Any]:
    saved = _saved_config(state_dir)
    pid = _running_pid(state_dir)
    if pid is None or not saved:
        return {"running": False, "stateDir": str(state_dir)}
    try:
        result: dict[str, Any] = requests.get(f"http://127.0.0.1:{saved['port']}/v1/status", timeout=5).json()
    except (requests.RequestException, ValueError) as error:
        return {"running": True, "pid": pid, "stateDir": str(state_dir), "error": str(error)}
    return {"running": True, "stateDir": str(state_dir), **result}


def shape(state_dir: Path, change: dict[str, Any]) -> list[dict[str, Any]]:
    """Change running links' shapes (core.profiles.shape_change's words); the directed links changed, with their new
    shape. LabError when the lab is not running or refuses the change (the reason is the daemon's)."""
    saved = _saved_config(state_dir)
    if _running_pid(state_dir) is None or not saved:
        raise LabError(f"the lab is not running (state: {state_dir}); start it with `netaware lab up`")
    try:
        answer = requests.post(f"http://127.0.0.1:{saved['port']}/v1/shape", json=change, timeout=10)
        body = answer.json()
    except (requests.RequestException, ValueError) as error:
        raise LabError(f"the lab daemon did not answer: {error}") from None
    if answer.status_code != 200:
        raise LabError(str(body.get("error") or body))
    return list(body["changed"])
