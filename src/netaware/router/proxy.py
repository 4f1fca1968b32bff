"""The latency router as an asynchronous L7 reverse proxy (aiohttp on uvloop).

Each request goes to the replica its balancer chooses (core/balancing.py: Prequal HCL by default). Probes
(`GET /netaware/probe` on the replica: requests in flight and latency estimate) are sent in the background, never
on the request's path: r_probe per request, and one when idle so the pool is fresh when traffic returns.

Idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) that fail (connection error, timeout, 5xx) are retried on
another replica, up to `max_attempts`; others are answered with the replica's answer or a 502 naming it.

The replicas are a static list, or a Service's endpoints followed through its EndpointSlices (`follow_service`:
ready ones take new requests, terminating ones drain, deleted ones leave; none at all is a 503 naming the Service).

The proxy forwards every path, so its own endpoints live on a separate admin port (as Envoy's do): `/healthz`,
`/metrics`, `/v1/state` (the balancer's pool and in-flight counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from netaware.core.balancing import Balancer
from netaware.core.selection import ProbeAnswer
from netaware.core.slices import ServiceReference, SliceEndpoint, routable
from netaware.router.replica import CALLER_HEADER, PROBE_PATH

if TYPE_CHECKING:
    from netaware.kube.api import ApiClient

log = logging.getLogger("netaware.router")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# RFC 9110 7.6.1: connection-specific fields are not forwarded; Host is set for the replica by the client.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip


def forwardable(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """`headers` less the hop-by-hop ones: the fixed set and any the Connection field names (RFC 9110 7.6.1)."""
    named = {token.strip().lower() for value in headers.getall("Connection", []) for token in value.split(",")}
    dropped = HOP_BY_HOP | named
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


@dataclass(frozen=True)
class RouterSettings:
    max_attempts: int = 3
    """Replicas an idempotent request may try."""
    request_timeout_s: float = 30.0
    probe_timeout_s: float = 0.5
    idle_tick_s: float = 0.01
    """How often the idle timer asks the balancer whether to probe."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.request_timeout_s <= 0 or self.probe_timeout_s <= 0 or self.idle_tick_s <= 0:
            raise ValueError("max_attempts must be >= 1 and every timeout > 0")


