"""Keep a ClusterStore in step with the API server: list, then watch from the list's resourceVersion; on a
410 Gone or a broken connection (apiserver restart), back off and list again. One daemon thread per kind."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kubernetes import client, watch

from netaware.kube.converters import GROUP, VERSION
from netaware.kube.stores import ClusterStore

log = logging.getLogger("netaware.watching")

# A watch is closed by the server after this long and re-opened, which also bounds how stale a silently broken
# connection can leave the store.
WATCH_TIMEOUT_S = 300
MAX_BACKOFF_S = 10.0


def _listers(api: client.ApiClient) -> dict[str, Callable[..., Any]]:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def custom_lister(plural: str) -> Callable[..., Any]:
        def lister(**kwargs: Any) -> Any:
            return custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)

        return lister

    return {
        "nodes": core.list_node,
        "pods": core.list_pod_for_all_namespaces,
        "appgroups": custom_lister("appgroups"),
        "networktopologies": custom_lister("networktopologies"),
    }


class _RawWatch(watch.Watch):
    """A Watch that yields the objects as plain dicts: building typed models for every event (and turning them
    back into dicts for the store) costs about a millisecond each, which a binding burst multiplies by
    thousands."""

    def get_return_type(self, func: Any) -> None:
        return None


def list_raw(lister: Callable[..., Any]) -> dict[str, Any]:
    """A list (or read) call's answer as a plain dict (no typed models: those cost about a millisecond per object)."""
    response = lister(_preload_content=False)
    data = json.loads(response.data)
    return data if isinstance(data, dict) else {}


class WatchSink(Protocol):
    """What a list-watch loop keeps in step: ClusterStore, or anything else holding one kind's objects."""

    def replace(self, kind: str, objects: Iterable[Mapping[str, Any]]) -> None: ...

    def upsert(self, kind: str, obj: Mapping[str, Any]) -> None: ...

    def delete(self, kind: str, obj: Mapping[str, Any]) -> None: ...


def watch_kind(store: WatchSink, kind: str, lister: Callable[..., Any], stop: threading.Event) -> None:
    """List `kind` into `store`, then watch from the list's resourceVersion, until `stop` is set; a failed list or
    watch is logged and retried with backoff (never raised)."""
    backoff = 0.5
    while not stop.is_set():
        try:
            listed = list_raw(lister)
            store.replace(kind, listed.get("items") or [])
            resource_version = (listed.get("metadata") or {}).get("resourceVersion")
            backoff = 0.5
            stream = _RawWatch()
            for event in stream.stream(lister, resource_version=resource_version, timeout_seconds=WATCH_TIMEOUT_S):
                if stop.is_set():
                    stream.stop()
                    break
                kind_of_event = event["type"]
                obj = event["object"]
                if kind_of_event == "ERROR":
                    log.info("watch %s: %s; listing again", kind, obj.get("message"))
                    break
                if kind_of_event == "DELETED":
                    store.delete(kind, obj)
                else:
                    store.upsert(kind, obj)
        except Exception as error:  # any failure: log, back off, list again; never kill the thread
            log.warning("watch %s failed (%s); retrying in %.1fs", kind, error.__class__.__name__, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def start_watches(api: client.ApiClient, store: ClusterStore, kinds: Iterable[str] | None = None) -> threading.Event:
    """Start one daemon thread per kind (all the store keeps, or `kinds`); set the returned event to stop them."""
    stop = threading.Event()
    wanted = set(kinds) if kinds is not None else None
    for kind, lister in _listers(api).items():
        if wanted is not None and kind not in wanted:
            continue
        threading.Thread(target=watch_kind, args=(store, kind, lister, stop), name=f"watch-{kind}", daemon=True).start()
    return stop


def wait_synced(store: ClusterStore, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not store.ready and time.monotonic() < deadline:
        time.sleep(0.05)
    return store.ready
