"""Serve a WSGI app with gunicorn from inside Python: one worker process (it holds the app's state), request threads,
keep-alive. Shared by the extender, the aggregator and the workload service.

A server may also listen on an observation address that answers only health and metrics: the extender's API then
stays on the loopback its scheduler calls it on, and a NetworkPolicy can keep the aggregator's report port to the
probe agents, while kubelet probes and Prometheus reach both on a port of their own.
"""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

OBSERVATION_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics"})


def listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT (an argparse type): the host a name or an address, the port 0-65535 (0: any free port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT with a port from 0 to 65535")
    return host.strip("[]"), int(port)


def observation_port_problem(observe: tuple[str, int] | None, port: int) -> str | None:
    """Why `observe` cannot be a server's observation listener beside `port`, or None: requests are told apart by
    the port they arrived on, so it needs a port of its own (and a fixed one)."""
    if observe and observe[1] in (0, port):
        return f"--metrics needs a port of its own, not {observe[1]}"
    return None


def observation_only(app: Any, port: int) -> Any:
    """`app`, except that requests arriving on `port` get only OBSERVATION_PATHS (404 with the reason otherwise)."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("SERVER_PORT") == str(port) and environ.get("PATH_INFO") not in OBSERVATION_PATHS:
            body = json.dumps({"error": f"port {port} serves only {', '.join(sorted(OBSERVATION_PATHS))}"}).encode()
            start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)  # type: ignore[no-any-return]

    return serve


class WsgiServer(BaseApplication):  # type: ignore[misc]
    """`app_factory` runs in the worker after fork, so threads it starts live in the process that serves.
    `observe`: an extra (host, port) that answers only health and metrics. `certfile` and `keyfile`: serve TLS."""

    def __init__(
        self, app_factory: Callable[[], Any], *, host: str, port: int, threads: int,
        observe: tuple[str, int] | None = None, certfile: Path | None = None, keyfile: Path | None = None,
    ) -> None:  # fmt: skip
        problem = observation_port_problem(observe, port)
        if problem:
            raise ValueError(problem)
        self.app_factory = app_factory
        self.binds = [f"{host}:{port}"] + ([f"{observe[0]}:{observe[1]}"] if observe else [])
        self.observe_port = observe[1] if observe else None
        self.threads = threads
        self.tls = (str(certfile), str(keyfile)) if certfile and keyfile else None
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", self.binds)
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", self.threads)
        self.cfg.set("keepalive", 30)  # clients (kube-scheduler's Go client, the workloads' sessions) reuse connections
        self.cfg.set("timeout", 60)
        self.cfg.set("accesslog", None)
        if self.tls:  # every bind serves TLS then
            self.cfg.set("certfile", self.tls[0])
            self.cfg.set("keyfile", self.tls[1])
        # gunicorn's control socket lives at one fixed path per user: two servers would fight over it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        app = self.app_factory()
        if self.observe_port is not None:
            app = observation_only(app, self.observe_port)
        # Everything built so far (caches, matrices, the app) lives as long as the process: move it out of the
        # collector's reach, so full collections stay short and stay out of the tail latency.
        gc.collect()
        gc.freeze()
        return app
