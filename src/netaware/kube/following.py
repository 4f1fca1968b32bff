"""Follow one Service's endpoints through its EndpointSlices, as kube-proxy and mesh clients do: list, then watch,
and hand every change to a callback (the router's replica list).

The Service is read first to learn which slice port carries the requested Service port (slices name their ports
after the Service's, and map them to the pods' target ports). A Service that does not exist yet is waited for
(installing a router before its backend is ordinary), and so is an API server that is down: both are logged and
retried, never fatal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import client

from netaware.core.slices import (
    SERVICE_NAME_LABEL,
    ServiceReference,
    SliceEndpoint,
    service_port_name,
    slice_endpoints,
)
from netaware.kube.api import API_ERRORS
from netaware.kube.watching import MAX_BACKOFF_S, list_raw, watch_kind

log = logging.getLogger("netaware.following")


class EndpointsFollower:
    """Keeps the endpoints of one Service port from its EndpointSlices and calls `on_change` with all of them
    (ready, serving, terminating: SliceEndpoint's conditions) after each list and after every change: its first
    call means the Service was found and listed. `on_change` runs on the follower's thread."""

    def __init__(
        self,
        api: client.ApiClient,
        service: ServiceReference,
        on_change: Callable[[list[SliceEndpoint]], None],
    ) -> None:
        self.service = service
        self.on_change = on_change
        self._core = client.CoreV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)
        self._slices: dict[str, Mapping[str, Any]] = {}
        self._port_name: str | None = None

    # --- the watch sink (kube.watching.WatchSink) -------------------------------------------------------------

    def replace(self, kind: str, objects: Iterable[Mapping[str, Any]]) -> None:
        self._slices = {obj["metadata"]["name"]: obj for obj in objects}
        self._changed()

    def upsert(self, kind: str, obj: Mapping[str, Any]) -> None:
        self._slices[obj["metadata"]["name"]] = obj
        self._changed()

    def delete(self, kind: str, obj: Mapping[str, Any]) -> None:
        self._slices.pop(obj["metadata"]["name"], None)
        self._changed()

    def _changed(self) -> None:
        self.on_change(slice_endpoints(self._slices.values(), self._port_name))

    # --- running ----------------------------------------------------------------------------------------------

    def start(self) -> threading.Event:
        """Follow on a daemon thread until the returned event is set."""
        stop = threading.Event()
        threading.Thread(target=self._run, args=(stop,), name=f"follow-{self.service.name}", daemon=True).start()
        return stop

    def _run(self, stop: threading.Event) -> None:
        self._port_name = self._resolve_port(stop)
        if self._port_name is None:
            return
        namespace, selector = self.service.namespace, f"{SERVICE_NAME_LABEL}={self.service.name}"

        def lister(**kwargs: Any) -> Any:
            return self._discovery.list_namespaced_endpoint_slice(namespace, label_selector=selector, **kwargs)

        watch_kind(self, "endpointslices", lister, stop)

    def _resolve_port(self, stop: threading.Event) -> str | None:
        """The slice port name of the Service port asked for, waiting for the Service (None: stopped first)."""
        backoff = 0.5
        while not stop.is_set():
            try:
                service = list_raw(lambda **kw: self._core.read_namespaced_service(
                    self.service.name, self.service.namespace, **kw))  # fmt: skip
                return service_port_name(service, self.service.port)
            except (*API_ERRORS, ValueError) as error:
                reason = getattr(error, "reason", None) or str(error)
                log.warning("waiting for the Service", extra={"service": str(self.service), "reason": reason,
                                                              "retry_s": backoff})  # fmt: skip
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        return None
