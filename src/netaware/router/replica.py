"""Replica side of Prequal probing: a WSGI middleware that counts requests in flight, times every request, and
answers `GET /netaware/probe` at once with {"rif", "latencyMs"} (the latency estimate for a query arriving now).

Wrap any WSGI app: `app.wsgi_app = ProbeMiddleware(app.wsgi_app)`. The probe never waits for the app: it reads
two counters under a lock and computes a median over at most `window` samples.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from netaware.core.selection import LatencyEstimator

PROBE_PATH = "/netaware/probe"
UNTIMED_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})
"""Health checks and scrapes pass through uncounted and untimed: they are not the traffic a router balances. Timing
them priced a fresh replica by its kubelet's first probes (a new process answers its first requests slowly): in the
lab a replica that had just joined reported 26 ms against its peers' 1.5 ms and got no request for 4 s. With no
sample at all the estimate is 0 ms, so a new replica is tried at once and its real figures take over."""

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ProbeMiddleware:
    def __init__(self, app: WsgiApp, *, window: int = 256) -> None:
        self.app = app
        self.estimator = LatencyEstimator(window=window)
        self._lock = threading.Lock()
        self.rif = 0

    def probe(self) -> dict[str, float | int]:
        with self._lock:
            rif = self.rif
            return {"rif": rif, "latencyMs": round(self.estimator.estimate(rif), 3)}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == PROBE_PATH and environ.get("REQUEST_METHOD") == "GET":
            body = json.dumps(self.probe()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path in UNTIMED_PATHS:
            return self.app(environ, start_response)
        with self._lock:
            arrival_rif = self.rif
            self.rif += 1
        started = time.perf_counter()
        try:
            # Materialise the body so the latency covers the whole response, not just the first chunk.
            return list(self.app(environ, start_response))
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1e3
            with self._lock:
                self.rif -= 1
                self.estimator.record(rif_at_arrival=arrival_rif, latency_ms=elapsed_ms)
