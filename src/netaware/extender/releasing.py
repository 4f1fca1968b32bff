"""The AppGroup controller inside the extender process: removes the `netaware.io/dependency-order` scheduling
gate from pods whose dependencies are placed (rule in core/release.py), and keeps each AppGroup's status (topology
order, where each workload runs) up to date. Runs as one daemon thread over the extender's watched state."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from netaware.core.release import DEPENDENCY_ORDER_GATE, MemberPod, pods_to_release
from netaware.core.scoring import DEFAULT_STRATEGY, PRICES_OWN_REPLICAS
from netaware.kube import api as kube
from netaware.kube.converters import GROUP, VERSION, appgroup_status
from netaware.kube.stores import ClusterStore

log = logging.getLogger("netaware.releasing")

# How often the controller looks for work; it acts only when the watched state changed since its last pass.
POLL_INTERVAL_S = 0.2


class AppGroupController:
    def __init__(self, *, api: kube.ApiClient, store: ClusterStore, default_strategy: str = DEFAULT_STRATEGY) -> None:
        self._default_strategy = default_strategy
        self._released_at: dict[str, float] = {}
        """Pods this controller released, and when (a pod released one at a time holds its siblings until bound)."""
        self._core = kube.CoreV1Api(api)
        self._custom = kube.CustomObjectsApi(api)
        self._store = store
        self._written_status: dict[str, dict[str, Any]] = {}
        self._seen_version = -1
        self.waiting = False
        """Whether the last pass left gated pods behind (they may become releasable with time alone)."""

    def reconcile_once(self) -> list[str]:
        """Release what may be released and refresh statuses; returns the released pods' keys."""
        released: list[str] = []
        self.waiting = False
        members_now: set[str] = set()
        for group in self._store.appgroups():
            members = self._store.members(group)
            pods = [
                MemberPod(
                    key=f"{pod.namespace}/{pod.name}",
                    workload=workload,
                    gated=DEPENDENCY_ORDER_GATE in pod.scheduling_gates,
                    bound=bool(pod.node_name),
                    created_at_s=pod.created_at_s,
                    released_at_s=self._released_at.get(f"{pod.namespace}/{pod.name}"),
                )
                for pod, workload in members
            ]
            members_now.update(p.key for p in pods)
            one_at_a_time = (group.strategy or self._default_strategy) in PRICES_OWN_REPLICAS
            gates = {f"{pod.namespace}/{pod.name}": pod.scheduling_gates for pod, _ in members}
            self.waiting = self.waiting or any(p.gated for p in pods)
            for key in pods_to_release(group, pods, now_s=time.time(), one_replica_at_a_time=one_at_a_time):
                namespace, name = key.split("/", 1)
                remaining = [{"name": g} for g in gates[key] if g != DEPENDENCY_ORDER_GATE]
                try:
                    self._core.patch_namespaced_pod(
                        name, namespace, [{"op": "replace", "path": "/spec/schedulingGates", "value": remaining}]
                    )
                    released.append(key)
                    self._released_at[key] = time.time()
                    log.info("released", extra={"event": "released", "pod": key, "appgroup": group.name})
                except kube.ApiException as error:
                    log.warning("releasing %s failed: %s", key, error.reason)
            self._write_status(group)
        self._released_at = {key: at for key, at in self._released_at.items() if key in members_now}
        return released

    def _write_status(self, group: Any) -> None:
        status = appgroup_status(group, self._store.placements(group))
        key = f"{group.namespace}/{group.name}"
        if self._written_status.get(key) == status:
            return
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, group.namespace, "appgroups", group.name, {"status": status}
            )
            self._written_status[key] = status
        except kube.ApiException as error:
            log.warning("writing status of AppGroup %s failed: %s", key, error.reason)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_INTERVAL_S):
            version = self._store.version
            # Nothing changed: only a pod still waiting (for an absent dependency's grace period) needs a pass.
            if not self._store.ready or (version == self._seen_version and not self.waiting):
                continue
            self._seen_version = version
            try:
                self.reconcile_once()
            except Exception:  # keep the controller alive; the next change retries
                log.exception("AppGroup reconcile failed")

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self.run, args=(stop,), name="appgroup-controller", daemon=True).start()
