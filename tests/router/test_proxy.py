"""The latency router as a reverse proxy, with real processes on loopback (`netaware-router proxy`, the dummy
workload service as replicas, an echo server) and real HTTP.

Checks: method, path, query, body and end-to-end headers reach the replica, hop-by-hop headers (and those the
Connection field names) do not, and X-Forwarded-For is added; the replica's status and body come back; a replica
killed mid-run (SIGKILL) loses no idempotent request (GETs are retried on another replica); a POST to a dead
replica is not retried and is answered 502 with the reason; a replica that answers 503 at once receives a small
share of Prequal's traffic (error aversion, no sinkholing) while clients see no error; /healthz, /metrics and
/v1/state answer on the admin port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import uvloop

from netaware.core.balancing import make_balancer
from netaware.router.loadgen import open_loop
from netaware.router.proxy import Router
from netaware.router.testbed import HOST, ReplicaSpec, Testbed, attempts_per_replica, running
from tests.conftest import unused_port

pytestmark = pytest.mark.processes


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": self.rfile.read(length).decode(),
        }
        payload = json.dumps(body).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Replica", "echo")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 (http.server's names)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def testbed(tmp_path: Path) -> Iterator[Testbed]:
    with running(tmp_path / "logs") as bed:
        yield bed


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer((HOST, 0), Echo)  # the kernel picks the port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"{HOST}:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_requests_are_forwarded_faithfully(testbed: Testbed, echo: str) -> None:
    router = testbed.start_router([echo], "prequal")
    answer = requests.post(
        f"http://{router.listen}/orders/7?expand=items&x=1",
        data="hello",
        headers={"X-Trace": "abc", "Connection": "keep-alive, X-Secret", "Keep-Alive": "timeout=5", "X-Secret": "hop"},
        timeout=5,
    )
    assert answer.status_code == 201
    assert answer.headers["X-Replica"] == "echo"
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/orders/7?expand=items&x=1", "hello")
    assert seen["headers"]["x-trace"] == "abc"
    assert "keep-alive" not in seen["headers"]
    assert "x-secret" not in seen["headers"]  # named by Connection: for this hop only
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["host"] == echo


def test_the_router_as_a_client_library(echo: str) -> None:
    dead = f"{HOST}:{unused_port()}"

    async def use() -> tuple[list[int], list[str], int, int]:
        router = Router([echo, dead], make_balancer("round-robin"))
        await router.start()
        try:
            answers = [await router.send("GET", f"/item/{i}") for i in range(4)]
            # Round-robin sends the next request to the dead replica: a POST is not retried.
            while router.balancer.choose(router.replicas, now_s=0) != echo:
                pass
            posted = await router.send("POST", "/", body=b"once")
        finally:
            await router.close()
        retries = int(router.registry.get_sample_value("netaware_router_retries_total") or 0)
        return [a.status for a in answers], [json.loads(a.body)["path"] for a in answers], posted.status, retries

    statuses, paths, posted, retries = uvloop.run(use())
    assert statuses == [200] * 4 and paths == [f"/item/{i}" for i in range(4)]
    assert retries >= 2  # the GETs whose turn fell on the dead replica were retried on the echo
    assert posted == 502


def test_admin_port_answers_health_metrics_and_state(testbed: Testbed, echo: str) -> None:
    router = testbed.start_router([echo], "least-request")
    requests.get(f"http://{router.listen}/", timeout=5).raise_for_status()
    admin = f"http://{router.admin}"
    health = requests.get(f"{admin}/healthz", timeout=5).json()
    assert health == {"status": "ok", "policy": "least-request", "replicas": 1}
    assert 'netaware_router_requests_total{code="200"} 1.0' in requests.get(f"{admin}/metrics", timeout=5).text
    assert requests.get(f"{admin}/v1/state", timeout=5).json()["replicas"] == [echo]


@pytest.mark.parametrize("policy", ["prequal", "round-robin"])
def test_a_replica_killed_mid_run_loses_no_idempotent_request(testbed: Testbed, policy: str) -> None:
    replicas = [testbed.start_replica(ReplicaSpec(port=0, work_ms=10.0, capacity=4), threads=32) for _ in range(4)]
    router = testbed.start_router(replicas, policy, "--seed", "1")
    victim = replicas[0]
    killer = threading.Timer(2.0, testbed.kill_replica, args=[victim])
    killer.start()
    report = uvloop.run(open_loop(f"http://{router.listen}/", rate_per_s=100, duration_s=5, seed=3))
    killer.join()
    assert report.errors == 0, report.error_samples
    assert report.requests > 400
    metrics = requests.get(f"http://{router.admin}/metrics", timeout=5).text
    failed_on_victim = f'netaware_router_attempts_total{{outcome="error",replica="{victim}"}}'
    if policy == "round-robin":  # round-robin keeps sending the dead replica its turn: every one was retried
        assert failed_on_victim in metrics
        retries = next(line for line in metrics.splitlines() if line.startswith("netaware_router_retries_total"))
        assert float(retries.split()[-1]) > 10


def test_a_post_to_a_dead_replica_is_not_retried(testbed: Testbed) -> None:
    dead = f"{HOST}:{unused_port()}"  # nothing listens here
    router = testbed.start_router([dead], "round-robin")
    answer = requests.post(f"http://{router.listen}/", data="x", timeout=5)
    assert answer.status_code == 502
    assert answer.json()["tried"] == [dead]
    assert dead in answer.json()["error"]


def test_a_replica_failing_fast_gets_a_small_share(testbed: Testbed) -> None:
    replicas = [testbed.start_replica(ReplicaSpec(port=0, work_ms=10.0, capacity=4, fail_ratio=1.0 if i == 0 else 0.0),
                                      threads=32) for i in range(4)]  # fmt: skip
    router = testbed.start_router(replicas, "prequal", "--seed", "2")
    report = uvloop.run(open_loop(f"http://{router.listen}/", rate_per_s=100, duration_s=5, seed=4))
    attempts = attempts_per_replica(router.admin)
    failing = replicas[0]
    share = attempts.get(failing, 0.0) / sum(attempts.values())
    # Uniform spreading would send it 25%; fail-fast with the lowest latency estimate would attract more.
    assert share < 0.05, attempts
    assert attempts.get(failing, 0.0) >= 1  # it was tried, found failing, and then avoided
    assert report.errors == 0, report.error_samples  # its 503s were retried elsewhere
