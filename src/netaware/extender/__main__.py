"""`netaware-extender` / `python -m netaware.extender`: watch the cluster and serve the extender API with
gunicorn (one worker process holding the watched state, several request threads, keep-alive)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from netaware.extender.settings import ExtenderSettings, parse_settings
from netaware.logs import configure_logging
from netaware.serving import WsgiServer, observation_port_problem


class ExtenderServer(WsgiServer):
    """gunicorn serving the extender; `app_factory` (default: watch the cluster) runs in the worker."""

    def __init__(self, settings: ExtenderSettings, app_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        super().__init__(
            app_factory or self._load, host=settings.host, port=settings.port, threads=settings.threads,
            observe=settings.metrics_address(),
        )  # fmt: skip

    def _load(self) -> Any:
        # Runs in the worker after fork, so the watch threads live in the process that serves requests.
        from netaware.extender.app import create_app
        from netaware.extender.planned import GroupPlans
        from netaware.extender.releasing import AppGroupController
        from netaware.kube.clients import api_client
        from netaware.kube.stores import ClusterStore
        from netaware.kube.watching import start_watches, wait_synced

        store = ClusterStore(
            topology_ttl_s=self.settings.topology_ttl_s, topology_refresh_s=self.settings.topology_refresh_s
        )
        api = api_client(self.settings.kubeconfig)
        stop = start_watches(api, store)
        plans = GroupPlans(store)  # one plan per group, followed by the controller's steering and by prioritize
        AppGroupController(
            api=api, store=store, default_strategy=self.settings.strategy,
            default_weights=self.settings.cost_weights(), plans=plans,
        ).start(stop)  # fmt: skip
        if not wait_synced(store, self.settings.sync_timeout_s):
            logging.getLogger("netaware.extender").warning("caches not synced yet: %s", store.synced)
        return create_app(
            store=store,
            default_weights=self.settings.cost_weights(),
            default_strategy=self.settings.strategy,
            max_body_bytes=self.settings.max_body_bytes,
            plans=plans,
        )


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    try:
        settings.cost_weights()
    except ValueError as error:
        sys.exit(f"error: --weights: {error}")
    try:
        problem = observation_port_problem(settings.metrics_address(), settings.port)
    except argparse.ArgumentTypeError as error:
        sys.exit(f"error: --metrics: {error}")
    if problem:
        sys.exit(f"error: {problem}")
    configure_logging()
    ExtenderServer(settings).run()


if __name__ == "__main__":
    main()
