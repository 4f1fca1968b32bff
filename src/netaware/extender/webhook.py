"""`netaware-webhook`: the mutating admission webhook that puts an existing app's pods behind the
`netaware.io/dependency-order` gate, so an app needs only its AppGroup and `schedulerName` for the AppGroup
controller to order or plan it (extender/releasing.py); no change to its manifests.

It gates a pod when it is created in a namespace labelled `netaware.io/gate=enabled` (the MutatingWebhookConfiguration's
namespaceSelector: opt-in), names the netaware scheduler, is not bound yet and matches a workload of an AppGroup in
its namespace (the AppGroups it watches). Anything else is admitted unchanged, with the reason in the log. The
configuration's `failurePolicy: Ignore` means a webhook that is down never blocks a pod: it is then scheduled pod by
pod, as without the gate.

TLS comes from the project's own PKI code: at start it makes a CA and a serving certificate for its Service's DNS
names (and any addresses given), and writes the CA into the configuration's `caBundle`, so a restart is a new CA and
nothing needs cert-manager or a Secret. Health, readiness (AppGroups listed) and metrics share its one TLS port.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from netaware.certificates import create_ca, issue_serving_certificate
from netaware.core.release import DEPENDENCY_ORDER_GATE
from netaware.kube import api as kube
from netaware.kube.stores import ClusterStore, pod_info
from netaware.logs import configure_logging
from netaware.serving import WsgiServer

log = logging.getLogger("netaware.webhook")

CONFIGURATION = "netaware-gate"
"""The MutatingWebhookConfiguration whose caBundle the webhook keeps (scheduler-extender/webhook.yaml)."""
NAMESPACE_LABEL = "netaware.io/gate"
"""A namespace opts in with this label set to `enabled`."""
SCHEDULER_NAME = "netaware-scheduler"
CA_RETRY_S = 5.0


class ReviewError(ValueError):
    """An AdmissionReview the webhook cannot read: the message names the field."""


def gate_patch(review: Mapping[str, Any], store: ClusterStore, scheduler_name: str) -> tuple[list[dict[str, Any]], str]:
    """The JSON patch that adds the gate to the reviewed pod (empty when it is left alone) and why."""
    review_request = review.get("request")
    if not isinstance(review_request, Mapping) or not review_request.get("uid"):
        raise ReviewError("request.uid is missing: not an AdmissionReview")
    pod = review_request.get("object")
    if not isinstance(pod, Mapping) or pod.get("kind") != "Pod":
        return [], "not a Pod"
    if review_request.get("operation") != "CREATE":
        return [], "not a creation"
    spec = pod.get("spec")
    metadata = pod.get("metadata")
    if not isinstance(spec, Mapping) or not isinstance(metadata, Mapping):
        raise ReviewError("request.object.spec and .metadata must be objects")
    if spec.get("schedulerName") != scheduler_name:
        return [], f"not for {scheduler_name}"
    if spec.get("nodeName"):
        return [], "already bound to a node"
    gates = [g for g in spec.get("schedulingGates") or [] if isinstance(g, Mapping)]
    if any(g.get("name") == DEPENDENCY_ORDER_GATE for g in gates):
        return [], "already gated"
    # Pods of a ReplicaSet arrive with generateName only and, before defaulting, maybe no namespace.
    named = {**metadata, "name": metadata.get("name") or metadata.get("generateName") or "pod",
             "namespace": review_request.get("namespace") or metadata.get("namespace")}  # fmt: skip
    try:
        membership = store.workload_of(pod_info({**pod, "metadata": named}))
    except ValueError as error:
        raise ReviewError(f"request.object: {error}") from None
    if membership is None:
        return [], "matches no AppGroup workload in its namespace"
    group, workload = membership
    value = [*gates, {"name": DEPENDENCY_ORDER_GATE}]
    return [{"op": "add", "path": "/spec/schedulingGates", "value": value}], f"gated: {group.name}/{workload}"


def create_webhook_app(store: ClusterStore, scheduler_name: str = SCHEDULER_NAME) -> Flask:
    app = Flask("netaware.webhook")
    registry = CollectorRegistry()
    reviews = Counter(
        "netaware_webhook_reviews", "Admission reviews answered, by outcome", ["outcome"], registry=registry
    )

    @app.post("/mutate")
    def mutate() -> Response:
        review = request.get_json(force=True, silent=True)
        if not isinstance(review, Mapping):
            reviews.labels("bad-request").inc()
            return _error("the body must be an AdmissionReview in JSON")
        try:
            patch, reason = gate_patch(review, store, scheduler_name)
        except ReviewError as error:
            reviews.labels("bad-request").inc()
            return _error(str(error))
        reviews.labels("gated" if patch else "unchanged").inc()
        review_request = review["request"]
        log.info("review", extra={"namespace": review_request.get("namespace"), "gated": bool(patch), "reason": reason,
                                  "pod": (review_request.get("object") or {}).get("metadata", {}).get("generateName")
                                  or review_request.get("name")})  # fmt: skip
        response: dict[str, Any] = {"uid": review_request["uid"], "allowed": True}
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        return jsonify({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        ready = store.synced["appgroups"]
        response = jsonify({"ready": ready, "reason": "" if ready else "AppGroups not listed yet"})
        response.status_code = 200 if ready else 503
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def _error(reason: str) -> Response:
    response = jsonify({"error": reason})
    response.status_code = 400
    return response


def serving_certificate(
    directory: Path, dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> tuple[Path, Path, bytes]:
    """A fresh CA and a serving certificate from it in `directory`: (certificate, key, the CA in PEM)."""
    ca = create_ca(directory, "netaware-webhook-ca")
    cert, key = issue_serving_certificate(
        directory, "serving", common_name=dns_names[0] if dns_names else "netaware-webhook",
        dns_names=dns_names, ip_addresses=ip_addresses,
    )  # fmt: skip
    return cert, key, ca.read_bytes()


def publish_ca(api: kube.ApiClient, configuration: str, ca_pem: bytes, stop: threading.Event) -> None:
    """Write the CA into every webhook of the configuration, retrying until it exists (it may be applied later)."""
    admission = kube.AdmissionregistrationV1Api(api)
    bundle = base64.b64encode(ca_pem).decode()
    while not stop.is_set():
        try:
            current = admission.read_mutating_webhook_configuration(configuration)
            patch = [{"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
                     for i in range(len(current.webhooks or []))]  # fmt: skip
            admission.patch_mutating_webhook_configuration(configuration, patch)
            log.info("caBundle written", extra={"configuration": configuration, "webhooks": len(patch)})
            return
        except kube.ApiException as error:
            log.warning("writing the caBundle of %s failed (%s); retrying", configuration, error.reason)
        stop.wait(CA_RETRY_S)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="netaware-webhook",
        description="Admission webhook: puts pods of AppGroup workloads behind the netaware.io/dependency-order gate "
        "in namespaces labelled netaware.io/gate=enabled.",
    )
    env = os.environ.get
    parser.add_argument("--host", default=env("NETAWARE_WEBHOOK_HOST", "0.0.0.0"), help="address to listen on")
    parser.add_argument("--port", type=int, default=int(env("NETAWARE_WEBHOOK_PORT", "9443")),
                        help="TLS port the API server calls (default 9443)")  # fmt: skip
    parser.add_argument("--dns-name", action="append", default=None,
                        help="a name the serving certificate holds (repeatable; default "
                             "netaware-webhook.netaware.svc and its longer forms)")  # fmt: skip
    parser.add_argument("--ip-address", action="append", default=[],
                        help="an address the serving certificate holds (repeatable), e.g. 127.0.0.1")  # fmt: skip
    parser.add_argument("--cert-dir", type=Path, default=None,
                        help="where to write the CA and certificate (default: a fresh temporary folder)")  # fmt: skip
    parser.add_argument(
        "--configuration",
        default=CONFIGURATION,
        help=f"MutatingWebhookConfiguration to write the caBundle of (default {CONFIGURATION})",
    )
    parser.add_argument("--scheduler-name", default=SCHEDULER_NAME, help="the scheduler whose pods to gate")
    parser.add_argument("--kubeconfig", type=Path, default=env("NETAWARE_WEBHOOK_KUBECONFIG") or None,
                        help="kubeconfig to watch AppGroups with; unset: the in-cluster service account")  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 < args.port <= 65535:
        parser.error(f"--port: {args.port} is not a port")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging()
    names = args.dns_name or [f"netaware-webhook.netaware.{suffix}" for suffix in ("svc", "svc.cluster.local")]
    directory = args.cert_dir or Path(tempfile.mkdtemp(prefix="netaware-webhook-"))
    try:
        cert, key, ca_pem = serving_certificate(directory, names, args.ip_address)
    except (OSError, ValueError) as error:
        sys.exit(f"error: --cert-dir {directory}: {error}")

    def load() -> Flask:
        # Runs in the worker after fork, so the watch and the caBundle thread live in the process that serves.
        from netaware.kube.clients import api_client
        from netaware.kube.watching import start_watches

        store = ClusterStore()
        api = api_client(args.kubeconfig)
        stop = start_watches(api, store, kinds=["appgroups"])
        threading.Thread(target=publish_ca, args=(api, args.configuration, ca_pem, stop), daemon=True).start()
        return create_webhook_app(store, args.scheduler_name)

    WsgiServer(load, host=args.host, port=args.port, threads=4, certfile=cert, keyfile=key).run()


if __name__ == "__main__":
    main()
