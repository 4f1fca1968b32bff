"""Replica side of Prequal probing: a WSGI middleware that counts requests in flight, times every request, and
answers `GET /netaware/probe` at once with {"rif", "latencyMs", "perRequestMs", "yours"}: the requests in flight, the
latency estimate for a query arriving now, how much one more request in flight adds to latency there, and how
many of those requests came from the caller that probes (named by the `X-Netaware-Caller` header on its requests and
probes; 0 without it).

Wrap any WSGI app: `app.wsgi_app = ProbeMiddleware(app.wsgi_app)`. The probe never waits for the app: it reads
two counters under a lock and fits a line to the per-RIF medians of at most `window` samples.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from netaware.core.selection import LatencyEstimator, latency_line

PROBE_PATH = "/netaware/probe"
CALLER_HEADER = "X-Netaware-Caller"
"""A router's name for itself on the requests and probes it sends. A query's probe travels right behind the request
it routed and found that request still being served: the near replica answered "one in flight" for a request that
had ended by the time the answer came back, looked busy, and the next query went to the far one (41% of the calls
in the lab). With `yours` the caller subtracts its own requests and counts them itself, for as long as they last."""
_CALLER_KEY = "HTTP_" + CALLER_HEADER.upper().replace("-", "_")
UNTIMED_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics", "/v1/routing", "/v1/faults"})
"""Health checks, scrapes, routing state and fault changes pass through uncounted and untimed: not the traffic a
router balances. Timing them priced a fresh replica by its kubelet's first probes (a new process answers its first
requests slowly): in the lab a replica that had just joined reported 26 ms against its peers' 1.5 ms and got no
request for 4 s. With no sample at all the estimate is 0 ms, so a new replica is tried at once and its real figures
take over."""

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ProbeMiddleware:
    def __init__(self, app: WsgiApp, *, window: int = 256) -> None:
        self.app = app
        self.estimator = LatencyEstimator(window=window)
        self._lock = threading.Lock()
        self.rif = 0
        self.by_caller: dict[str, int] = {}
        """Requests in flight per caller that named itself."""

    def probe(self, caller: str | None = None) -> dict[str, float | int]:
        with self._lock:
            rif = self.rif
            yours = self.by_caller.get(caller, 0) if caller else 0
            samples = list(self.estimator.samples)
        at_idle, per_request_ms = latency_line(samples)  # outside the lock: requests that end need it
        latency_ms = max(0.0, at_idle + per_request_ms * rif)
        return {"rif": rif, "latencyMs": round(latency_ms, 3), "perRequestMs": round(per_request_ms, 3), "yours": yours}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        caller = environ.get(_CALLER_KEY)
        if path == PROBE_PATH and environ.get("REQUEST_METHOD") == "GET":
            body = json.dumps(self.probe(caller)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path in UNTIMED_PATHS:
            return self.app(environ, start_response)
        with self._lock:
            arrival_rif = self.rif
            self.rif += 1
            if caller:
                self.by_caller[caller] = self.by_caller.get(caller, 0) + 1
        started = time.perf_counter()
        try:
            # Materialise the body so the latency covers the whole response, not just the first chunk.
            return list(self.app(environ, start_response))
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1e3
            with self._lock:
                self.rif -= 1
                if caller:
                    left = self.by_caller.pop(caller) - 1
                    if left:
                        self.by_caller[caller] = left
                self.estimator.record(rif_at_arrival=arrival_rif, latency_ms=elapsed_ms)
