"""`kubectl apply -k deploy/`: all of netaware in one install, on a real control plane.

Checks: deploy/ renders every component (netaware's two namespaces, CRDs, probe-agent DaemonSet, aggregator, second
scheduler with its extender, AviatorPolicy controller) with the token Secret generated from a git-ignored file, one copy
per namespace, and both of its users pointing at the generated name; no token is committed; without the token file the
render fails naming that file; applied with server-side apply, every object is there, the API server's PodSecurity
admission admits every pod under its namespace's standard (restricted without a warning; the probe agent with
warnings naming its host network and NET_RAW and nothing else) and refuses the probe agent's pod in the restricted
namespace; and `kubectl delete -k` leaves none of them behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from netaware.kube.converters import NAMESPACE, PROBE_NAMESPACE
from tests.cluster.conftest import Cluster, kubectl, wait_for

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("deploy", "crds", "aggregator", "probe-agent", "scheduler-extender", "router")
WORKLOADS = {("Deployment", "netaware-aggregator"), ("Deployment", "netaware-scheduler"),
             ("Deployment", "netaware-aviator"), ("DaemonSet", "netaware-probe")}  # fmt: skip


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A copy of the manifests with a token file, as a user makes it (the repository's own stays untouched)."""
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("token.env"))
    (tmp_path / "deploy" / "token.env").write_text("token=0123456789abcdef\n")
    return tmp_path / "deploy"


def render(cluster: Cluster, folder: Path) -> subprocess.CompletedProcess[str]:
    return kubectl(cluster, "kustomize", str(folder))


def test_deploy_renders_every_component_with_a_generated_token(cluster: Cluster, manifests: Path) -> None:
    rendered = render(cluster, manifests)
    assert rendered.returncode == 0, rendered.stderr
    documents: list[dict[str, Any]] = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert kinds >= WORKLOADS
    assert {name for kind, name in kinds if kind == "CustomResourceDefinition"} == {
        "appgroups.netaware.io", "aviatorpolicies.netaware.io", "networktopologies.netaware.io"}  # fmt: skip
    secrets = [d for d in documents if d["kind"] == "Secret"]
    assert sorted(d["metadata"]["namespace"] for d in secrets) == [NAMESPACE, PROBE_NAMESPACE]
    assert len({yaml.safe_dump(d["data"]) for d in secrets}) == 1  # the same token in both
    (name,) = {d["metadata"]["name"] for d in secrets}
    assert name.startswith("netaware-aggregator-token-")  # named by a hash of its content
    users = [d for d in documents if d["kind"] in ("Deployment", "DaemonSet") and name in yaml.safe_dump(d)]
    assert {d["metadata"]["name"] for d in users} == {"netaware-aggregator", "netaware-probe"}
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "netaware" for d in documents)
    tracked = subprocess.run(["git", "ls-files", "deploy"], cwd=REPO, capture_output=True, text=True, check=True)
    assert "token.env" not in tracked.stdout  # generated, never committed


def test_without_the_token_file_the_render_names_it(cluster: Cluster, manifests: Path) -> None:
    (manifests / "token.env").unlink()
    rendered = render(cluster, manifests)
    assert rendered.returncode != 0
    assert "token.env" in rendered.stderr


def test_apply_then_delete_leaves_nothing(cluster: Cluster, manifests: Path) -> None:
    applied = kubectl(cluster, "apply", "--server-side", "-k", str(manifests))
    assert applied.returncode == 0, applied.stderr
    listed = kubectl(cluster, "get", "deployments,daemonsets,secrets,services", "-A",
                     "-l", "app.kubernetes.io/part-of=netaware", "-o", "name")  # fmt: skip
    for kind, name in WORKLOADS:
        assert f"{kind.lower()}.apps/{name}" in listed.stdout, listed.stdout
    check_pod_security(cluster, manifests)
    deleted = kubectl(cluster, "delete", "-k", str(manifests), "--wait=true")
    assert deleted.returncode == 0, deleted.stderr

    def nothing_left() -> bool:
        left = kubectl(cluster, "get", "all,secrets,configmaps,serviceaccounts,clusterroles,clusterrolebindings,"
                       "rolebindings,crds,namespaces", "-A", "-l", "app.kubernetes.io/part-of=netaware",
                       "-o", "name")  # fmt: skip
        return left.returncode == 0 and left.stdout.strip() == ""

    wait_for(nothing_left, timeout_s=60, what="nothing of netaware left")


def dry_run_pod(cluster: Cluster, workload: dict[str, Any], *, namespace: str, account: str | None = None) -> Any:
    """Create the workload's pod with a server-side dry run: admission (PodSecurity among it) judges it, nothing
    runs. Returns kubectl's result (warnings on stderr)."""
    template = workload["spec"]["template"]
    spec = {**template["spec"], **({"serviceAccountName": account} if account else {})}
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": spec,
           "metadata": {"name": f"{workload['metadata']['name']}-psa", "namespace": namespace,
                        "labels": template["metadata"]["labels"]}}  # fmt: skip
    return kubectl(cluster, "create", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(pod))


def violations(message: str, standard: str) -> set[str]:
    """The checks a PodSecurity message names, e.g. {"host namespaces", "hostPort"}."""
    found = re.search(rf'PodSecurity "{standard}:latest": (.*)', message)
    assert found, message
    return {item.split(" (")[0] for item in re.split(r"\), ", found.group(1).strip())}


def check_pod_security(cluster: Cluster, manifests: Path) -> None:
    rendered = [d for d in yaml.safe_load_all(render(cluster, manifests).stdout) if d]
    labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in rendered if d["kind"] == "Namespace"}
    assert labels[NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[PROBE_NAMESPACE]["pod-security.kubernetes.io/warn"] == "baseline"
    workloads = {d["metadata"]["name"]: d for d in rendered if d["kind"] in ("Deployment", "DaemonSet")}
    for name, workload in workloads.items():
        namespace = workload["metadata"]["namespace"]
        created = dry_run_pod(cluster, workload, namespace=namespace)
        assert created.returncode == 0, (name, created.stderr)
        if namespace == NAMESPACE:
            assert "PodSecurity" not in created.stderr, (name, created.stderr)  # restricted, not even a warning
        else:
            # Admitted, and warned at baseline of exactly what it needs: the host network (with the host ports it
            # implies) and NET_RAW.
            departures = violations(created.stderr, "baseline")
            assert departures == {"host namespaces", "hostPort", "non-default capabilities"}, created.stderr
            assert '"NET_RAW"' in created.stderr
    # The restricted namespace enforces: the probe agent's pod (root, host network, NET_RAW) is refused there.
    refused = dry_run_pod(cluster, workloads["netaware-probe"], namespace=NAMESPACE, account="netaware-aggregator")
    assert refused.returncode != 0
    assert {"host namespaces", "runAsNonRoot != true"} <= violations(refused.stderr, "restricted"), refused.stderr
