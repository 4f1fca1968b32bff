"""Serve a WSGI app with gunicorn from inside Python: one worker process (it holds the app's state), request threads,
keep-alive. Shared by the extender and the workload service."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication


class WsgiServer(BaseApplication):  # type: ignore[misc]
    """`app_factory` runs in the worker after fork, so threads it starts live in the process that serves."""

    def __init__(self, app_factory: Callable[[], Any], *, host: str, port: int, threads: int) -> None:
        self.app_factory = app_factory
        self.bind = f"{host}:{port}"
        self.threads = threads
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", self.bind)
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", self.threads)
        self.cfg.set("keepalive", 30)  # clients (kube-scheduler's Go client, the workloads' sessions) reuse connections
        self.cfg.set("timeout", 60)
        self.cfg.set("accesslog", None)
        # gunicorn's control socket lives at one fixed path per user: two servers would fight over it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        app = self.app_factory()
        # Everything built so far (caches, matrices, the app) lives as long as the process: move it out of the
        # collector's reach, so full collections stay short and stay out of the tail latency.
        gc.collect()
        gc.freeze()
        return app
