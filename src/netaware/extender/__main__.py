"""`netaware-extender` / `python -m netaware.extender`: watch the cluster and serve the extender API with
gunicorn (one worker process holding the watched state, several request threads, keep-alive)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from netaware.extender.settings import ExtenderSettings, parse_settings
from netaware.logs import configure_logging


class ExtenderServer(BaseApplication):  # type: ignore[misc]
    """gunicorn serving the extender; `app_factory` (default: watch the cluster) runs in the worker."""

    def __init__(self, settings: ExtenderSettings, app_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.app_factory = app_factory
        super().__init__()

    def load_config(self) -> None:
        self.cfg.set("bind", f"{self.settings.host}:{self.settings.port}")
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", self.settings.threads)
        self.cfg.set("keepalive", 30)  # kube-scheduler's Go client reuses connections
        self.cfg.set("timeout", 60)
        self.cfg.set("accesslog", None)
        # gunicorn's control socket lives at one fixed path per user: two extenders would fight over it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        app = self._load()
        # Everything built so far (caches, matrices, the app) lives as long as the process: move it out of the
        # collector's reach, so full collections stay short and stop showing up in the extender's p99.
        gc.collect()
        gc.freeze()
        return app

    def _load(self) -> Any:
        # Runs in the worker after fork, so the watch threads live in the process that serves requests.
        if self.app_factory is not None:
            return self.app_factory()
        from netaware.extender.app import create_app
        from netaware.extender.releasing import AppGroupController
        from netaware.kube.clients import api_client
        from netaware.kube.stores import ClusterStore
        from netaware.kube.watching import start_watches, wait_synced

        store = ClusterStore(
            topology_ttl_s=self.settings.topology_ttl_s, topology_refresh_s=self.settings.topology_refresh_s
        )
        api = api_client(self.settings.kubeconfig)
        stop = start_watches(api, store)
        AppGroupController(api=api, store=store).start(stop)
        if not wait_synced(store, self.settings.sync_timeout_s):
            logging.getLogger("netaware.extender").warning("caches not synced yet: %s", store.synced)
        return create_app(
            store=store,
            default_weights=self.settings.cost_weights(),
            default_strategy=self.settings.strategy,
            max_body_bytes=self.settings.max_body_bytes,
        )


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    try:
        settings.cost_weights()
    except ValueError as error:
        sys.exit(f"error: --weights: {error}")
    configure_logging()
    ExtenderServer(settings).run()


if __name__ == "__main__":
    main()
