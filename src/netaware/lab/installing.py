"""The real-node lab installs netaware's telemetry the way a user does: a kustomize overlay of its own over the
project's `aggregator/` and `probe-agent/` kustomizations (the same manifests, the same images), with the agents'
token generated into the lab's state folder (never the repository), applied server-side by kubectl. The probe-agent
DaemonSet then measures every node's shaped links, and the aggregator publishes them as NetworkTopology, round after
round, for as long as the lab runs: the lab no longer measures once itself.

The overlay changes one thing, the bandwidth budget: the relay carries every test, and an iperf3 flow takes a core of
this machine, so the lab tests each pair rarely (or never, with `bandwidth_seconds` 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import yaml

from netaware.kube import api as kube
from netaware.kube.converters import GROUP, NAMESPACE, PROBE_NAMESPACE, VERSION, parse_timestamp
from netaware.kube.watching import list_raw
from netaware.paths import REPO_ROOT

COMPONENTS = ("aggregator", "probe-agent")
NAMESPACES = "deploy/namespaces"
"""Applied with the components, never deleted with them: the control plane's `up` made them too (its scheduler's
ServiceAccount lives there), and a namespace being deleted refuses the next lab's objects until it is gone."""
BANDWIDTH_SLOT_S = 30
"""One bandwidth test per node at most every 30 s: a few percent of the time, away from the experiments' traffic."""
PUBLISHED_TIMEOUT_S = 180.0


class TelemetryError(RuntimeError):
    """The telemetry did not install or did not publish in time: the message says which, and where to look."""


def aggregator_command(
    *, bandwidth_seconds: float, slot_s: float = BANDWIDTH_SLOT_S, repo: Path = REPO_ROOT
) -> list[str]:
    """The aggregator's command as `aggregator/deployment.yaml` writes it, with the lab's bandwidth budget."""
    deployment = yaml.safe_load((repo / "aggregator" / "deployment.yaml").read_text())
    command = [str(word) for word in deployment["spec"]["template"]["spec"]["containers"][0]["command"]]
    budget = {
        "--bandwidth-slot": f"{slot_s:g}" if bandwidth_seconds > 0 else "0",
        "--bandwidth-seconds": str(max(1, round(bandwidth_seconds))),
    }
    for flag, value in budget.items():
        command[command.index(flag) + 1] = value
    return command


def write_overlay(folder: Path, *, bandwidth_seconds: float, repo: Path = REPO_ROOT) -> Path:
    """The lab's kustomization in `folder`: netaware's namespaces and `components/` (the telemetry, with its token
    file, made once), which is what `uninstall` removes; returns `folder`."""
    components = folder / "components"
    components.mkdir(parents=True, exist_ok=True)
    token = components / "token.env"
    if not token.exists():
        # Created 0600, never readable by others even for a moment.
        with os.fdopen(os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(f"token={secrets.token_hex(32)}\n")
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # Relative: kustomize refuses an absolute root.
        "resources": [os.path.relpath(repo / component, components) for component in COMPONENTS],
        # The aggregator's copy and the agents', as deploy/kustomization.yaml makes them.
        "secretGenerator": [{
            "name": "netaware-aggregator-token", "namespace": namespace, "envs": ["token.env"],
            "options": {"labels": {"app.kubernetes.io/name": "netaware-aggregator",
                                   "app.kubernetes.io/part-of": "netaware"}},
        } for namespace in (NAMESPACE, PROBE_NAMESPACE)],
        "patches": [{
            "target": {"kind": "Deployment", "name": "netaware-aggregator"},
            "patch": json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/command",
                                  "value": aggregator_command(bandwidth_seconds=bandwidth_seconds, repo=repo)}]),
        }],
    }  # fmt: skip
    (components / "kustomization.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    whole = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
             "resources": [os.path.relpath(repo / NAMESPACES, folder), "components"]}  # fmt: skip
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(whole, sort_keys=False))
    return folder


def kubectl(bin_dir: Path, kubeconfig: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def install(overlay: Path, *, bin_dir: Path, kubeconfig: Path) -> None:
    applied = kubectl(bin_dir, kubeconfig, "apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    if applied.returncode != 0:
        raise TelemetryError(f"kubectl apply -k {overlay} failed: {applied.stderr.strip()}")


def uninstall(overlay: Path, *, bin_dir: Path, kubeconfig: Path) -> None:
    """Remove the telemetry `install` applied (not the namespaces: see NAMESPACES); a control plane that is already
    gone leaves nothing to remove."""
    components = overlay / "components"
    if (components / "kustomization.yaml").exists():
        kubectl(bin_dir, kubeconfig, "delete", "--ignore-not-found", "--wait=false", "-k", str(components),
                timeout_s=60)  # fmt: skip


def _measured_since(link: dict[str, object], since_s: float) -> bool:
    measured_at = link.get("measuredAt")
    if link.get("source") != "measured" or not isinstance(measured_at, str):
        return False
    return parse_timestamp(measured_at, "measuredAt") >= since_s


def wait_published(
    api: kube.ApiClient, nodes: Iterable[str], *, since_s: float, timeout_s: float = PUBLISHED_TIMEOUT_S
) -> None:
    """Until the aggregator has published every directed link among `nodes` as measured after `since_s`."""
    names = list(nodes)
    custom = kube.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout_s
    missing: list[str] = names
    while time.monotonic() < deadline:
        missing = []
        for origin in names:
            links: list[dict[str, object]] = []
            with contextlib.suppress(kube.ApiException):  # not published yet
                resource = cast(
                    dict[str, Any], custom.get_cluster_custom_object(GROUP, VERSION, "networktopologies", origin)
                )
                links = resource["spec"]["links"]
            fresh = {link["destination"] for link in links if _measured_since(link, since_s)}
            missing += [f"{origin}->{d}" for d in names if d != origin and d not in fresh]
        if not missing:
            return
        time.sleep(2)
    raise TelemetryError(
        f"the aggregator had not published {len(missing)} link(s) as measured after {timeout_s:.0f} s "
        f"(first: {', '.join(missing[:3])}); pods: {pod_states(api) or 'none'}; see "
        f"`kubectl -n {NAMESPACE} logs deploy/netaware-aggregator` and `kubectl -n {PROBE_NAMESPACE} logs "
        "ds/netaware-probe`"
    )


def pod_states(api: kube.ApiClient) -> str:
    """One line on each telemetry pod: where it runs, its phase, and why a container waits or restarts."""
    states = []
    with contextlib.suppress(Exception):
        core = kube.CoreV1Api(api)
        pods: list[dict[str, Any]] = []
        for namespace in (NAMESPACE, PROBE_NAMESPACE):
            pods += list_raw(lambda namespace=namespace, **kw: core.list_namespaced_pod(
                namespace, label_selector="app.kubernetes.io/part-of=netaware", _request_timeout=5, **kw,
            )).get("items") or []  # fmt: skip
        for pod in pods:
            status = pod.get("status") or {}
            reasons = []
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting")
                if waiting:
                    reasons.append(f"{container['name']} {waiting.get('reason')}: {waiting.get('message', '')}".strip())
                if container.get("restartCount"):
                    reasons.append(f"{container['name']} restarted {container['restartCount']}x")
            where = (pod.get("spec") or {}).get("nodeName")
            states.append(f"{pod['metadata']['name']} on {where} {status.get('phase')} {'; '.join(reasons)}".strip())
    return ", ".join(states)
