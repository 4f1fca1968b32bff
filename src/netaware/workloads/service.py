"""The dummy service every workload graph is built from.

`GET /` does `work_ms` of work, calls each downstream in order (`calls` times each), and answers with a JSON body
padded to `payload_bytes`, carrying how many calls the request caused below it and the nodes it crossed. A failing
downstream turns into a 502 naming it. Wrapped in the router's ProbeMiddleware, so it answers Prequal probes
(`/netaware/probe`: requests in flight and latency estimate); `/healthz` and `/metrics` as every service,
`/v1/routing`: what each downstream's router knows when it routes its own calls (the proxy's `/v1/state`), and
`/v1/faults`: the work time and failure ratio in force, which `PUT` changes while the service runs (a replica that
slows down or starts failing mid-run, for the router's benchmark and fault experiments).

Downstream calls go through kube-proxy by default: service names resolve through the lab's Service table (a JSON
file named by NETAWARE_LAB_SERVICES: one random ready endpoint per call, as kube-proxy does), without it to cluster
DNS unchanged. With client-side routing (`RoutedCalls`, `--routing POLICY`) each call goes to the replica the
caller's own router picks (workloads/routing.py). `netaware_workload_downstream_calls_total{service,node}` counts
calls by the node of the replica that answered, whichever way they were routed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from netaware.router.replica import ProbeMiddleware
from netaware.workloads.routing import CallError, RoutedCalls

CALL_TIMEOUT_S = 10.0
log = logging.getLogger("netaware.workload")


@dataclass(frozen=True)
class Downstream:
    host: str
    port: int
    calls: int = 1

    @classmethod
    def parse(cls, text: str) -> Downstream:
        """`host:port` or `host:port*calls`."""
        target, _, count = text.partition("*")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"downstream {text!r}: expected host:port or host:port*calls")
        calls = int(count) if count else 1
        if calls < 1:
            raise ValueError(f"downstream {text!r}: calls must be >= 1")
        return cls(host, int(port), calls)


class Resolver:
    """Service name -> `ip:port` of one ready endpoint, from the lab's Service table (re-read when it changes)."""

    def __init__(self, table_file: Path | None, namespace: str, rng: random.Random | None = None):
        self.table_file = table_file
        self.namespace = namespace
        self.rng = rng or random.Random()
        self._table: dict[str, list[str]] = {}
        self._mtime_ns = -1
        self._lock = threading.Lock()

    def _current(self) -> dict[str, list[str]]:
        assert self.table_file is not None
        try:
            mtime_ns = self.table_file.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            if mtime_ns != self._mtime_ns:
                self._table = json.loads(self.table_file.read_text())
                self._mtime_ns = mtime_ns
            return self._table

    def resolve(self, host: str, port: int) -> str:
        if self.table_file is None:
            return f"{host}:{port}"
        name, _, rest = host.partition(".")
        namespace = rest.split(".")[0] if rest else self.namespace
        endpoints = self._current().get(f"{namespace}/{name}:{port}")
        if not endpoints:
            raise LookupError(f"service {namespace}/{name}:{port} has no ready endpoint")
        return self.rng.choice(endpoints)


@dataclass(frozen=True)
class ServiceSettings:
    name: str
    port: int = 8080
    work_ms: float = 1.0
    payload_bytes: int = 1024
    downstreams: Sequence[Downstream] = ()
    capacity: int = 0
    """Requests doing their `work_ms` at once (the replica's cores); more wait in line. 0: no limit."""
    fail_ratio: float = 0.0
    """Share of requests answered 503 at once, without work: a replica failing fast (fault experiments)."""

    def __post_init__(self) -> None:
        if self.capacity < 0 or self.payload_bytes < 0:
            raise ValueError("capacity and payload_bytes must be >= 0")
        Faults(self.work_ms, self.fail_ratio)  # the same rules as a change at runtime


