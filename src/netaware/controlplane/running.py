"""Starting, watching and stopping the local control plane's processes.

`up` records every process it starts (pid, binary, endpoint, log) in the state folder's cluster.json; `down`
stops exactly those processes (checking the pid still runs that binary, so a reused pid is never killed) and
removes the state. `up` over a previous run's state (a crash, a reboot) runs `down` first.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from netaware import processes
from netaware.controlplane.components import (
    Component,
    StatePaths,
    build_components,
    default_scheduler_config,
    netaware_scheduler_config,
)
from netaware.controlplane.pki import IDENTITIES, create_pki, write_kubeconfig
from netaware.controlplane.settings import NETAWARE_SCHEDULER_NAME, REGION, ZONES, ClusterSettings
from netaware.processes import log_tail, port_in_use

BINARIES = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kubelet", "kube-proxy", "kwok",
    "coredns", "helm",
)  # fmt: skip
SERVICE_ACCOUNT_TIMEOUT_S = 30.0


class ClusterError(RuntimeError):
    """A problem the user can act on: the message says what and where to look."""


@dataclass
class RunningComponent:
    name: str
    pid: int
    binary: str
    endpoint: str
    health_url: str
    log: str
    health_needs_token: bool = False
    argv: tuple[str, ...] = ()


Progress = Callable[[str, str], None]
"""progress(component, state) with state in starting / ready / applying ..."""


def _no_progress(component: str, state: str) -> None:
    pass


def ensure_binaries(settings: ClusterSettings) -> None:
    """Build the control plane from Go modules if a binary is missing (hack/controlplane/build.sh)."""
    if all((settings.bin_dir / b).exists() for b in BINARIES):
        return
    script = settings.bin_dir.parent / "build.sh"
    if not script.exists():
        missing = [b for b in BINARIES if not (settings.bin_dir / b).exists()]
        raise ClusterError(f"control plane binaries missing in {settings.bin_dir}: {', '.join(missing)}")
    if shutil.which("go") is None:
        raise ClusterError(
            "the control plane is not built and Go is not installed: install Go >= 1.24, then run "
            f"`bash {script}` (or `make controlplane`)"
        )
    result = subprocess.run(["bash", str(script)], check=False)
    if result.returncode != 0:
        raise ClusterError(f"building the control plane failed (exit {result.returncode}); see the output above")


def _check(component: RunningComponent, token: str | None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if component.health_needs_token and token else {}
    try:
        with warnings.catch_warnings():
            # Self-signed serving certs of loopback components (kube-scheduler, kube-controller-manager).
            warnings.simplefilter("ignore")
            response = requests.get(component.health_url, headers=headers, timeout=2, verify=False)
    except requests.RequestException:
        return False
    return response.status_code == 200


def _start(component: Component, paths: StatePaths) -> tuple[subprocess.Popen[bytes], RunningComponent]:
    process = processes.spawn(component.argv, log=paths.log(component.name))
    return process, RunningComponent(
        name=component.name,
        pid=process.pid,
        binary=component.argv[0],
        endpoint=component.endpoint,
        health_url=component.health_url,
        log=str(paths.log(component.name)),
        health_needs_token=component.health_needs_token,
        argv=component.argv,
    )


def _wait_ready(process: subprocess.Popen[bytes], running: RunningComponent, *, token: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _check(running, token):
        code = process.poll()
        if code is not None:
            raise ClusterError(
                f"{running.name} exited early (code {code}); last lines of {running.log}:\n"
                f"{log_tail(Path(running.log))}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{running.name} not ready after {timeout_s:.0f}s at {running.health_url}; "
                f"last lines of {running.log}:\n{log_tail(Path(running.log))}"
            )
        time.sleep(0.25)


def _save_state(paths: StatePaths, state: dict[str, Any]) -> None:
    temporary = paths.state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.replace(paths.state_file)  # atomic: a crash never leaves half a pid list


def load_state(settings: ClusterSettings) -> dict[str, Any] | None:
    paths = StatePaths(settings.state_dir)
    try:
        state: dict[str, Any] = json.loads(paths.state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def up(settings: ClusterSettings, progress: Progress = _no_progress) -> dict[str, Any]:
    """Start every component, wait until each reports ready, apply CRDs and RBAC; returns the status."""
    if settings.state_dir.exists():
        progress("cleanup", "stopping a previous run")
        down(settings)
    ensure_binaries(settings)
    components = build_components(settings, StatePaths(settings.state_dir))
    busy = [f"{c.name} ({c.endpoint})" for c in components if port_in_use(int(c.endpoint.rsplit(":", 1)[1]))]
    if busy:
        raise ClusterError(
            f"port in use: {', '.join(busy)}; stop what listens there or set NETAWARE_PORT_BASE to another base"
        )
    paths = StatePaths(settings.state_dir)
    for directory in (paths.root, paths.logs, paths.etcd_data):
        directory.mkdir(parents=True, exist_ok=True)
    pki = create_pki(paths.pki)
    server = f"https://127.0.0.1:{settings.port('kube-apiserver')}"
    for identity, (user, _groups) in IDENTITIES.items():
        write_kubeconfig(
            paths.kubeconfig(identity), server=server, ca_cert=pki.ca_cert, token=pki.tokens[identity], user=user
        )
    paths.netaware_scheduler_config.write_text(yaml.safe_dump(netaware_scheduler_config(settings, paths)))
    paths.default_scheduler_config.write_text(yaml.safe_dump(default_scheduler_config(settings, paths)))
    state: dict[str, Any] = {
        "kubeconfig": str(paths.admin_kubeconfig),
        "extenderUrl": f"http://127.0.0.1:{settings.port('extender')}",
        "schedulerName": NETAWARE_SCHEDULER_NAME,
        "extenderIgnorable": settings.extender_ignorable,
        "components": [],
    }
    try:
        for component in components:
            if component.name == "kube-controller-manager":
                progress("crds", "applying")
                _apply_crds_and_rbac(settings, paths)
                progress("crds", "ready")
            progress(component.name, "starting")
            process, running = _start(component, paths)
            state["components"].append(asdict(running))
            _save_state(paths, state)
            _wait_ready(process, running, token=pki.tokens["admin"], timeout_s=settings.ready_timeout_s)
            progress(component.name, "ready")
            if component.name == "kube-controller-manager":
                _wait_default_service_account(paths)
        if settings.fake_nodes:
            progress("fake-nodes", "creating")
            create_fake_nodes(paths.admin_kubeconfig, settings.fake_nodes)
            progress("fake-nodes", "ready")
    except ClusterError as error:
        down(settings, keep_logs=True)
        raise ClusterError(
            f"{error}\n(all component logs of this attempt are kept in {failed_logs_dir(settings)})"
        ) from None
    except BaseException:
        down(settings, keep_logs=True)
        raise
    return status(settings)


def failed_logs_dir(settings: ClusterSettings) -> Path:
    """Where `up` keeps the logs of a failed attempt (the state folder itself is removed)."""
    return settings.state_dir.with_name(settings.state_dir.name + "-failed-logs")


def _apply_crds_and_rbac(settings: ClusterSettings, paths: StatePaths) -> None:
    from netaware.kube.applying import apply_manifests, load_manifests, wait_for_crds_established
    from netaware.kube.clients import api_client

    api = api_client(paths.admin_kubeconfig)
    crds = load_manifests(sorted(settings.crd_dir.glob("*.yaml")))
    apply_manifests(api, crds)
    wait_for_crds_established(api, [c["metadata"]["name"] for c in crds])
    # The second scheduler's ServiceAccount lives in netaware's namespace, which comes first.
    apply_manifests(api, load_manifests([settings.namespaces_manifest, settings.rbac_manifest]))


def _wait_default_service_account(paths: StatePaths) -> None:
    """ServiceAccount admission refuses pods of a namespace until its `default` account exists; the controller
    manager creates it within moments of starting."""
    from netaware.kube import api as kube
    from netaware.kube.clients import api_client

    core = kube.CoreV1Api(api_client(paths.admin_kubeconfig))
    deadline = time.monotonic() + SERVICE_ACCOUNT_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(kube.ApiException):
            core.read_namespaced_service_account("default", "default", _request_timeout=5)
            return
        time.sleep(0.2)
    raise ClusterError(f"the `default` ServiceAccount did not appear within {SERVICE_ACCOUNT_TIMEOUT_S:.0f}s")


def fake_node_manifest(index: int) -> dict[str, Any]:
    """A kwok-managed Node in zone `index % 3` (topology.kubernetes.io labels), 32 CPUs, 256 GiB, 110 pods."""
    zone = ZONES[index % len(ZONES)]
    name = f"kwok-{zone}-{index:04d}"
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": zone,
                "topology.kubernetes.io/region": REGION,
            },
        },
        # No kwok taint: every node of the local cluster is fake, so pods need no toleration.
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def create_fake_nodes(kubeconfig: Path, count: int, *, start: int = 0) -> list[str]:
    from netaware.kube import api as kube
    from netaware.kube.clients import api_client

    core = kube.CoreV1Api(api_client(kubeconfig))
    names = []
    for index in range(start, start + count):
        manifest = fake_node_manifest(index)
        with kube.existing_ok():  # already there: keep it (any other refusal is an error to see)
            core.create_node(manifest)  # type: ignore[arg-type]  # the client accepts plain dicts
        names.append(manifest["metadata"]["name"])
    return names


def down(settings: ClusterSettings, *, keep_logs: bool = False) -> list[str]:
    """Stop exactly the processes `up` recorded, newest first, and remove the state folder."""
    state = load_state(settings) or {"components": []}
    stopped = []
    for component in reversed(state["components"]):
        processes.stop(component["pid"], component["binary"])
        stopped.append(component["name"])
    if settings.state_dir.exists():
        if keep_logs:
            logs = settings.state_dir / "logs"
            keep = failed_logs_dir(settings)
            shutil.rmtree(keep, ignore_errors=True)
            if logs.exists():
                shutil.copytree(logs, keep)
        shutil.rmtree(settings.state_dir, ignore_errors=True)
    return stopped


def restart_component(settings: ClusterSettings, name: str) -> dict[str, Any]:
    """Stop one component and start it again with the same command line; wait until it is ready."""
    paths = StatePaths(settings.state_dir)
    state = load_state(settings)
    if state is None:
        raise ClusterError(f"no cluster state in {settings.state_dir}: run `netaware cluster up` first")
    entries = [c for c in state["components"] if c["name"] == name]
    if not entries:
        raise ClusterError(f"unknown component {name!r}")
    entry = entries[0]
    processes.stop(entry["pid"], entry["binary"])
    component = Component(
        name=name,
        argv=tuple(entry["argv"]),
        endpoint=entry["endpoint"],
        health_url=entry["health_url"],
        health_needs_token=entry["health_needs_token"],
    )
    process, running = _start(component, paths)
    state["components"] = [asdict(running) if c["name"] == name else c for c in state["components"]]
    _save_state(paths, state)
    token = yaml.safe_load(Path(state["kubeconfig"]).read_text())["users"][0]["user"]["token"]
    _wait_ready(process, running, token=token, timeout_s=settings.ready_timeout_s)
    return status(settings)


def status(settings: ClusterSettings) -> dict[str, Any]:
    state = load_state(settings)
    if state is None:
        return {"running": False, "components": [], "stateDir": str(settings.state_dir)}
    token = None
    with contextlib.suppress(Exception):
        token = yaml.safe_load(Path(state["kubeconfig"]).read_text())["users"][0]["user"]["token"]
    components = []
    for entry in state["components"]:
        running = RunningComponent(**{**entry, "argv": tuple(entry.get("argv", ()))})
        alive = processes.alive(running.pid, running.binary)
        components.append(
            {
                "name": running.name,
                "pid": running.pid,
                "endpoint": running.endpoint,
                "state": ("ready" if _check(running, token) else "not-ready") if alive else "exited",
                "log": running.log,
            }
        )
    return {
        "running": bool(components) and all(c["state"] == "ready" for c in components),
        "components": components,
        "kubeconfig": state["kubeconfig"],
        "extenderUrl": state["extenderUrl"],
        "schedulerName": state["schedulerName"],
        "extenderIgnorable": state.get("extenderIgnorable", False),
        "stateDir": str(settings.state_dir),
    }


@contextlib.contextmanager
def running_cluster(settings: ClusterSettings, progress: Progress = _no_progress) -> Iterator[dict[str, Any]]:
    """`up` on entry, `down` on exit (also on errors and Ctrl-C)."""
    try:
        yield up(settings, progress)
    finally:
        down(settings)