@dataclass(frozen=True)
class Answer:
    """A replica's answer (hop-by-hop headers removed), or the router's 502 when none answered."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    replica: str | None = None
    """The replica that answered (None: the router answered itself)."""


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "netaware_router_requests", "Requests answered by the router", ["code"], registry=registry
        )
        self.attempts = Counter(
            "netaware_router_attempts", "Requests sent to a replica (retries included)", ["replica", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.picks = Counter(
            "netaware_router_picks", "Requests sent to each replica, counted when sent (attempts counts them when "
            "they end): where the balancer sends traffic now, even to a replica that is slow to answer", ["replica"],
            registry=registry,
        )  # fmt: skip
        self.retries = Counter("netaware_router_retries", "Attempts that were retries", registry=registry)
        self.latency = Histogram(
            "netaware_router_request_seconds",
            "Time from receiving a request to answering it",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.probes = Counter("netaware_router_probes", "Probes sent", ["outcome"], registry=registry)
        self.replicas = Gauge(
            "netaware_router_replicas", "Replicas known to the router: routable (ready, or serving while terminating "
            "when none is ready) and draining (terminating: no new requests)", ["state"], registry=registry,
        )  # fmt: skip
        self.in_flight = Gauge("netaware_router_requests_in_flight", "Requests being routed", registry=registry)


class Router:
    def __init__(
        self,
        replicas: Sequence[str],
        balancer: Balancer,
        *,
        settings: RouterSettings | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.replicas = list(replicas)
        """Where new requests go (a static list, or a followed Service's routable endpoints)."""
        self.caller = uuid.uuid4().hex[:16]
        """This router's name on its requests and probes (CALLER_HEADER): replicas say how many of their requests
        in flight are its own."""
        self.draining: list[str] = []
        """Terminating endpoints of a followed Service: their requests in flight finish, no new ones start."""
        self.source = "static" if replicas else "none"
        """What the replica list comes from, for the 503 that says why there is none."""
        self.synced = True
        """False while a followed Service's endpoints have not been listed yet (/healthz answers 503)."""
        self.balancer = balancer
        self.settings = settings or RouterSettings()
        self.registry = registry or CollectorRegistry()
        self.metrics = RouterMetrics(self.registry)
        self.metrics.replicas.labels("routable").set(len(self.replicas))
        self.metrics.replicas.labels("draining").set(0)
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._idle_task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, cookie_jar=None)
        self._idle_task = asyncio.create_task(self._idle_probing())

    async def close(self) -> None:
        tasks = [t for t in [self._idle_task, *self._background] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Router.start() was not awaited")
        return self._session

    def set_endpoints(self, endpoints: Sequence[SliceEndpoint]) -> None:
        """Route to a followed Service's endpoints from now on: the routable ones take new requests, terminating
        ones only finish what they have, removed ones are forgotten at once. Call on the event loop's thread."""
        replicas, draining = routable(endpoints), sorted({e.address for e in endpoints if e.terminating})
        if (replicas, draining) != (self.replicas, self.draining) or not self.synced:
            log.info("endpoints changed", extra={"source": self.source, "replicas": replicas, "draining": draining})
        self.replicas, self.draining, self.synced = replicas, draining, True
        self.metrics.replicas.labels("routable").set(len(replicas))
        self.metrics.replicas.labels("draining").set(len(draining))

    # --- probing ----------------------------------------------------------------------------------------------

    def _probe_soon(self, targets: list[str]) -> None:
        for replica in targets:
            task = asyncio.create_task(self._probe(replica))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _probe(self, replica: str) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.probe_timeout_s)
        sent_s = time.monotonic()
        try:
            async with self.session.get(
                f"http://{replica}{PROBE_PATH}", timeout=timeout, headers={CALLER_HEADER: self.caller}
            ) as answer:
                answer.raise_for_status()
                body = await answer.json(content_type=None)
            rif, latency_ms, yours = int(body["rif"]), float(body["latencyMs"]), int(body.get("yours", 0))
            per_request_ms = max(0.0, float(body.get("perRequestMs", 0.0)))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            self.metrics.probes.labels("error").inc()
            return
        self.metrics.probes.labels("ok").inc()
        now_s = time.monotonic()
        probed = ProbeAnswer(rif, latency_ms, rtt_ms=(now_s - sent_s) * 1e3, yours=yours, per_request_ms=per_request_ms)
        self.balancer.on_probe(replica, probed, now_s=now_s)

    async def _idle_probing(self) -> None:
        while True:
            await asyncio.sleep(self.settings.idle_tick_s)
            self._probe_soon(self.balancer.probe_targets(self.replicas, now_s=time.monotonic(), query=False))

    # --- routing ----------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            response = await self._route(request)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.requests.labels(str(response.status)).inc()
        return response

    async def _route(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = forwardable(request.headers)
        headers["X-Forwarded-For"] = ", ".join(
            filter(None, [request.headers.get("X-Forwarded-For"), request.remote or ""])
        )
        answer = await self.send(request.method, str(request.rel_url), headers=headers, body=body)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    async def send(
        self, method: str, path: str, *, headers: CIMultiDict[str] | None = None, body: bytes = b""
    ) -> Answer:
        """Send one request to the replica the balancer chooses; idempotent methods are retried on another
        replica after a connection error, timeout or 5xx. The client-library face of the router: no proxy
        needed (`await router.start()` first). A request no replica answered is a 502 naming the last failure."""
        if not self.replicas:
            unavailable = {"error": f"no ready endpoints ({self.source})", "draining": self.draining}
            return Answer(503, CIMultiDict({"Content-Type": "application/json"}), json.dumps(unavailable).encode())
        attempts = self.settings.max_attempts if method in IDEMPOTENT else 1
        tried: set[str] = set()
        failure = "no attempt"
        for attempt in range(attempts):
            now_s = time.monotonic()
            replica = self.balancer.choose(self.replicas, now_s=now_s, exclude=frozenset(tried))
            self._probe_soon(self.balancer.probe_targets(self.replicas, now_s=now_s, query=True))
            tried.add(replica)
            self.metrics.picks.labels(replica).inc()
            if attempt:
                self.metrics.retries.inc()
            self.balancer.on_start(replica)
            answer: Answer | None = None
            started_s = time.monotonic()
            try:
                answer = await self._forward(method, path, replica, headers, body)
            except (aiohttp.ClientError, TimeoutError) as error:
                failure = f"{replica}: {type(error).__name__}: {error}"
            finally:
                ok = answer is not None and answer.status < 500
                ended_s = time.monotonic()
                self.balancer.on_finish(replica, ok=ok, now_s=ended_s, latency_ms=(ended_s - started_s) * 1e3)
            self.metrics.attempts.labels(replica, "ok" if ok else "error").inc()
            if answer is not None:
                if ok or attempt == attempts - 1:
                    return answer
                failure = f"{replica}: HTTP {answer.status}"
            log.info("attempt failed", extra={"replica": replica, "reason": failure, "attempt": attempt + 1})
        reason = json.dumps({"error": f"no replica answered: {failure}", "tried": sorted(tried)}).encode()
        return Answer(502, CIMultiDict({"Content-Type": "application/json"}), reason)

    async def _forward(
        self, method: str, path: str, replica: str, headers: CIMultiDict[str] | None, body: bytes
    ) -> Answer:
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        named = CIMultiDict(headers or {})
        named[CALLER_HEADER] = self.caller  # this hop's caller is this router, whoever called it
        async with self.session.request(
            method, f"http://{replica}{path}", headers=named, data=body or None, timeout=timeout,
            allow_redirects=False,
        ) as answer:  # fmt: skip
            payload = await answer.read()
            return Answer(answer.status, forwardable(answer.headers), payload, replica=replica)

    # --- admin ------------------------------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        return {"policy": self.balancer.name, "source": self.source, "replicas": self.replicas,
                "draining": self.draining, **self.balancer.state()}  # fmt: skip


