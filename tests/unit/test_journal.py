"""The aggregator's journal (aggregator/journal.py) and the report validator's two verdicts.

Checks: concurrent appends share fsyncs (group commit) and still come back from a replay in the order their
callbacks ran; `max_batch=1` is one fsync per report; a failed fsync refuses exactly the reports of its batch,
leaves none of them in the file and runs none of their callbacks, and the journal carries on; a line cut by a crash
is dropped before the next append, not glued to it; a compaction that fails keeps every report; the API answers 503
with a reason when the journal fails and the topology does not change. The compiled schema validator and the Python
one agree on every generated document.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netaware.aggregator import journal as journal_module
from netaware.aggregator.app import create_app
from netaware.aggregator.journal import JournalError, ReportJournal
from netaware.core import telemetry

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_800_000_000.0


def wait_for_queue(journal: ReportJournal, length: int) -> None:
    deadline = time.monotonic() + 10
    while len(journal._queue) < length:  # the appenders that wait behind the write under way
        assert time.monotonic() < deadline, f"{len(journal._queue)} of {length} appenders queued"
        time.sleep(0.005)


def test_appends_that_arrive_during_a_write_share_the_next_fsync_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = ReportJournal(tmp_path / "journal.jsonl")
    folded: list[int] = []
    others = 31
    real_fsync = os.fsync
    fsyncs = []

    def slow_first_fsync(fd: int) -> None:  # the first write takes until everyone else has queued behind it
        fsyncs.append(fd)
        if len(fsyncs) == 1:
            wait_for_queue(journal, others)
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", slow_first_fsync)
    leader = threading.Thread(target=journal.append, args=({"n": 0},), kwargs={"then": lambda: folded.append(0)})
    leader.start()
    while not fsyncs:
        time.sleep(0.001)
    threads = [
        threading.Thread(target=journal.append, args=({"n": n},), kwargs={"then": lambda n=n: folded.append(n)})
        for n in range(1, others + 1)
    ]
    for thread in threads:
        thread.start()
    for thread in [leader, *threads]:
        thread.join(timeout=20)
    assert journal.commits == 2 and journal.lines == others + 1  # the first alone, then the 31 others at once
    assert [entry["n"] for entry in ReportJournal(journal.path).replay()] == folded
    assert sorted(folded) == list(range(others + 1))


def test_a_batch_of_one_is_an_fsync_per_report(tmp_path: Path) -> None:
    journal = ReportJournal(tmp_path / "journal.jsonl", max_batch=1)
    threads = [threading.Thread(target=journal.append, args=({"n": n},)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert journal.commits == journal.lines == 20
    with pytest.raises(ValueError, match="max_batch and compact_after must be 1 or more"):
        ReportJournal(tmp_path / "other.jsonl", max_batch=0)


def test_a_failed_fsync_refuses_its_batch_keeps_nothing_of_it_and_the_journal_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = ReportJournal(tmp_path / "journal.jsonl")
    journal.append({"n": 1})
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fsync", failing_fsync)
    ran: list[int] = []
    with pytest.raises(JournalError, match="could not be written"):
        journal.append({"n": 2}, then=lambda: ran.append(2))
    assert ran == []
    monkeypatch.setattr(journal_module.os, "fsync", real_fsync)
    journal.append({"n": 3}, then=lambda: ran.append(3))
    assert ran == [3]
    assert [entry["n"] for entry in ReportJournal(journal.path).replay()] == [1, 3]


def test_a_line_cut_by_a_crash_is_dropped_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    ReportJournal(path).append({"n": 1})
    with path.open("a") as handle:
        handle.write('{"n": 2, "cut')  # the crash came mid-write: never acknowledged
    restarted = ReportJournal(path)
    assert [entry["n"] for entry in restarted.replay()] == [1]
    restarted.append({"n": 3})
    assert path.read_text() == '{"n":1}\n{"n":3}\n'


def test_the_api_answers_503_when_the_journal_fails_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(token=TOKEN, nodes=lambda: ["a", "b"], journal=ReportJournal(tmp_path / "j"), clock=lambda: NOW)
    client = app.test_client()
    body = {"node": "a", "measuredAt": NOW, "peers": [{"peer": "b", "sent": 20, "received": 20, "rttMs": 3.0}]}

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "fsync", failing_fsync)
    answer = client.post("/v1/reports", json=body, headers=AUTH)
    assert answer.status_code == 503, answer.get_json()
    assert "could not be made durable" in answer.get_json()["error"]
    assert "No space left" in answer.get_json()["problems"][0]
    assert client.get("/v1/topology").get_json()["links"] == []
    assert not (tmp_path / "j").read_bytes()


def test_a_round_sent_twice_counts_once() -> None:
    aggregator = telemetry.LinkAggregator()
    report = telemetry.parse_report(
        {"node": "a", "measuredAt": NOW, "peers": [{"peer": "b", "sent": 20, "received": 10, "rttMs": 3.0}]}
    )
    aggregator.ingest(report)
    once = aggregator.topology(["a", "b"], now_s=NOW)
    aggregator.ingest(report)
    assert aggregator.topology(["a", "b"], now_s=NOW) == once
    assert aggregator.links[("a", "b")].samples == 20


# Documents near the schema's edges: every field's type and range varied, fields missing and extra.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 20000), st.floats(allow_nan=False, width=32), st.text(max_size=3),
    st.sampled_from([0, 1, 1.0, 20.0, -0.0, 60000, 60000.5, 10000, 10001, "", "x" * 254]),
)  # fmt: skip
peer_entries = st.dictionaries(
    st.sampled_from(["peer", "sent", "received", "rttMs", "jitterMs", "bandwidthMbps", "extra"]), scalars, max_size=7
)
near_valid_reports = st.fixed_dictionaries(
    {
        "node": st.text(max_size=3),
        "measuredAt": st.one_of(st.floats(-1, 2e9), st.integers(-1, 5)),
        "peers": st.lists(
            st.fixed_dictionaries(
                {"peer": st.text(max_size=3), "sent": st.integers(0, 10001), "received": st.integers(-1, 10001)},
                optional={"rttMs": st.floats(-1, 60001), "jitterMs": st.floats(-1, 1), "bandwidthMbps": scalars},
            ),
            max_size=3,
        ),
    },
    optional={"extra": scalars},
)
documents = st.one_of(
    near_valid_reports,
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(
        st.sampled_from(["node", "measuredAt", "peers", "extra"]),
        st.one_of(scalars, st.lists(st.one_of(peer_entries, scalars), max_size=3)),
        max_size=4,
    ),
)


@settings(max_examples=800, deadline=None)
@given(documents)
def test_the_compiled_and_the_python_validators_agree(data: Any) -> None:
    verdict = telemetry._validator.is_valid(data)
    assert telemetry._compiled.is_valid(data) == verdict, json.dumps(data)
    assert (telemetry.schema_problems(data) == []) == verdict


def reports_of_rounds(rounds: int) -> list[dict[str, Any]]:
    """Rounds of three nodes probing each other: RTTs that move, lost probes, bandwidth now and then."""
    nodes = ["a", "b", "c"]
    return [
        {
            "node": node,
            "measuredAt": NOW + round_index,
            "peers": [
                {
                    "peer": peer,
                    "sent": 20,
                    "received": 20 - (round_index + index) % 3,
                    "rttMs": 1.0 + (round_index * 7 + index) % 5,
                    "jitterMs": 0.1 * (round_index % 4),
                }
                | ({"bandwidthMbps": 100.0 + round_index} if round_index % 4 == 0 else {})
                for index, peer in enumerate(p for p in nodes if p != node)
            ],
        }
        for round_index in range(rounds)
        for node in nodes
    ]


def test_the_state_restores_exactly_what_was_folded_in() -> None:
    original = telemetry.LinkAggregator()
    for data in reports_of_rounds(6):
        original.ingest(telemetry.parse_report(data))
    copy = telemetry.LinkAggregator()
    copy.restore(json.loads(json.dumps(original.state())))
    assert copy.links == original.links and copy.last_report_s == original.last_report_s
    with pytest.raises(ValueError, match="state version"):
        copy.restore({"version": 99})


def test_compaction_bounds_the_journal_and_a_restart_rebuilds_the_same_topology(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    nodes = ["a", "b", "c"]

    def app_on(journal: ReportJournal) -> Any:
        return create_app(token=TOKEN, nodes=lambda: nodes, journal=journal, clock=lambda: NOW + 100)

    journal = ReportJournal(path, compact_after=4)
    client = app_on(journal).test_client()
    for data in reports_of_rounds(5):
        assert client.post("/v1/reports", json=data, headers=AUTH).status_code == 202
    before = client.get("/v1/topology").get_json()
    assert journal.compactions == 3  # after reports 4, 8 and 12 of 15
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3 and "head" in json.loads(lines[0])
    (tmp_path / "journal.jsonl.compacting").write_text('{"head": ')  # a compaction cut short: never renamed in
    restarted = app_on(ReportJournal(path)).test_client()
    assert restarted.get("/v1/topology").get_json() == before
    with pytest.raises(ValueError, match="nothing restores it"):
        list(ReportJournal(path).replay())


def test_a_compaction_that_fails_keeps_the_journal_and_every_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ReportJournal(tmp_path / "journal.jsonl", compact_after=2)

    def broken_state() -> Any:
        raise RuntimeError("state cannot be taken")

    journal.compact_with(broken_state)
    with caplog.at_level("WARNING", logger="netaware.aggregator"):
        for n in range(4):
            journal.append({"n": n})
    assert journal.compactions == 0 and "journal_compaction_failed" in caplog.text
    assert [entry["n"] for entry in ReportJournal(journal.path).replay()] == [0, 1, 2, 3]
    assert not (tmp_path / "journal.jsonl.compacting").exists()
