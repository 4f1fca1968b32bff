"""The AviatorPolicy controller: steers a Service's traffic to the endpoints that answer best.

For each AviatorPolicy (namespaced; `spec.targetRef` names a Service in its namespace), every
`spec.evaluationInterval` the controller:

1. reads the target Service's EndpointSlices (label `kubernetes.io/service-name`) and their ready endpoints;
2. probes `spec.probesPerQuery` of the ready endpoints' `/netaware/probe` (requests in flight, latency estimate)
   concurrently, those probed longest ago first, so a large Service is probed in rotation;
3. chooses among the latest probes of at most `spec.probePoolSize` endpoints by the policy's algorithm, with circuit
   breaker, hysteresis and dampening (core/endpoints.py);
4. keeps a selector-less Service `<target>-aviator` with the target's ports, and its EndpointSlice holding the
   chosen endpoints, both owned by the policy: clients that call `<target>-aviator` reach only chosen endpoints,
   through kube-proxy as usual (an extra slice for the target Service itself would be added to its endpoints,
   not replace them);
5. writes the policy's status: active and total endpoints, the chosen endpoints' p50/p99 latency estimate,
   lastEvaluated, observedGeneration, and a message (what went wrong, if anything).

Deleting a policy removes its Service and EndpointSlice at once (finalizer `netaware.io/aviator-cleanup`; owner
references let the garbage collector catch anything left behind). Level-triggered: each tick lists the policies,
so a missed event or a controller restart changes nothing but timing.

`/healthz` and `/metrics` on --metrics.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from werkzeug.serving import make_server

from netaware.core.endpoints import EndpointProbe, EndpointSelector, SelectionPolicy
from netaware.core.quantities import duration_seconds
from netaware.core.slices import SERVICE_NAME_LABEL, SliceEndpoint, slice_endpoints
from netaware.kube import api as kube
from netaware.kube.api import API_ERRORS, ApiException
from netaware.kube.applying import apply_manifests
from netaware.kube.clients import api_client
from netaware.kube.converters import GROUP, VERSION
from netaware.kube.watching import list_raw
from netaware.router.aviatorobjects import (
    DEFAULT_INTERVAL_S,
    FINALIZER,
    PLURAL,
    POLICY_LABEL,
    SUFFIX,
    PolicyError,
    evaluated_status,
    selection_policy,
    shadow_service,
    shadow_slices,
)
from netaware.router.replica import PROBE_PATH

log = logging.getLogger("netaware.aviator")


@dataclass
class Target:
    """The target Service's ready endpoints, keyed "ip:port" (its slice's first port, which is probed)."""

    endpoints: dict[str, SliceEndpoint]
    service_ports: list[dict[str, Any]]


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter("netaware_aviator_evaluations", "Policy evaluations", ["outcome"], registry=registry)
        self.probes = Counter("netaware_aviator_probes", "Endpoint probes", ["outcome"], registry=registry)
        self.active = Gauge(
            "netaware_aviator_active_endpoints", "Endpoints selected", ["namespace", "policy"], registry=registry
        )
        self.total = Gauge(
            "netaware_aviator_total_endpoints", "Ready endpoints", ["namespace", "policy"], registry=registry
        )
        self.changes = Counter(
            "netaware_aviator_selection_changes", "Times the selected set changed", ["namespace", "policy"],
            registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "netaware_aviator_evaluation_seconds", "Time to evaluate one policy (probes included)", registry=registry
        )


class AviatorController:
    def __init__(
        self,
        api: kube.ApiClient,
        *,
        namespace: str | None = None,
        probe_timeout_s: float = 1.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = kube.CustomObjectsApi(api)
        self.core = kube.CoreV1Api(api)
        self.discovery = kube.DiscoveryV1Api(api)
        self.probe_timeout_s = probe_timeout_s
        self.registry = registry or CollectorRegistry()
        self.metrics = ControllerMetrics(self.registry)
        self.selectors: dict[tuple[str, str], tuple[int, EndpointSelector]] = {}
        self.due_at: dict[tuple[str, str], float] = {}
        self.written: dict[tuple[str, str], object] = {}
        """What was last written for each policy (the owned Service and slices)."""
        self.synced = threading.Event()
        self._probes = ThreadPoolExecutor(max_workers=32, thread_name_prefix="aviator-probe")
        self._session = requests.Session()

    # --- the loop ---------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, tick_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.reconcile_all(time.monotonic())
                self.synced.set()
            except API_ERRORS as error:  # the API is down or restarting: try again next tick
                log.warning("listing AviatorPolicies failed", extra={"error": str(error)})
            stop.wait(tick_s)

    def reconcile_all(self, now_s: float) -> None:
        namespace = self.namespace
        if namespace:
            listed = list_raw(lambda **kw: self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, **kw))  # fmt: skip
        else:
            listed = list_raw(lambda **kw: self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw))
        seen = set()
        for policy in listed.get("items") or []:
            key = (policy["metadata"]["namespace"], policy["metadata"]["name"])
            seen.add(key)
            if policy["metadata"].get("deletionTimestamp"):
                self.finalize(policy)
                continue
            generation = policy["metadata"].get("generation", 0)
            known = self.selectors.get(key)
            if known is not None and known[0] == generation and now_s < self.due_at.get(key, 0.0):
                continue
            try:
                self.reconcile(policy, now_s)
            except ApiException as error:
                self.metrics.evaluations.labels("api-error").inc()
                log.warning("reconcile failed", extra={"policy": "/".join(key), "error": error.reason})
        for gone in set(self.selectors) - seen:
            self.selectors.pop(gone)
            self.due_at.pop(gone, None)
            self.written.pop(gone, None)

    # --- one policy -------------------------------------------------------------------------------------------

    def reconcile(self, policy: dict[str, Any], now_s: float) -> None:
        started = time.perf_counter()
        meta, spec = policy["metadata"], policy.get("spec") or {}
        namespace, name = meta["namespace"], meta["name"]
        key = (namespace, name)
        if FINALIZER not in (meta.get("finalizers") or []):
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name,
                {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER],
                              "resourceVersion": meta["resourceVersion"]}},
            )  # fmt: skip
        try:
            interval_s = duration_seconds(spec.get("evaluationInterval", "5s"))
        except ValueError:
            interval_s = DEFAULT_INTERVAL_S
        self.due_at[key] = now_s + interval_s
        generation = meta.get("generation", 0)
        try:
            settings = selection_policy(spec)
        except PolicyError as error:
            self._write_status(policy, {"message": f"invalid policy: {error}"})
            self.metrics.evaluations.labels("invalid").inc()
            # Remember the generation so the invalid spec is reported once per interval, not on every tick.
            self.selectors[key] = (generation, EndpointSelector(SelectionPolicy()))
            return
        known = self.selectors.get(key)
        if known is None or known[0] != generation:  # a changed spec keeps the breaker's history and the pool
            selector = EndpointSelector(settings)
            if known is not None:
                selector.history, selector.open_until_s = known[1].history, known[1].open_until_s
                selector.selected, selector.pool = known[1].selected, known[1].pool
                selector.probed_at_s = known[1].probed_at_s
            self.selectors[key] = (generation, selector)
        selector = self.selectors[key][1]
        target_name = spec["targetRef"]["name"]
        target = self._target(namespace, target_name)
        if target is None:
            self._write_status(
                policy, {"message": f"Service {namespace}/{target_name} not found", "activeEndpoints": 0,
                         "totalEndpoints": 0},
            )  # fmt: skip
            self.metrics.evaluations.labels("no-target").inc()
            return
        probes = self._probe_all(selector.probe_targets(list(target.endpoints)))
        before = selector.selected
        selected = selector.evaluate(probes, ready=list(target.endpoints), now_s=now_s)
        if selected != before:
            self.metrics.changes.labels(namespace, name).inc()
            log.info("selection changed", extra={"policy": f"{namespace}/{name}", "selected": list(selected),
                                                  "before": list(before)})  # fmt: skip
        # Write on change only (an unchanged selection costs no API call), and re-assert once a minute in case
        # someone edited or deleted what we own.
        fingerprint = (target_name, [(a, target.endpoints[a]) for a in selected], target.service_ports, now_s // 60)
        if self.written.get(key) != fingerprint:
            self._write_shadow(policy, target_name, target, selected)
            self.written[key] = fingerprint
        status = evaluated_status(
            target_name=target_name, selected=selected, total=len(target.endpoints), probes=probes,
            pooled=selector.pooled(),
        )  # fmt: skip
        self._write_status(policy, status)
        self.metrics.active.labels(namespace, name).set(len(selected))
        self.metrics.total.labels(namespace, name).set(len(target.endpoints))
        self.metrics.evaluations.labels("ok").inc()
        self.metrics.duration.observe(time.perf_counter() - started)

    def _target(self, namespace: str, service_name: str) -> Target | None:
        try:
            service = list_raw(lambda **kw: self.core.read_namespaced_service(service_name, namespace, **kw))
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        service_ports = (service.get("spec") or {}).get("ports") or []
        slices = list_raw(lambda **kw: self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"{SERVICE_NAME_LABEL}={service_name}", **kw))  # fmt: skip
        ready = [e for e in slice_endpoints(slices.get("items") or []) if e.ready]
        endpoints = {e.address: e for e in ready}
        return Target(endpoints, service_ports)

    def _probe_all(self, endpoints: list[str]) -> list[EndpointProbe]:
        return list(self._probes.map(self._probe, endpoints))

    def _probe(self, endpoint: str) -> EndpointProbe:
        try:
            answer = self._session.get(f"http://{endpoint}{PROBE_PATH}", timeout=self.probe_timeout_s)
            answer.raise_for_status()
            body = answer.json()
            probe = EndpointProbe(endpoint, ok=True, rif=int(body["rif"]), latency_ms=float(body["latencyMs"]))
        except (requests.RequestException, ValueError, KeyError, TypeError):
            probe = EndpointProbe(endpoint, ok=False)
        self.metrics.probes.labels("ok" if probe.ok else "error").inc()
        return probe

    # --- owned objects ----------------------------------------------------------------------------------------

    def _write_shadow(
        self, policy: dict[str, Any], target_name: str, target: Target, selected: tuple[str, ...]
    ) -> None:
        namespace, policy_name = policy["metadata"]["namespace"], policy["metadata"]["name"]
        service = shadow_service(policy, target_name, target.service_ports)
        slices = shadow_slices(policy, target_name, target.endpoints, selected)
        names = {endpoint_slice["metadata"]["name"] for endpoint_slice in slices}
        # Server-side apply: creates or updates, and drops what we no longer declare (a port the target lost).
        apply_manifests(self.api, [service, *slices])
        owned = list_raw(lambda **kw: self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"{POLICY_LABEL}={policy_name}", **kw))  # fmt: skip
        for stale in owned.get("items") or []:
            if stale["metadata"]["name"] not in names:
                self._delete_if_present(
                    self.discovery.delete_namespaced_endpoint_slice, stale["metadata"]["name"], namespace
                )

    @staticmethod
    def _delete_if_present(delete: Any, name: str, namespace: str) -> None:
        try:
            delete(name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    def _write_status(self, policy: dict[str, Any], status: dict[str, Any]) -> None:
        meta = policy["metadata"]
        status = {**status, "observedGeneration": meta.get("generation", 0),
                  "lastEvaluated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": status}
            )
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise

    def finalize(self, policy: dict[str, Any]) -> None:
        """The policy is being deleted: remove what it owns, then let it go."""
        meta = policy["metadata"]
        namespace = meta["namespace"]
        name = (policy.get("spec") or {}).get("targetRef", {}).get("name", "") + SUFFIX
        self.discovery.delete_collection_namespaced_endpoint_slice(
            namespace, label_selector=f"{POLICY_LABEL}={meta['name']}"
        )
        self._delete_if_present(self.core.delete_namespaced_service, name, namespace)
        self.written.pop((namespace, meta["name"]), None)
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        if len(finalizers) != len(meta.get("finalizers") or []):
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, meta["name"],
                {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
            )  # fmt: skip
            log.info("policy finalized", extra={"policy": f"{namespace}/{meta['name']}", "removed": name})
        self.selectors.pop((namespace, meta["name"]), None)


def status_app(controller: AviatorController) -> Flask:
    app = Flask("netaware-aviator")

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        ready = controller.synced.is_set()
        return jsonify(status="ok" if ready else "starting", policies=len(controller.selectors)), 200 if ready else 503

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(controller.registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def run_controller(arguments: argparse.Namespace) -> None:
    """`netaware-router controller`: run until SIGTERM/SIGINT."""
    import signal

    kubeconfig: Path | None = arguments.kubeconfig
    controller = AviatorController(
        api_client(kubeconfig), namespace=arguments.namespace, probe_timeout_s=arguments.probe_timeout
    )
    host, port = arguments.metrics
    server = make_server(host, port, status_app(controller), threaded=True)
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info(
        "aviator controller running",
        extra={"namespace": arguments.namespace or "(all)", "metrics": f"{host}:{server.server_port}"},  # port 0 works
    )
    controller.run(stop)
    server.shutdown()
