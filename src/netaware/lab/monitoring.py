"""The lab's Prometheus: the real one (built from its Go module), scraping what a user's would.

Its configuration is `monitoring/prometheus.yaml`, the file a user takes to any cluster (pods found through the API
by their prometheus.io annotations), with what only the lab needs added: the kubeconfig (Prometheus runs on this
machine, not in a pod), a 5-s scrape interval (the lab's tests and experiments last minutes, not days), the
alerting rules by absolute path, and the control plane's own processes as static targets (kube-scheduler and the
netaware-scheduler profile's kube-scheduler with its extender run on this machine, not as pods). The machine routes
to every node and pod address over the lab's management network, so scrapes never cross the shaped links.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from netaware import processes
from netaware.lab.booting import make_cgroups, remove_cgroups
from netaware.paths import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
SCRAPE_INTERVAL = "5s"
READY_TIMEOUT_S = 60.0
CONTROL_PLANE_TARGETS = {
    # component in the control plane's cluster.json -> (job, scheme)
    "kube-scheduler": ("kube-scheduler", "https"),
    "netaware-scheduler": ("kube-scheduler", "https"),
    "extender": ("netaware-extender", "http"),
}


def control_plane_endpoints(cluster_state: Path) -> dict[str, str]:
    """Each control-plane component's endpoint, from the cluster's state file (`netaware cluster up` writes it)."""
    try:
        state = json.loads(cluster_state.read_text())
    except (OSError, ValueError):
        return {}
    return {str(c["name"]): str(c["endpoint"]) for c in state.get("components", [])}


def prometheus_config(*, kubeconfig: Path, cluster_state: Path, source: Path = MONITORING) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((source / "prometheus.yaml").read_text())
    config["global"] = {**config.get("global", {}), "scrape_interval": SCRAPE_INTERVAL,
                        "evaluation_interval": SCRAPE_INTERVAL}  # fmt: skip
    config["rule_files"] = [str(source / name) for name in config.get("rule_files", [])]
    for job in config["scrape_configs"]:
        for discovery in job.get("kubernetes_sd_configs", []):
            discovery["kubeconfig_file"] = str(kubeconfig)
    jobs: dict[str, dict[str, Any]] = {}
    for component, endpoint in sorted(control_plane_endpoints(cluster_state).items()):
        if component not in CONTROL_PLANE_TARGETS:
            continue
        name, scheme = CONTROL_PLANE_TARGETS[component]
        job = jobs.setdefault(name, {"job_name": name, "scheme": scheme, "static_configs": []})
        if scheme == "https":
            # kube-scheduler serves /metrics (allowed without a token here) with a certificate it signed itself at
            # start; there is no CA to check it against. Loopback only.
            job["tls_config"] = {"insecure_skip_verify": True}
        job["static_configs"].append({"targets": [urlsplit(endpoint).netloc], "labels": {"component": component}})
    config["scrape_configs"] += list(jobs.values())
    return config


class LabPrometheus:
    """One Prometheus process for the lab: started in its own cgroup under the lab's prefix (so a crashed lab's
    sweep stops it too), its data and log in the lab's state folder."""

    def __init__(self, *, binary: Path, folder: Path, port: int, prefix: str, config: dict[str, Any]):
        self.binary, self.folder, self.port, self.prefix, self.config = binary, folder, port, prefix, config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "prometheus.log"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={self.folder / 'prometheus.yaml'}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "prometheus.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        cgroups = make_cgroups(f"{self.prefix}-prometheus")
        self.process = processes.spawn(self.command(), log=self.log, cgroups=cgroups)
        processes.wait_until(
            self.ready, timeout_s=READY_TIMEOUT_S, what="the lab's Prometheus", process=self.process, log=self.log
        )

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process.pid, grace_s=10)
            processes.reap(self.process.pid)
            self.process = None
        remove_cgroups(f"{self.prefix}-prometheus")  # a straggler left in it is the sweep's
