"""The observation listener: a real `netaware-aggregator` (gunicorn, two listeners) answers reports on its serving
port and only health and metrics on its --metrics port, the way a NetworkPolicy and kubelet probes need; a
--metrics port that is not its own is refused with the reason before anything listens."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from netaware.serving import listen_address
from tests.conftest import LOOPBACK, unused_port

TOKEN = "serving-test-token"


def aggregator_command(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "netaware.aggregator", "--nodes", "a,b", "--journal", str(tmp_path / "journal"),
            "--host", LOOPBACK, *extra]  # fmt: skip


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[tuple[str, str]]:
    serving_port, metrics_port = unused_port(), unused_port()
    process = subprocess.Popen(
        aggregator_command(tmp_path, "--port", str(serving_port), "--metrics", f"{LOOPBACK}:{metrics_port}"),
        env={"NETAWARE_AGGREGATOR_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    served, observed = f"http://{LOOPBACK}:{serving_port}", f"http://{LOOPBACK}:{metrics_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{observed}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the aggregator did not answer on its metrics port within 30 s"
            time.sleep(0.1)
        yield served, observed
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_the_metrics_port_answers_health_and_metrics_and_nothing_else(aggregator: tuple[str, str]) -> None:
    served, observed = aggregator
    assert requests.get(f"{observed}/metrics", timeout=5).text.count("netaware_") > 0
    refused = requests.post(f"{observed}/v1/reports", json={}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert refused.status_code == 404 and "serves only" in refused.json()["error"], refused.text
    assert requests.get(f"{observed}/v1/topology", timeout=5).status_code == 404
    # The serving port keeps everything, health included.
    assert requests.get(f"{served}/v1/topology", timeout=5).status_code == 200
    assert requests.get(f"{served}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("metrics", ["PORT", "0", "70000", "nohost"])
def test_a_metrics_address_without_a_port_of_its_own_is_refused_with_the_reason(tmp_path: Path, metrics: str) -> None:
    port = unused_port()
    address = {"PORT": f"{LOOPBACK}:{port}", "0": f"{LOOPBACK}:0", "70000": f"{LOOPBACK}:70000"}.get(metrics, metrics)
    ran = subprocess.run(
        aggregator_command(tmp_path, "--port", str(port), "--metrics", address),
        env={"NETAWARE_AGGREGATOR_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert ran.returncode == 2 and "--metrics" in ran.stderr, ran.stderr
    assert not (tmp_path / "journal").exists()  # refused before anything started


def test_listen_addresses_parse_hosts_names_and_bracketed_ipv6() -> None:
    assert listen_address("0.0.0.0:9090") == ("0.0.0.0", 9090)
    assert listen_address("localhost:0") == ("localhost", 0)
    assert listen_address("[::1]:8080") == ("::1", 8080)
