"""The extender's HTTP API (Flask): POST /filter, POST /prioritize, GET /healthz, /readyz, /metrics.

Wire format (reference/extender-protocol.md): capitalised keys; requests carry `Pod` and either `NodeNames`
(nodeCacheCapable) or `Nodes` (a NodeList); /filter answers ExtenderFilterResult, /prioritize a bare JSON list
of {"Host", "Score"} with scores 0..10. A request that is not a valid ExtenderArgs gets 400 with the reason in
`Error` (kube-scheduler never sends one; a fuzzer or a misconfigured caller does), never a 5xx or a crash.

A pod of no AppGroup passes the filter untouched and gets equal scores (0): the scheduler's own plugins decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from werkzeug.exceptions import HTTPException

from netaware.core.appgroup import CostWeights
from netaware.core.lookahead import LOOKAHEAD, PendingPod, lookahead_costs, rank_extender_scores
from netaware.core.planning import PLAN
from netaware.core.scoring import STRATEGIES, ScoreTable, candidate_indices, filter_hard_limits, score_candidates
from netaware.extender.planned import GroupPlans
from netaware.kube.stores import ClusterStore, PodInfo, pod_info

log = logging.getLogger("netaware.extender")

# Extender latency budget: kube-scheduler waits for it inside the scheduling cycle; sub-ms to a second.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class BadRequestError(ValueError):
    pass


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "netaware_extender_requests", "Extender requests by verb and HTTP code", ["verb", "code"], registry=registry
        )
        self.duration = Histogram(
            "netaware_extender_request_duration_seconds",
            "Time to answer an extender request",
            ["verb"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.pods = Counter(
            "netaware_extender_pods",
            "Pods seen by verb, by whether they belong to an AppGroup",
            ["verb", "membership"],
            registry=registry,
        )
        self.filtered_nodes = Counter(
            "netaware_extender_filtered_nodes", "Nodes failed by a hard limit", registry=registry
        )
        self.synced = Gauge(
            "netaware_extender_cache_synced", "1 when the watched kind is listed", ["kind"], registry=registry
        )


def _parse_args(body: Any) -> tuple[PodInfo, list[str], list[Mapping[str, Any]] | None]:
    """ExtenderArgs -> (pod, candidate node names, the NodeList items in non-cache mode or None)."""
    if not isinstance(body, Mapping):
        raise BadRequestError("request body must be a JSON object (ExtenderArgs)")
    pod = body.get("Pod")
    if not isinstance(pod, Mapping):
        raise BadRequestError("ExtenderArgs.Pod must be a Pod object")
    try:
        info = pod_info(pod)
    except ValueError as error:
        raise BadRequestError(str(error)) from None
    names = body.get("NodeNames")
    nodes = body.get("Nodes")
    if names is not None:
        # Set operations run in C: this check is on the hot path with thousands of names.
        if not isinstance(names, list) or not set(map(type, names)) <= {str} or "" in names:
            raise BadRequestError("ExtenderArgs.NodeNames must be a list of node names")
        return info, list(names), None
    if nodes is not None:
        items = nodes.get("items") if isinstance(nodes, Mapping) else None
        if not isinstance(items, list):
            raise BadRequestError("ExtenderArgs.Nodes must be a NodeList with items")
        node_names = []
        for item in items:
            name = (item.get("metadata") or {}).get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str) or not name:
                raise BadRequestError("every item of ExtenderArgs.Nodes needs metadata.name")
            node_names.append(name)
        return info, node_names, items
    raise BadRequestError("ExtenderArgs needs NodeNames (nodeCacheCapable) or Nodes")


def create_app(
    *,
    store: ClusterStore,
    default_weights: CostWeights,
    default_strategy: str,
    max_body_bytes: int,
    plans: GroupPlans | None = None,
) -> Flask:
    """`plans`: the group plans shared with the AppGroup controller (one per store when not given)."""
    app = Flask("netaware.extender")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    # Replies go to a machine on the scheduling hot path: no key sorting, no pretty-printing.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    plans = plans or GroupPlans(store)

    def scoring_inputs(pod: PodInfo, names: Sequence[str]) -> dict[str, Any] | None:
        """The inputs every core scoring function takes, for this pod; None for a pod of no AppGroup."""
        membership = store.workload_of(pod)
        if membership is None:
            return None
        group, workload = membership
        return {
            "link_costs": store.link_costs(group.weights or default_weights),
            "appgroup": group,
            "workload": workload,
            "placements": store.placements(group),
            "candidates": names,
        }

    def score(pod: PodInfo, names: Sequence[str]) -> tuple[Any, str] | None:
        inputs = scoring_inputs(pod, names)
        if inputs is None:
            return None
        group = inputs["appgroup"]
        strategy = group.strategy or default_strategy
        if strategy not in STRATEGIES and strategy not in (LOOKAHEAD, PLAN):
            log.warning("AppGroup %s/%s names unknown strategy %r; using %s", group.namespace, group.name, strategy,
                        default_strategy)  # fmt: skip
            strategy = default_strategy
        if strategy == LOOKAHEAD:
            return with_lookahead(pod, inputs), f"{group.name}/{inputs['workload']}"
        if strategy == PLAN:
            return with_plan(inputs), f"{group.name}/{inputs['workload']}"
        return score_candidates(**inputs, strategy=strategy), f"{group.name}/{inputs['workload']}"

    def with_lookahead(pod: PodInfo, inputs: dict[str, Any]) -> ScoreTable:
        """The seed cost plus the capacity lookahead (core/lookahead.py): this pod's unplaced neighbour pods are
        put, on paper, where there is room nearest each candidate; scored by rank (best alone at 10)."""
        table = score_candidates(**inputs, strategy="seed")
        group, workload, link_costs = inputs["appgroup"], inputs["workload"], inputs["link_costs"]
        weights = group.neighbour_weights(workload)
        members: dict[str, list[PodInfo]] = {}
        for member, name in store.members(group):
            members.setdefault(name, []).append(member)
        pending = [
            PendingPod(weight / len(members[name]), member.cpu_request_m)
            for name, weight in weights.items()
            for member in members.get(name, [])
            if not member.placed and member.uid != pod.uid
        ]
        positions = candidate_indices(link_costs, inputs["candidates"])
        extra = lookahead_costs(
            link_costs, positions, np.asarray(table.total_cost, dtype=np.float64), pod_cpu_m=pod.cpu_request_m,
            free_cpu_m=store.free_cpu_m(link_costs.topology), pending=pending,
        )  # fmt: skip
        total = np.asarray(table.total_cost, dtype=np.float64) + extra
        eligible = np.isfinite(total)
        if table.filtered:
            eligible[list(table.filtered)] = False
        return replace(table, total_cost=np.where(eligible, total, np.inf), extender_score=rank_extender_scores(
            total, eligible))  # fmt: skip

    def with_plan(inputs: dict[str, Any]) -> ScoreTable:
        """10 on the candidates where the group's plan (extender/planned.py) still has a slot for this workload;
        elsewhere the seed's score, halved, so that a pod whose planned nodes are gone still goes near its peers."""
        table = score_candidates(**inputs, strategy="seed")
        slots = plans.open_slots(inputs["appgroup"], inputs["workload"], inputs["link_costs"])
        planned = np.fromiter((name in slots for name in inputs["candidates"]), dtype=bool, count=len(table.candidates))
        scores = np.where(planned, 10, np.asarray(table.extender_score) // 2).astype(np.int64)
        return replace(table, extender_score=scores)

    def answer(verb: str, handler: Any) -> Response:
        started = time.perf_counter()
        code = 200
        try:
            body = request.get_json(force=True, silent=True)
            if body is None:
                raise BadRequestError("request body must be JSON")
            pod, names, items = _parse_args(body)
            payload = handler(pod, names, items)
        except BadRequestError as error:
            code = 400
            payload = {"Error": str(error)}
        response = jsonify(payload)
        response.status_code = code
        metrics.requests.labels(verb, str(code)).inc()
        metrics.duration.labels(verb).observe(time.perf_counter() - started)
        return response

    def do_filter(pod: PodInfo, names: list[str], items: list[Mapping[str, Any]] | None) -> dict[str, Any]:
        inputs = scoring_inputs(pod, names)
        metrics.pods.labels("filter", "appgroup" if inputs else "none").inc()
        failed: dict[str, str] = {}
        if inputs is not None:  # filtering needs the hard limits only, not the costs
            failed = {names[i]: reason for i, reason in filter_hard_limits(**inputs).items()}
            metrics.filtered_nodes.inc(len(failed))
        passed = [n for n in names if n not in failed]
        log.info(
            "filter",
            extra={
                "verb": "filter",
                "pod": f"{pod.namespace}/{pod.name}",
                "workload": inputs and f"{inputs['appgroup'].name}/{inputs['workload']}",
                "candidates": len(names),
                "failed": len(failed),
            },
        )
        result: dict[str, Any] = {
            "NodeNames": passed if items is None else None,
            "Nodes": None if items is None else {"items": [i for i in items if i["metadata"]["name"] not in failed]},
            # Moving other pods cannot change the network, so preemption should not try these nodes.
            "FailedNodes": {},
            "FailedAndUnresolvableNodes": failed,
            "Error": "",
        }
        return result

    def do_prioritize(pod: PodInfo, names: list[str], items: list[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        scored = score(pod, names)
        metrics.pods.labels("prioritize", "appgroup" if scored else "none").inc()
        scores = [0] * len(names) if scored is None else [int(s) for s in scored[0].extender_score]
        log.info(
            "prioritize",
            extra={
                "verb": "prioritize",
                "pod": f"{pod.namespace}/{pod.name}",
                "workload": scored and scored[1],
                "candidates": len(names),
                "best": max(zip(scores, names, strict=True), default=(0, None))[1],
            },
        )
        return [{"Host": name, "Score": s} for name, s in zip(names, scores, strict=True)]

    @app.post("/filter")
    def filter_route() -> Response:
        return answer("filter", do_filter)

    @app.post("/prioritize")
    def prioritize_route() -> Response:
        return answer("prioritize", do_prioritize)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        response = jsonify({"ready": store.ready, "synced": store.synced, "ignored": store.conversion_errors})
        response.status_code = 200 if store.ready else 503
        return response

    @app.get("/v1/state")
    def state() -> Response:
        """What the extender currently believes: AppGroups with their placements, and object counts."""
        groups = [
            {"namespace": g.namespace, "name": g.name, "placements": store.placements(g)} for g in store.appgroups()
        ]
        return jsonify(
            {
                "synced": store.synced,
                "nodes": len(store.node_names()),
                "pods": len(store.pods()),
                "appGroups": groups,
                "ignored": store.conversion_errors,
            }
        )

    @app.get("/metrics")
    def metrics_route() -> Response:
        for kind, synced in store.synced.items():
            metrics.synced.labels(kind).set(1 if synced else 0)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        response = jsonify({"Error": f"{error.code} {error.name}: {error.description}"})
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        # A bug must not take the extender down: log it with the traceback, answer with the reason.
        log.exception("unexpected error")
        response = jsonify({"Error": f"internal error: {error.__class__.__name__}: {error}"})
        response.status_code = 500
        return response

    return app
