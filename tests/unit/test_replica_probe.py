"""Replica-side probing: the latency estimator (median at similar RIF) and the WSGI middleware over real HTTP.

Checks: the estimate is the median of samples at the same RIF, widening the band when few are similar; with no
samples it is 0; the probe endpoint reports requests in flight while slow requests run (so it does not queue
behind them), and afterwards reports a latency estimate close to the real service time; health checks pass
through without changing the estimate (a fresh replica stays at 0 ms until real traffic reaches it).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from flask import Flask
from werkzeug.serving import make_server

from netaware.core.selection import LatencyEstimator
from netaware.router.replica import CALLER_HEADER, PROBE_PATH, ProbeMiddleware


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param([], (0.0, 0.0), id="no samples: 0"),
        pytest.param([(0, 10.0), (0, 30.0), (0, 20.0), (0, 40.0), (0, 50.0)], (30.0, 0.0), id="one RIF: its median"),
        pytest.param([(0, 40.0)] * 5 + [(1, 80.0)] * 5 + [(2, 120.0)] * 5, (40.0, 40.0), id="one slot: +40 ms each"),
        pytest.param(
            [(0, 40.0)] * 4 + [(0, 5000.0)] + [(1, 80.0)] * 5, (40.0, 40.0), id="a slow outlier does not tilt it"
        ),
        pytest.param([(0, 50.0)] * 5 + [(3, 20.0)] * 5, (35.0, 0.0), id="never below flat: the slope is at least 0"),
    ],
)
def test_latency_line(samples: list[tuple[int, float]], expected: tuple[float, float]) -> None:
    estimator = LatencyEstimator()
    for r, latency in samples:
        estimator.record(rif_at_arrival=r, latency_ms=latency)
    assert estimator.line() == pytest.approx(expected)


def test_the_window_keeps_only_recent_samples() -> None:
    estimator = LatencyEstimator(window=3)
    for latency in (1.0, 2.0, 100.0, 100.0, 100.0):
        estimator.record(rif_at_arrival=0, latency_ms=latency)
    assert estimator.line() == (100.0, 0.0)


WORK_S = 0.2


@pytest.fixture
def replica() -> Iterator[tuple[str, ProbeMiddleware]]:
    app = Flask("replica")

    @app.get("/work")
    def work() -> str:
        time.sleep(WORK_S)
        return "done"

    @app.get("/healthz")
    def healthz() -> str:
        time.sleep(WORK_S / 4)  # slower than nothing, faster than the work: a timed health check would show
        return "ok"

    middleware = ProbeMiddleware(app.wsgi_app)  # type: ignore[arg-type]
    app.wsgi_app = middleware  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", middleware
    server.shutdown()
    thread.join(timeout=5)


def get(url: str, caller: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={CALLER_HEADER: caller} if caller else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read()  # type: ignore[no-any-return]


def test_probe_reports_load_at_once_and_then_the_latency(replica: tuple[str, ProbeMiddleware]) -> None:
    url, middleware = replica
    assert json.loads(get(url + PROBE_PATH)) == {"rif": 0, "latencyMs": 0.0, "perRequestMs": 0.0, "yours": 0}
    callers = ("router-a", "router-a", "router-b", None)  # three named, one not
    workers = [threading.Thread(target=get, args=(url + "/work", caller)) for caller in callers]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 2
    while middleware.rif < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    during = json.loads(get(url + PROBE_PATH))
    # Answered while all four were in flight: had the probe queued behind them, it would read 0.
    assert during["rif"] == 4 and during["yours"] == 0  # an unnamed probe: none are its own
    assert json.loads(get(url + PROBE_PATH, "router-a"))["yours"] == 2
    assert json.loads(get(url + PROBE_PATH, "router-b"))["yours"] == 1
    for worker in workers:
        worker.join()
    after = json.loads(get(url + PROBE_PATH, "router-a"))
    assert after["rif"] == 0 and after["yours"] == 0 and middleware.by_caller == {}
    assert WORK_S * 1e3 <= after["latencyMs"] < WORK_S * 1e3 * 1.5


def test_health_checks_are_neither_counted_nor_timed(replica: tuple[str, ProbeMiddleware]) -> None:
    url, _ = replica
    for _ in range(5):
        assert get(url + "/healthz") == b"ok"
    # Nobody has used it yet.
    assert json.loads(get(url + PROBE_PATH)) == {"rif": 0, "latencyMs": 0.0, "perRequestMs": 0.0, "yours": 0}


def test_a_probe_says_what_one_more_request_in_flight_adds() -> None:
    middleware = ProbeMiddleware(lambda environ, start_response: [b""])
    for _ in range(10):  # a one-slot replica: a request that found one in flight waited for it
        middleware.estimator.record(rif_at_arrival=0, latency_ms=40.0)
        middleware.estimator.record(rif_at_arrival=1, latency_ms=80.0)
    assert middleware.probe() == {"rif": 0, "latencyMs": 40.0, "perRequestMs": 40.0, "yours": 0}
    unlimited = ProbeMiddleware(lambda environ, start_response: [b""])
    for rif in range(4):  # many threads: more in flight costs nothing
        for _ in range(10):
            unlimited.estimator.record(rif_at_arrival=rif, latency_ms=5.0)
    assert unlimited.probe()["perRequestMs"] == 0.0
