"""netaware's monitoring files, checked by Prometheus' own promtool (built from its Go module like the control plane).

Checks: `monitoring/rules.yaml` is valid and its unit tests (`monitoring/rules-test.yaml`: each alert fires on the
series that should fire it, after its `for`, with its labels and text, and stays quiet on healthy ones) pass, and a
broken expectation fails them; every Grafana panel has a query and every query parses as PromQL; the lab's generated
Prometheus configuration (monitoring/prometheus.yaml with a kubeconfig and the control plane's static targets) passes
`promtool check config`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from netaware.lab.monitoring import MONITORING, prometheus_config
from netaware.paths import controlplane_bin_dir

pytestmark = pytest.mark.cluster
RATE_INTERVAL = "30s"
"""What Grafana's $__rate_interval stands for when a query runs outside Grafana (the lab scrapes every 5 s)."""


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    binary = controlplane_bin_dir() / "promtool"
    if not binary.exists():
        pytest.fail(f"no promtool at {binary}: run `make controlplane`", pytrace=False)
    return subprocess.run([str(binary), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard, with Grafana's variables filled in."""
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"SUCCESS: \d+ rules found", checked.stdout), checked.stdout
    tested = promtool("test", "rules", "rules-test.yaml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_a_wrong_expectation_fails_the_rule_tests(tmp_path: Path) -> None:
    shutil.copy(MONITORING / "rules.yaml", tmp_path / "rules.yaml")
    tests = (MONITORING / "rules-test.yaml").read_text().replace("loses 20% of", "loses 21% of")
    (tmp_path / "rules-test.yaml").write_text(tests)
    tested = promtool("test", "rules", "rules-test.yaml", cwd=tmp_path)
    assert tested.returncode != 0 and "NetawareProbeLoss" in tested.stdout + tested.stderr, tested.stdout


def test_every_panel_has_a_query_and_every_query_parses() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert all(panel["targets"] for panel in dashboard["panels"])
    queries = dashboard_queries()
    assert len(queries) >= len(dashboard["panels"])
    for title, query in queries:
        parsed = promtool("--experimental", "promql", "format", query)
        assert parsed.returncode == 0, f"{title}: {parsed.stderr}"


def test_the_labs_prometheus_configuration_passes_promtool(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "admin", "user": {"token": "t"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
    }))  # fmt: skip
    state = tmp_path / "cluster.json"
    state.write_text(json.dumps({"components": [
        {"name": "kube-scheduler", "endpoint": "https://127.0.0.1:16259"},
        {"name": "netaware-scheduler", "endpoint": "https://127.0.0.1:16269"},
        {"name": "extender", "endpoint": "http://127.0.0.1:16888"},
        {"name": "etcd", "endpoint": "http://127.0.0.1:16379"},
    ]}))  # fmt: skip
    config = prometheus_config(kubeconfig=kubeconfig, cluster_state=state)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert sorted(jobs) == ["kube-scheduler", "kubernetes-pods", "netaware-extender"]
    assert [t["targets"] for t in jobs["kube-scheduler"]["static_configs"]] == [
        ["127.0.0.1:16259"],
        ["127.0.0.1:16269"],
    ]
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config))
    checked = promtool("check", "config", str(tmp_path / "prometheus.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
