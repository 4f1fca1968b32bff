"""`netaware-aggregator`'s HTTP API (Flask): probe agents post reports, consumers read the topology.

- `POST /v1/reports` (bearer token): one probe report (`core.telemetry.REPORT_SCHEMA`). 202 when accepted (and
  journalled: a restart loses nothing accepted), 400 for a body that is not JSON, 401 without a valid token, 413
  over the size limit, 415 for another content type, 422 naming every invalid field, 503 when the journal could not
  be written (nothing of the report was kept; the agent sends it again).
- `GET /v1/topology`: every directed pair of the known nodes, measured or estimated (with its source and when it
  was measured), and the nodes whose reports went stale.
- `GET /v1/bandwidth-plan?node=N`: the node's role in the current bandwidth slot (iperf3 client of a peer,
  server, or idle), from a round-robin tournament run once per direction, so no node is in two tests at once.
- `GET /`: a page with node-to-node RTT, bandwidth and loss heatmaps (measured, estimated, unknown), live.
- `GET /v1/openapi.json`: this API as OpenAPI 3.1. `/healthz`, `/metrics`.

The node list is a callable (a static list, or the cluster's Nodes), so reports from or about unknown nodes are
refused rather than stored.
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from netaware.aggregator.journal import JournalError, ReportJournal
from netaware.aggregator.reading import SharedTopology, TopologyForm
from netaware.core.peers import bandwidth_slot
from netaware.core.telemetry import REPORT_SCHEMA, LinkAggregator, ReportError, parse_report

PAGE = Path(__file__).with_name("static") / "index.html"
MAX_REPORT_BYTES = 512 * 1024
"""A report of 1,000 peers with every field set is about 120 KB."""

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "netaware aggregator",
        "version": "v1",
        "description": "Probe reports in, node-to-node network topology out.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Report": REPORT_SCHEMA, "Error": _ERROR},
    },
    "paths": {
        "/v1/reports": {
            "post": {
                "summary": "Submit one probe report",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}},
                },
                "responses": {
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
                    for code, text in [
                        ("400", "not JSON"),
                        ("401", "missing or bad token"),
                        ("413", "too large"),
                        ("415", "not application/json"),
                        ("422", "invalid fields"),
                        ("503", "the journal could not be written"),
                    ]
                }
                | {
                    "202": {
                        "description": "accepted",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["accepted"],
                                    "properties": {"accepted": {"type": "integer"}},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/v1/topology": {
            "get": {
                "summary": "The current topology",
                "responses": {
                    "200": {
                        "description": "links between known nodes",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "required": ["nodes", "links", "staleNodes"]}
                            }
                        },
                    }
                },
            }
        },
        "/v1/bandwidth-plan": {
            "get": {
                "summary": "What a node does in the current bandwidth slot (iperf3 client, server or idle)",
                "parameters": [
                    {"name": "node", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}}
                ],
                "responses": {
                    "200": {
                        "description": "the node's role in the current slot",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["role", "slotStart", "slotEnd", "seconds"],
                                    "properties": {
                                        "role": {"enum": ["client", "server", "idle"]},
                                        "peer": {"type": ["string", "null"]},
                                        "slotStart": {"type": "number"},
                                        "slotEnd": {"type": "number"},
                                        "seconds": {"type": "integer"},
                                    },
                                }
                            }
                        },
                    },
                    "422": {
                        "description": "unknown node",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
        "/": {
            "get": {
                "summary": "Heatmaps of RTT, bandwidth and loss",
                "responses": {"200": {"description": "the page", "content": {"text/html": {}}}},
            }
        },
    },
}


class FreshnessCollector(Collector):
    """At scrape time, from the aggregator's state: directed pairs by source (a pair with no value counts as
    `missing`), each known node's report age (+Inf before its first report: unknown is never fresh) and the TTL."""

    def __init__(self, shared: SharedTopology) -> None:
        self.shared = shared

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            reading = self.shared.read()
        except Exception:  # the node list's source (the API server) away: the nodes heard from still count
            reading = self.shared.compute(sorted(self.shared.aggregator.last_report_s), {})
        current, now_s, last_report_s = reading.topology, reading.now_s, reading.last_report_s
        names = current.nodes
        links = GaugeMetricFamily("netaware_aggregator_links", "Directed pairs in the topology", labels=["source"])
        by_source = {"measured": 0, "estimated": 0}
        for metrics in current.links.values():
            by_source[metrics.source] = by_source.get(metrics.source, 0) + 1
        by_source["missing"] = len(names) * (len(names) - 1) - len(current.links)
        for source, count in by_source.items():
            links.add_metric([source], count)
        age = GaugeMetricFamily(
            "netaware_aggregator_report_age_seconds", "Seconds since the node's newest report", labels=["node"]
        )
        for node in names:
            age.add_metric([node], now_s - last_report_s.get(node, -math.inf))
        ttl = GaugeMetricFamily("netaware_aggregator_ttl_seconds", "Age at which a link is priced as stale")
        ttl.add_metric([], self.shared.aggregator.ttl_s)
        yield from (links, age, ttl)


