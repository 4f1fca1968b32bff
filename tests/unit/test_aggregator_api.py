"""The aggregator's HTTP API (aggregator/app.py), in process through Flask's WSGI interface.

Checks: a valid report is accepted and shows in the topology as measured; a missing or bad token is 401, a body
that is not JSON 400, another content type 415, an oversized body 413, an invalid report 422 naming each field,
and none of them changes the topology; accepted reports survive a restart (the journal, with a line cut by a
crash ignored); the OpenAPI description is served. Schemathesis fuzzes the API from that description: no 5xx,
responses match the schema, and invalid reports are refused (negative data rejection).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from kubernetes import client as kube_client
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.config import PositiveDataAcceptanceConfig

from netaware.aggregator.__main__ import main as aggregator_main
from netaware.aggregator.app import MAX_REPORT_BYTES, create_app
from netaware.aggregator.journal import ReportJournal
from netaware.aggregator.publishing import Publisher
from netaware.aggregator.reading import SharedTopology
from netaware.core.telemetry import LinkAggregator, parse_report
from netaware.processes import wait_until
from tests.conftest import unused_port

TOKEN = "s3cret-token"
NODES = ["node-a", "node-b", "node-c"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_800_000_000.0


def app_with(journal: ReportJournal | None = None) -> Flask:
    return create_app(token=TOKEN, nodes=lambda: NODES, journal=journal, clock=lambda: NOW)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    yield app_with(ReportJournal(tmp_path / "journal.jsonl")).test_client()


def report(**peer: Any) -> dict[str, Any]:
    entry = {"peer": "node-b", "sent": 20, "received": 19, "rttMs": 4.0, "jitterMs": 0.3} | peer
    return {"node": "node-a", "measuredAt": NOW - 1, "peers": [entry]}


def links(client: FlaskClient) -> dict[tuple[str, str], dict[str, Any]]:
    body = client.get("/v1/topology").get_json()
    return {(link["origin"], link["destination"]): link for link in body["links"]}


def test_a_valid_report_is_accepted_and_measured(client: FlaskClient) -> None:
    answer = client.post("/v1/reports", json=report(bandwidthMbps=900.0), headers=AUTH)
    assert answer.status_code == 202 and answer.get_json() == {"accepted": 1}
    link = links(client)[("node-a", "node-b")]
    assert (link["source"], link["rttMs"], link["bandwidthMbps"]) == ("measured", 4.0, 900.0)
    assert link["lossRatio"] == pytest.approx(0.05)
    assert links(client)[("node-b", "node-a")]["source"] == "estimated"  # from the reverse direction


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"json": report()}, 401, "bearer token"),
        ({"json": report(), "headers": {"Authorization": "Bearer wrong"}}, 401, "bearer token"),
        ({"json": report(), "headers": {"Authorization": TOKEN}}, 401, "bearer token"),
        ({"data": "{not json", "headers": AUTH, "content_type": "application/json"}, 400, "not JSON"),
        ({"data": "x", "headers": AUTH, "content_type": "text/plain"}, 415, "application/json"),
        ({"data": "[" + " " * MAX_REPORT_BYTES + "]", "headers": AUTH, "content_type": "application/json"}, 413,
         "larger than"),
        ({"json": report(rttMs=-3), "headers": AUTH}, 422, "invalid report"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_a_reason_and_change_nothing(
    client: FlaskClient, kwargs: dict[str, Any], status: int, error: str
) -> None:
    answer = client.post("/v1/reports", **kwargs)
    assert answer.status_code == status
    assert error in answer.get_json()["error"]
    assert links(client) == {}


def test_an_invalid_report_names_every_field(client: FlaskClient) -> None:
    data = report(peer="node-z", received=30)
    answer = client.post("/v1/reports", json=data, headers=AUTH)
    assert answer.status_code == 422
    problems = answer.get_json()["problems"]
    assert any("peers[0].peer: 'node-z' is not a known node" in p for p in problems)
    assert any("peers[0].received: 30 is more than sent (20)" in p for p in problems)


def test_accepted_reports_survive_a_restart(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.jsonl"
    first = app_with(ReportJournal(journal_path)).test_client()
    assert first.post("/v1/reports", json=report(), headers=AUTH).status_code == 202
    with journal_path.open("a") as handle:
        handle.write('{"node": "node-a", "meas')  # a crash in the middle of a write: never acknowledged
    restarted = app_with(ReportJournal(journal_path)).test_client()
    assert links(restarted)[("node-a", "node-b")]["rttMs"] == 4.0


def test_openapi_description_is_served(client: FlaskClient) -> None:
    document = client.get("/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    assert "/v1/reports" in document["paths"]
    assert json.dumps(document["components"]["schemas"]["Report"])


fuzzed_app = app_with()
schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", fuzzed_app)
# A report can match the schema and still be refused: its nodes must be known ones (422 says which). Every
# other check stays on, negative data rejection included: schema-invalid input must be refused.
schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(expected_statuses=["2xx", "401", "422"])


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_fail_the_server_or_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH)


def test_bandwidth_plan_gives_each_known_node_its_role(client: FlaskClient) -> None:
    roles = [client.get(f"/v1/bandwidth-plan?node={node}").get_json() for node in NODES]
    assert sorted(r["role"] for r in roles) == ["client", "idle", "server"]  # three nodes: one pair, one bye
    client_role = next(r for r in roles if r["role"] == "client")
    assert client_role["peer"] in NODES and client_role["seconds"] >= 1
    unknown = client.get("/v1/bandwidth-plan?node=zz")
    assert unknown.status_code == 422 and "not a known node" in unknown.get_json()["error"]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["--bandwidth-slot", "-1"], "-1 is negative"),
        (["--bandwidth-slot", "fast"], "'fast' is not a number"),
        (["--bandwidth-seconds", "0"], "--bandwidth-seconds must be 1 or more"),
        (["--bandwidth-slot", "2", "--bandwidth-seconds", "3"], "must be longer than --bandwidth-seconds"),
        (["--bandwidth-slot", "3", "--bandwidth-seconds", "2"], "plus the 1 s iperf3 omits"),
    ],
)
def test_the_command_line_refuses_a_bandwidth_budget_that_cannot_work(
    arguments: list[str], reason: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NETAWARE_AGGREGATOR_TOKEN", "t")
    with pytest.raises(SystemExit) as exited:
        aggregator_main(["--journal", "/nonexistent/journal.jsonl", "--nodes", "a", *arguments])
    assert exited.value.code == 2
    assert reason in capsys.readouterr().err


def test_the_publisher_outlives_an_api_server_that_is_away(caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable API server ends the client's retries with urllib3's MaxRetryError, which is not an OSError: the
    publishing loop logs it and tries again next period instead of dying (found by the lab's apiserver restart)."""
    configuration = kube_client.Configuration()
    configuration.host = f"http://127.0.0.1:{unused_port()}"  # nothing listens there
    aggregator = LinkAggregator()
    aggregator.ingest(parse_report({"node": "a", "measuredAt": 1_796_083_200.0,
                                    "peers": [{"peer": "b", "sent": 5, "received": 5, "rttMs": 1.0}]},
                                   now_s=1_796_083_200.0))  # fmt: skip
    shared = SharedTopology(aggregator, threading.Lock(), nodes=lambda: ["a", "b"], zones=dict,
                            clock=lambda: 1_796_083_200.0)  # fmt: skip
    publisher = Publisher(kube_client.ApiClient(configuration), shared, debounce_s=0.05)
    stop = threading.Event()
    with caplog.at_level("WARNING", logger="netaware.aggregator"):
        thread = publisher.start(stop)
        wait_until(lambda: sum("publishing NetworkTopologies failed" in r.getMessage() for r in caplog.records) >= 2,
                   timeout_s=30, what="two failed periods logged")  # fmt: skip
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=5)


def metric(client: FlaskClient, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no {name} {labels} in /metrics")


def test_metrics_count_pairs_by_source_and_age_every_node_from_its_newest_report(client: FlaskClient) -> None:
    # Before any report: every pair is missing and every node's age is unknown, which no alert may read as fresh.
    assert metric(client, "netaware_aggregator_links", source="missing") == 6
    assert metric(client, "netaware_aggregator_report_age_seconds", node="node-a") == float("inf")
    assert client.post("/v1/reports", json=report(), headers=AUTH).status_code == 202
    assert metric(client, "netaware_aggregator_links", source="measured") == 1  # node-a -> node-b
    assert metric(client, "netaware_aggregator_links", source="estimated") == 1  # its reverse
    assert metric(client, "netaware_aggregator_links", source="missing") == 4
    assert metric(client, "netaware_aggregator_report_age_seconds", node="node-a") == 1.0
    assert metric(client, "netaware_aggregator_report_age_seconds", node="node-c") == float("inf")
    assert metric(client, "netaware_aggregator_ttl_seconds") == 60.0
