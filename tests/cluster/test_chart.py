"""The Helm chart (charts/netaware), with helm built from its Go module, on a real control plane.

Checks: `helm lint` is clean; the chart's defaults render the same objects as `kubectl kustomize deploy/` (images,
commands, security contexts, RBAC rules, the scheduler's configuration; the static manifests are the same files), so
the two installs cannot drift apart; values reach the objects (cost weights, strategy, probe round and budget,
`ignorable`, image repository and tag, resources); the opt-in NetworkPolicy is the repository's, needs the nodes'
ranges and is accepted by the API server; installing the release into one of netaware's own namespaces is refused with
the reason; `helm install` creates every object (netaware's namespaces among them), an upgrade keeps the generated
token, and `helm uninstall` leaves nothing.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from netaware.kube.converters import NAMESPACE, PROBE_NAMESPACE
from netaware.lab.installing import pod_states
from tests.cluster.conftest import Cluster, apply_namespaces, kubectl, wait_for
from tests.cluster.test_deploy import FOLDERS, WORKLOADS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "netaware"
TOKEN = "0123456789abcdef"
HELM_LABELS = ("app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart")
SECRET_HASH = re.compile(r"netaware-aggregator-token-[a-z0-9]+")


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.settings.bin_dir / "helm"), f"--kubeconfig={cluster.status['kubeconfig']}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def documents(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """What both installs must agree on: everything but each installer's own bookkeeping (helm's labels and
    checksum annotations, kustomize's content hash in the Secret's name, Secret data vs stringData)."""
    document = copy.deepcopy(document)
    template = (document.get("spec") or {}).get("template") or {}
    for metadata in (document["metadata"], template.get("metadata") or {}):
        metadata.pop("annotations", None)
        for key in HELM_LABELS:
            (metadata.get("labels") or {}).pop(key, None)
    if document["kind"] == "Secret":
        encoded = document.pop("data", None) or {}
        document["stringData"] = document.get("stringData") or {
            k: base64.b64decode(v).decode() for k, v in encoded.items()
        }
    if document["kind"] == "ConfigMap":
        document["data"] = {key: yaml.safe_load(value) for key, value in document["data"].items()}
    return yaml.safe_load(SECRET_HASH.sub("netaware-aggregator-token", yaml.safe_dump(document)))  # type: ignore[no-any-return]


def by_kind_and_name(text: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
            for d in (comparable(d) for d in yaml.safe_load_all(text) if d)}  # fmt: skip


def test_helm_lint_is_clean(cluster: Cluster) -> None:
    linted = helm(cluster, "lint", "--strict", "--namespace=kube-system", str(CHART))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 chart(s) failed" in linted.stdout
    for problem in ("[WARNING]", "[ERROR]", "Fail:"):  # lint renders every template; a fail() would only be [INFO]
        assert problem not in linted.stdout + linted.stderr, linted.stdout + linted.stderr


def test_the_charts_defaults_are_the_kustomize_install(cluster: Cluster, tmp_path: Path) -> None:
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("token.env"))
    (tmp_path / "deploy" / "token.env").write_text(f"token={TOKEN}\n")
    kustomized = kubectl(cluster, "kustomize", str(tmp_path / "deploy"))
    assert kustomized.returncode == 0, kustomized.stderr
    templated = helm(
        cluster, "template", "netaware", str(CHART), "--namespace", "kube-system", "--set", f"token={TOKEN}"
    )
    assert templated.returncode == 0, templated.stderr
    expected = by_kind_and_name(kustomized.stdout)
    rendered = by_kind_and_name(templated.stdout)
    assert sorted(rendered) == sorted(expected)
    for key, document in expected.items():
        assert rendered[key] == document, key


def test_values_reach_the_objects(cluster: Cluster) -> None:
    templated = helm(cluster, "template", "netaware", str(CHART), "--namespace", "kube-system",
                     "--set", "extender.weights.latency=0.7,extender.weights.bandwidth=0.2,extender.weights.loss=0.1",
                     "--set", "extender.strategy=lookahead,extender.ignorable=true,probe.roundSeconds=30",
                     "--set", "probe.probesPerSecond=0,probe.peerLimit=8",
                     "--set", "image.repository=registry.example.test/team/netaware,image.tag=1.2.3",
                     "--set", "aggregator.resources.limits.memory=1Gi")  # fmt: skip
    assert templated.returncode == 0, templated.stderr
    objects = documents(templated.stdout)
    scheduler = objects[("Deployment", "netaware-scheduler")]["spec"]["template"]["spec"]["containers"]
    extender = next(c for c in scheduler if c["name"] == "extender")
    env = {e["name"]: e["value"] for e in extender["env"]}
    assert env == {"NETAWARE_EXTENDER_STRATEGY": "lookahead", "NETAWARE_EXTENDER_WEIGHTS": "0.7,0.2,0.1"}
    assert extender["image"] == "registry.example.test/team/netaware:1.2.3"
    config = yaml.safe_load(objects[("ConfigMap", "netaware-scheduler-config")]["data"]["kube-scheduler-config.yaml"])
    assert config["extenders"][0]["ignorable"] is True
    probe = objects[("DaemonSet", "netaware-probe")]["spec"]["template"]["spec"]["containers"][0]
    assert probe["command"][probe["command"].index("--round") + 1] == "30"
    assert probe["command"][probe["command"].index("--peer-limit") + 1] == "8"
    assert probe["command"][probe["command"].index("--probes-per-second") + 1] == "0"
    aggregator = objects[("Deployment", "netaware-aggregator")]["spec"]["template"]["spec"]["containers"][0]
    assert aggregator["resources"]["limits"]["memory"] == "1Gi"


def test_installing_the_release_into_netawares_own_namespace_is_refused_with_the_reason(cluster: Cluster) -> None:
    for namespace in (NAMESPACE, PROBE_NAMESPACE):
        templated = helm(cluster, "template", "netaware", str(CHART), "--namespace", namespace)
        assert templated.returncode != 0
        assert f"install the release outside {namespace}" in templated.stderr
        assert "creates netaware's namespaces" in templated.stderr


def test_the_network_policy_is_the_repositorys_needs_the_node_ranges_and_is_accepted(cluster: Cluster) -> None:
    without = helm(cluster, "template", "netaware", str(CHART), "--namespace", "kube-system",
                   "--set", "networkPolicy.enabled=true")  # fmt: skip
    assert without.returncode != 0 and "networkPolicy.nodeCIDRs" in without.stderr
    placeholder = helm(cluster, "template", "netaware", str(CHART), "--namespace", "kube-system",
                       "--set", "networkPolicy.enabled=true,networkPolicy.nodeCIDRs={NODE_CIDR}")  # fmt: skip
    assert placeholder.returncode == 0, placeholder.stderr
    policy = by_kind_and_name(placeholder.stdout)[("NetworkPolicy", NAMESPACE, "netaware-aggregator")]
    assert policy == comparable(yaml.safe_load((REPO / "aggregator/networkpolicy.yaml").read_text()))
    # Its ports are the aggregator's own port names: reports on http, probes and metrics on metrics.
    aggregator = documents(placeholder.stdout)[("Deployment", "netaware-aggregator")]
    names = {p["name"] for p in aggregator["spec"]["template"]["spec"]["containers"][0]["ports"]}
    ports = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert ports == names == {"http", "metrics"}
    ranges = helm(cluster, "template", "netaware", str(CHART), "--namespace", "kube-system", "--show-only",
                  "templates/networkpolicy.yaml", "--set",
                  "networkPolicy.enabled=true,networkPolicy.nodeCIDRs={10.0.0.0/16,192.168.0.0/24}")  # fmt: skip
    assert ranges.returncode == 0, ranges.stderr
    apply_namespaces(cluster)
    accepted = kubectl(cluster, "apply", "--dry-run=server", "-f", "-", stdin=ranges.stdout)
    assert accepted.returncode == 0, accepted.stderr
    peers = yaml.safe_load(ranges.stdout)["spec"]["ingress"][0]["from"]
    cidrs = [peer["ipBlock"]["cidr"] for peer in peers if "ipBlock" in peer]
    assert cidrs == ["10.0.0.0/16", "192.168.0.0/24"]


def netaware_objects(cluster: Cluster) -> str:
    listed = kubectl(cluster, "get", "all,secrets,configmaps,serviceaccounts,clusterroles,clusterrolebindings,"
                     "rolebindings,crds,networkpolicies,namespaces", "-A", "-o", "name")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    return "\n".join(line for line in listed.stdout.splitlines() if "netaware" in line)


def test_install_upgrade_uninstall(cluster: Cluster) -> None:
    # A user's cluster has none of netaware yet; the local one's `up` applied the CRDs, netaware's namespaces and the
    # scheduler's RBAC for its own scheduler process, which helm would refuse to adopt.
    for how, what in (("-k", "crds"), ("-f", "scheduler-extender/rbac.yaml"), ("-k", "deploy/namespaces")):
        removed = kubectl(cluster, "delete", "--wait=true", how, str(REPO / what))
        assert removed.returncode == 0, removed.stderr
    assert netaware_objects(cluster) == ""
    installed = helm(cluster, "install", "netaware", str(CHART), "--namespace", "kube-system")
    assert installed.returncode == 0, installed.stderr
    assert "schedulerName: netaware-scheduler" in installed.stdout  # NOTES.txt tells how to opt a pod in
    present = netaware_objects(cluster)
    for kind, name in WORKLOADS:
        assert f"{kind.lower()}.apps/{name}" in present, present
    assert "customresourcedefinition.apiextensions.k8s.io/appgroups.netaware.io" in present
    assert f"namespace/{NAMESPACE}" in present and f"namespace/{PROBE_NAMESPACE}" in present

    def token() -> str:
        copies = {
            base64.b64decode(cluster.core.read_namespaced_secret("netaware-aggregator-token", n).data["token"]).decode()
            for n in (NAMESPACE, PROBE_NAMESPACE)
        }
        assert len(copies) == 1, "the aggregator's token and the agents' differ"
        return copies.pop()

    # What the lab says about telemetry pods that do not publish: each pod, its node and phase.
    wait_for(lambda: "netaware-aggregator-" in pod_states(cluster.api), timeout_s=30, what="the aggregator's pod")
    assert all(" on " in line for line in pod_states(cluster.api).split(", "))
    first = token()
    assert len(first) == 64
    upgraded = helm(
        cluster, "upgrade", "netaware", str(CHART), "--namespace", "kube-system", "--set", "probe.probes=10"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert token() == first  # the agents and the aggregator keep talking across an upgrade
    uninstalled = helm(cluster, "uninstall", "netaware", "--namespace", "kube-system", "--wait")
    assert uninstalled.returncode == 0, uninstalled.stderr
    wait_for(lambda: netaware_objects(cluster) == "", timeout_s=60, what="nothing of netaware left")


@pytest.fixture(autouse=True)
def helm_built(cluster: Cluster) -> None:
    if not (cluster.settings.bin_dir / "helm").exists():
        pytest.fail("helm is not built: run `make controlplane` (hack/controlplane/build.sh)", pytrace=False)


def test_monitoring_renders_the_repositorys_rules_and_dashboard_only_when_asked(cluster: Cluster) -> None:
    plain = helm(cluster, "template", "netaware", str(CHART), "--namespace", "kube-system")
    assert plain.returncode == 0, plain.stderr
    assert not {"PrometheusRule", "PodMonitor"} & {kind for kind, _ in documents(plain.stdout)}
    templated = helm(cluster, "template", "netaware", str(CHART), "--namespace", "kube-system", "--set",
                     "monitoring.prometheusRule.enabled=true,monitoring.podMonitor.enabled=true,"
                     "monitoring.dashboard.enabled=true,monitoring.prometheusRule.labels.release=prom")  # fmt: skip
    assert templated.returncode == 0, templated.stderr
    objects = documents(templated.stdout)
    rule = objects[("PrometheusRule", "netaware")]
    assert rule["spec"]["groups"] == yaml.safe_load((REPO / "monitoring/rules.yaml").read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "prom"  # what an operator's ruleSelector matches on
    dashboard = objects[("ConfigMap", "netaware-dashboard")]
    assert json.loads(dashboard["data"]["netaware.json"]) == json.loads(
        (REPO / "monitoring/grafana-dashboard.json").read_text()
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    monitor = objects[("PodMonitor", "netaware")]["spec"]
    assert monitor["selector"]["matchLabels"] == {"app.kubernetes.io/part-of": "netaware"}
    # Every netaware pod's template names its metrics port as the PodMonitor does, and carries the scrape annotations.
    for (kind, name), document in objects.items():
        if kind in ("Deployment", "DaemonSet"):
            template = document["spec"]["template"]
            annotations = template["metadata"]["annotations"]
            ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert annotations["prometheus.io/scrape"] == "true", name
            assert int(annotations["prometheus.io/port"]) in ports.values(), name
            assert {e["port"] for e in monitor["podMetricsEndpoints"]} & set(ports), name