def create_app(
    *,
    token: str,
    nodes: Callable[[], Iterable[str]],
    journal: ReportJournal | None = None,
    ttl_s: float = 60.0,
    zones: Callable[[], dict[str, str]] = dict,
    clock: Callable[[], float] = time.time,
    bandwidth_slot_s: float = 5.0,
    bandwidth_test_s: int = 2,
    api: Any = None,
    publish_every_s: float = 5.0,
    topology_form: TopologyForm = "compact",
) -> Flask:
    """The aggregator app. With `api` (a kubernetes ApiClient) it recovers measured links from the published
    NetworkTopologies at start and publishes the topology every `publish_every_s` (only what changed)."""
    if not token:
        raise ValueError("the aggregator needs a token (agents authenticate with it)")
    app = Flask("netaware-aggregator")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REPORT_BYTES
    aggregator = LinkAggregator(ttl_s=ttl_s)
    lock = threading.Lock()
    registry = CollectorRegistry()
    reports = Counter("netaware_aggregator_reports", "Reports received", ["outcome"], registry=registry)
    shared = SharedTopology(aggregator, lock, nodes=nodes, zones=zones, clock=clock)
    registry.register(FreshnessCollector(shared))
    if journal is not None:
        Gauge(
            "netaware_aggregator_journal_reports_per_fsync", "Reports each journal fsync made durable, on average",
            registry=registry,
        ).set_function(lambda: journal.lines / max(1, journal.commits))  # fmt: skip
    if journal is not None:
        replayed = 0
        for data in journal.replay(restore=aggregator.restore):
            aggregator.ingest(parse_report(data))
            replayed += 1
        app.logger.info("replayed %d reports from the journal", replayed)

        def state() -> Any:
            with lock:
                return aggregator.state()

        journal.compact_with(state)
    if api is not None:  # after the journal: a published link seeds only what the journal has nothing newer for
        from netaware.aggregator.publishing import Publisher, recover

        recovered = recover(api, aggregator)
        app.logger.info("recovered %d measured links from NetworkTopology resources", recovered)
    app.extensions["netaware-aggregator"] = aggregator
    if api is not None:
        publisher = Publisher(api, shared, debounce_s=publish_every_s, form=topology_form)
        stop = threading.Event()
        publisher.start(stop)
        app.extensions["netaware-publisher"] = (publisher, stop)

    known: list[Any] = [None, frozenset()]

    def known_nodes() -> frozenset[str]:
        """The node list as a set, made again only when the list itself is another object (it is cached)."""
        current = nodes()
        if current is not known[0]:
            known[:] = [current, frozenset(current)]
        return known[1]  # type: ignore[no-any-return]

    def refused(status: int, error: str, problems: list[str] | None = None) -> tuple[Response, int]:
        reports.labels(str(status)).inc()
        body: dict[str, Any] = {"error": error}
        if problems is not None:
            body["problems"] = problems
        return jsonify(body), status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
        return refused(413, f"report larger than {MAX_REPORT_BYTES} bytes")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        # Werkzeug's own response keeps the headers that belong to the error (Allow on a 405), with a JSON body.
        response = error.get_response()
        response.set_data(json.dumps({"error": error.description or error.name}))
        response.content_type = "application/json"
        return response  # type: ignore[return-value]

    @app.post("/v1/reports")
    def post_report() -> tuple[Response, int]:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            return refused(401, "missing or bad bearer token")
        if request.mimetype != "application/json":
            return refused(415, "the report must be application/json")
        data = request.get_json(silent=True)
        if data is None:
            return refused(400, "the body is not JSON")
        try:
            report = parse_report(data, known_nodes=known_nodes(), now_s=clock())
        except ReportError as error:
            return refused(422, "invalid report", error.problems)

        def fold_in() -> None:
            with lock:
                aggregator.ingest(report)

        if journal is None:
            fold_in()
        else:
            try:
                journal.append(data, then=fold_in, encoded=request.get_data(as_text=True))  # durable, then folded
            except JournalError as error:
                app.logger.error("journal_write_failed", extra={"error": str(error)})
                return refused(503, "the report could not be made durable; nothing of it was kept", [str(error)])
        reports.labels("202").inc()
        return jsonify(accepted=len(report.peers)), 202

    @app.get("/v1/topology")
    def topology() -> Response:
        reading = shared.read()
        current, stale = reading.topology, reading.stale_nodes
        links = [
            {"origin": o, "destination": d, "rttMs": m.rtt_ms, "jitterMs": m.jitter_ms, "lossRatio": m.loss_ratio,
             "bandwidthMbps": m.bandwidth_mbps, "source": m.source, "measuredAt": m.measured_at_s, "samples": m.samples}
            for (o, d), m in sorted(current.links.items())
        ]  # fmt: skip
        return jsonify(nodes=list(current.nodes), links=links, staleNodes=stale, ttlSeconds=aggregator.ttl_s)

    @app.get("/v1/bandwidth-plan")
    def bandwidth_plan() -> tuple[Response, int]:
        node = request.args.get("node", "")
        members = sorted(nodes())
        if node not in members:
            return jsonify(error=f"node {node!r} is not a known node"), 422
        role, peer, start, end = bandwidth_slot(node, members, now_s=clock(), slot_s=bandwidth_slot_s)
        return jsonify(role=role, peer=peer, slotStart=start, slotEnd=end, seconds=bandwidth_test_s), 200

    @app.get("/")
    def page() -> Response:
        """The heatmaps of RTT, bandwidth and loss, refreshed every 5 s from /v1/topology."""
        return Response(PAGE.read_bytes(), mimetype="text/html")

    @app.get("/v1/openapi.json")
    def openapi() -> Response:
        return jsonify(OPENAPI)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app