def follow_service(
    router: Router, service: ServiceReference, *, api: ApiClient, loop: asyncio.AbstractEventLoop
) -> threading.Event:
    """Keep `router`'s replicas on the Service's endpoints until the returned event is set: the follower's thread
    hands each change to `loop`, the router's event loop."""
    from netaware.kube.following import EndpointsFollower

    router.source, router.synced = f"Service {service}", False

    def hand_over(endpoints: list[SliceEndpoint]) -> None:
        loop.call_soon_threadsafe(router.set_endpoints, endpoints)

    return EndpointsFollower(api, service, hand_over).start()


def proxy_app(router: Router) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", router.handle)

    async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
        await router.start()
        yield
        await router.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def admin_app(router: Router) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        if not router.synced:
            return web.json_response({"status": "starting", "waiting_for": router.source}, status=503)
        return web.json_response({"status": "ok", "policy": router.balancer.name, "replicas": len(router.replicas)})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(router.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def state(_: web.Request) -> web.Response:
        return web.json_response(router.state(), dumps=lambda value: json.dumps(value, default=str))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/state", state)
    return app


def _address(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"{host}:{port}"


async def serve(router: Router, *, host: str, port: int, admin_host: str, admin_port: int) -> None:
    """Serve the proxy and its admin port until cancelled."""
    proxy_runner = web.AppRunner(proxy_app(router), access_log=None)
    admin_runner = web.AppRunner(admin_app(router), access_log=None)
    await proxy_runner.setup()
    await admin_runner.setup()
    try:
        # Sockets of our own, so that port 0 works: the kernel picks a free port and the log says which.
        proxy_socket = socket.create_server((host, port), backlog=1024)
        admin_socket = socket.create_server((admin_host, admin_port))
        await web.SockSite(proxy_runner, proxy_socket).start()
        await web.SockSite(admin_runner, admin_socket).start()
        log.info(
            "router serving",
            extra={"listen": _address(proxy_socket), "admin": _address(admin_socket), "policy": router.balancer.name,
                   "replicas": router.replicas},
        )  # fmt: skip
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    finally:
        await admin_runner.cleanup()
        await proxy_runner.cleanup()