@dataclass(frozen=True)
class Faults:
    """What the service does to each request now: `work_ms` of work, or a 503 at once for `fail_ratio` of them."""

    work_ms: float
    fail_ratio: float

    def __post_init__(self) -> None:
        if not (isinstance(self.work_ms, int | float) and 0 <= self.work_ms <= 60_000):
            raise ValueError(f"workMs must be a number of milliseconds within 0..60000, not {self.work_ms!r}")
        if not (isinstance(self.fail_ratio, int | float) and 0.0 <= self.fail_ratio <= 1.0):
            raise ValueError(f"failRatio must be a number within 0..1, not {self.fail_ratio!r}")

    def changed(self, body: Any) -> Faults:
        """These faults with the fields `body` (a PUT's JSON object: workMs, failRatio) names; ValueError says why a
        body is refused."""
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object with workMs and/or failRatio")
        unknown = sorted(set(body) - {"workMs", "failRatio"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}: expected workMs and/or failRatio")
        if any(isinstance(value, bool) for value in body.values()):
            raise ValueError("workMs and failRatio are numbers, not booleans")
        return Faults(body.get("workMs", self.work_ms), body.get("failRatio", self.fail_ratio))

    def as_json(self) -> dict[str, float]:
        return {"workMs": self.work_ms, "failRatio": self.fail_ratio}


def create_app(settings: ServiceSettings, resolver: Resolver, routed: RoutedCalls | None = None) -> Flask:
    """The service's WSGI app; downstream calls through `resolver` (kube-proxy), or through `routed` (started)."""
    app = Flask(f"workload-{settings.name}")
    registry = CollectorRegistry()
    served = Counter("netaware_workload_requests", "Requests served", ["code"], registry=registry)
    latency = Histogram(
        "netaware_workload_request_seconds",
        "Time to serve a request, downstream calls included",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        registry=registry,
    )
    in_flight = Gauge("netaware_workload_requests_in_flight", "Requests being served", registry=registry)
    downstream_errors = Counter(
        "netaware_workload_downstream_errors", "Failed downstream calls", ["service"], registry=registry
    )
    downstream_calls = Counter(
        "netaware_workload_downstream_calls", "Downstream calls answered, by the node of the replica that answered",
        ["service", "node"], registry=registry,
    )  # fmt: skip
    sessions = threading.local()
    node = os.environ.get("NODE_NAME", "")
    # Work slots model a replica's cores: requests beyond `capacity` queue here, inside the timed middleware, so
    # the requests in flight and the latency a probe reports include the wait, as on a busy server.
    work_slots = threading.BoundedSemaphore(settings.capacity) if settings.capacity else contextlib.nullcontext()
    failures = random.Random()
    faults = Faults(settings.work_ms, settings.fail_ratio)  # replaced whole by a PUT: a request reads one version

    def session() -> requests.Session:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()  # keep-alive per request thread
        return sessions.session  # type: ignore[no-any-return]

    @app.get("/")
    def serve() -> tuple[Response, int]:
        started = time.perf_counter()
        in_flight.inc()
        now = faults
        try:
            if now.fail_ratio and failures.random() < now.fail_ratio:
                served.labels("503").inc()
                return jsonify(service=settings.name, error="injected failure"), 503
            with work_slots:
                time.sleep(now.work_ms / 1e3)
            calls, nodes = 0, {node} if node else set()
            for downstream in settings.downstreams:
                for _ in range(downstream.calls):
                    try:
                        if routed is not None:
                            routed_answer = routed.get(downstream.host, downstream.port, timeout_s=CALL_TIMEOUT_S)
                            body = json.loads(routed_answer.body)
                        else:
                            address = resolver.resolve(downstream.host, downstream.port)
                            answer = session().get(f"http://{address}/", timeout=CALL_TIMEOUT_S)
                            answer.raise_for_status()
                            body = answer.json()
                    except (LookupError, requests.RequestException, ValueError, CallError) as error:
                        downstream_errors.labels(downstream.host).inc()
                        served.labels("502").inc()
                        return jsonify(service=settings.name, error=f"{downstream.host}: {error}"), 502
                    downstream_calls.labels(downstream.host, body.get("node", "")).inc()
                    calls += 1 + int(body.get("calls", 0))
                    nodes.update(body.get("nodes", []))
            body = {"service": settings.name, "node": node, "calls": calls, "nodes": sorted(nodes), "payload": ""}
            body["payload"] = "x" * max(0, settings.payload_bytes - len(json.dumps(body)))  # the body is the size asked
            served.labels("200").inc()
            return Response(json.dumps(body), mimetype="application/json"), 200
        finally:
            in_flight.dec()
            latency.observe(time.perf_counter() - started)

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        if routed is not None and not routed.synced:  # not ready before it knows where its calls can go
            return jsonify(status="starting", service=settings.name, waiting_for="downstream endpoints"), 503
        return jsonify(status="ok", service=settings.name), 200

    @app.get("/v1/routing")
    def routing_state() -> tuple[Response, int]:
        if routed is None:
            return jsonify(routing="kube-proxy", detail="calls go to the Services' addresses; kube-proxy chooses"), 200
        return jsonify(routing=routed.policy, downstreams=routed.state()), 200

    @app.get("/v1/faults")
    def faults_in_force() -> tuple[Response, int]:
        return jsonify(faults.as_json()), 200

    @app.put("/v1/faults")
    def change_faults() -> tuple[Response, int]:
        nonlocal faults
        try:
            faults = faults.changed(request.get_json(force=True, silent=True))
        except ValueError as error:
            return jsonify(error=str(error)), 400
        log.info("faults changed", extra={"service": settings.name, **faults.as_json()})
        return jsonify(faults.as_json()), 200

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.wsgi_app = ProbeMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def resolver_from_environment() -> Resolver:
    table = os.environ.get("NETAWARE_LAB_SERVICES")
    return Resolver(Path(table) if table else None, os.environ.get("POD_NAMESPACE", "default"))
