"""AviatorPolicy endpoint selection (core/endpoints.py) and the spec it is read from (router/controller.py).

Checks: each algorithm's choice (PrequalHCL keeps the cold endpoints, TopN, Percentage rounds up, Threshold falls
back to the best); the circuit breaker opens after failed probes, keeps the endpoint out while open and closes on
a good probe after; dampening holds a selection but still drops a broken endpoint; hysteresis keeps an incumbent
against a slightly better newcomer; no healthy endpoint fails open; endpoints that leave are forgotten; spec
errors name the field.
"""

from __future__ import annotations

import pytest

from netaware.core.endpoints import EndpointProbe, EndpointSelector, SelectionPolicy, latency_percentiles
from netaware.router.aviatorobjects import PolicyError, selection_policy

READY = ["e1", "e2", "e3", "e4"]


def probes(*rows: tuple[str, int, float]) -> list[EndpointProbe]:
    return [EndpointProbe(endpoint, ok=True, rif=rif, latency_ms=latency) for endpoint, rif, latency in rows]


ROUND = probes(("e1", 0, 30.0), ("e2", 1, 10.0), ("e3", 8, 5.0), ("e4", 1, 20.0))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(SelectionPolicy(), ("e1", "e2", "e4"), id="PrequalHCL keeps the cold endpoints, e3 is hot"),
        pytest.param(SelectionPolicy(algorithm="TopN", top_n=2), ("e2", "e3"), id="TopN by latency"),
        pytest.param(SelectionPolicy(algorithm="Percentage", percentage=30), ("e2", "e3"), id="30% of 4 rounds up"),
        pytest.param(
            SelectionPolicy(algorithm="Threshold", latency_threshold_ms=15), ("e2", "e3"), id="Threshold 15 ms"
        ),
        pytest.param(
            SelectionPolicy(algorithm="Threshold", latency_threshold_ms=1), ("e3",), id="none within: the best one"
        ),
    ],
)
def test_algorithms(policy: SelectionPolicy, expected: tuple[str, ...]) -> None:
    assert EndpointSelector(policy).evaluate(ROUND, ready=READY, now_s=0.0) == expected


def test_all_hot_keeps_the_lowest_rif() -> None:
    selector = EndpointSelector(SelectionPolicy(hot_quantile=0.0))
    round_ = probes(("e1", 3, 1.0), ("e2", 2, 9.0), ("e3", 2, 5.0))
    # The 0-quantile is the minimum RIF (2): e2 and e3 are not above it, so they are the cold ones.
    assert selector.evaluate(round_, ready=["e1", "e2", "e3"], now_s=0) == ("e2", "e3")


def test_circuit_breaker_opens_holds_and_closes() -> None:
    selector = EndpointSelector(
        SelectionPolicy(algorithm="TopN", top_n=1, breaker_min_requests=2, breaker_error_ratio=0.5, breaker_open_s=10)
    )
    good = probes(("e2", 0, 10.0))
    failing = [EndpointProbe("e1", ok=False), *good]
    assert selector.evaluate(failing, ready=["e1", "e2"], now_s=0) == ("e2",)
    assert selector.evaluate(failing, ready=["e1", "e2"], now_s=1) == ("e2",)
    assert selector.breaker_open("e1", 1)
    # e1 answers well again, faster than e2, but the breaker is open for 10 s.
    fast_again = probes(("e1", 0, 1.0), ("e2", 0, 10.0))
    assert selector.evaluate(fast_again, ready=["e1", "e2"], now_s=5) == ("e2",)
    assert selector.evaluate(fast_again, ready=["e1", "e2"], now_s=12) == ("e1",)
    assert not selector.breaker_open("e1", 12)


def test_dampening_holds_a_selection_but_drops_broken_endpoints() -> None:
    selector = EndpointSelector(SelectionPolicy(algorithm="TopN", top_n=2, min_change_interval_s=30))
    assert selector.evaluate(ROUND, ready=READY, now_s=0) == ("e2", "e3")
    changed = probes(("e1", 0, 1.0), ("e2", 0, 10.0), ("e3", 0, 5.0), ("e4", 0, 2.0))
    assert selector.evaluate(changed, ready=READY, now_s=5) == ("e2", "e3")  # too soon to switch
    e3_gone = [p for p in changed if p.endpoint != "e3"]
    assert selector.evaluate(e3_gone, ready=["e1", "e2", "e4"], now_s=6) == ("e2",)  # but never keep what left
    assert selector.evaluate(changed, ready=READY, now_s=40) == ("e1", "e4")


def test_hysteresis_keeps_an_incumbent_against_a_slightly_better_newcomer() -> None:
    selector = EndpointSelector(SelectionPolicy(algorithm="TopN", top_n=1, hysteresis_ratio=0.2))
    assert selector.evaluate(probes(("e1", 0, 10.0), ("e2", 0, 11.0)), ready=["e1", "e2"], now_s=0) == ("e1",)
    assert selector.evaluate(probes(("e1", 0, 10.0), ("e2", 0, 9.0)), ready=["e1", "e2"], now_s=1) == ("e1",)
    assert selector.evaluate(probes(("e1", 0, 10.0), ("e2", 0, 7.0)), ready=["e1", "e2"], now_s=2) == ("e2",)


def test_no_healthy_endpoint_fails_open() -> None:
    selector = EndpointSelector(SelectionPolicy())
    failed = [EndpointProbe(e, ok=False) for e in READY]
    assert selector.evaluate(failed, ready=READY, now_s=0) == tuple(READY)


def test_endpoints_that_leave_are_forgotten() -> None:
    selector = EndpointSelector(SelectionPolicy(breaker_min_requests=1))
    selector.evaluate([EndpointProbe("e1", ok=False), *probes(("e2", 0, 1.0))], ready=["e1", "e2"], now_s=0)
    assert "e1" in selector.open_until_s
    selector.evaluate(probes(("e2", 0, 1.0)), ready=["e2"], now_s=1)
    assert "e1" not in selector.open_until_s and "e1" not in selector.history


def test_a_large_service_is_probed_in_rotation_and_chosen_among_the_pool() -> None:
    ready = [f"e{i:02}" for i in range(10)]
    selector = EndpointSelector(
        SelectionPolicy(algorithm="TopN", top_n=2, probe_pool_size=4, probes_per_evaluation=2.5)
    )
    seen: list[str] = []
    for now_s in range(5):
        targets = selector.probe_targets(ready)
        assert len(targets) == 3  # 2.5 per evaluation, rounded up
        seen += targets
        # Lower-numbered endpoints are faster: after a round, the best two of the pool are chosen.
        selected = selector.evaluate([EndpointProbe(e, ok=True, latency_ms=float(e[1:])) for e in targets],
                                     ready=ready, now_s=now_s)  # fmt: skip
        assert len(selector.pool) <= 4 and set(selected) <= set(selector.pool)
    assert seen[:10] == ready and set(seen) == set(ready)  # never-probed first, then the longest ago
    assert {p.endpoint for p in selector.pooled()} >= set(seen[-3:])  # the last round's are in the pool
    assert selector.probe_targets(["e09", "e99"]) == ["e99", "e09"]  # a new endpoint is probed before the others


def test_the_pool_keeps_the_freshest_probes_and_forgets_endpoints_that_left() -> None:
    selector = EndpointSelector(SelectionPolicy(probe_pool_size=2))
    selector.evaluate(probes(("e1", 0, 1.0)), ready=READY, now_s=0)
    selector.evaluate(probes(("e2", 0, 2.0)), ready=READY, now_s=1)
    selector.evaluate(probes(("e3", 0, 3.0)), ready=READY, now_s=2)
    assert [p.endpoint for p in selector.pooled()] == ["e3", "e2"]  # e1, the oldest, went
    selector.evaluate([], ready=["e3"], now_s=3)
    assert [p.endpoint for p in selector.pooled()] == ["e3"]


def test_latency_percentiles_of_the_selected_endpoints() -> None:
    assert latency_percentiles(ROUND, {"e2", "e4"}) == pytest.approx((15.0, 19.9))
    assert latency_percentiles(ROUND, set()) == (0.0, 0.0)


def test_spec_is_read_with_defaults_and_durations() -> None:
    policy = selection_policy(
        {"targetRef": {"name": "web"}, "selection": {"algorithm": "TopN", "topN": 3}, "latencyThreshold": "250ms",
         "circuitBreaker": {"openDuration": "1m30s", "minRequests": 5}, "dampening": {"minChangeInterval": "10s"}}
    )  # fmt: skip
    assert (policy.algorithm, policy.top_n, policy.latency_threshold_ms) == ("TopN", 3, 250.0)
    assert (policy.breaker_open_s, policy.breaker_min_requests, policy.min_change_interval_s) == (90.0, 5, 10.0)
    assert selection_policy({"targetRef": {"name": "web"}}).algorithm == "PrequalHCL"
    sized = selection_policy({"probePoolSize": 64, "probesPerQuery": 1.5})
    assert (sized.probe_pool_size, sized.probes_per_evaluation) == (64, 1.5)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"selection": {"algorithm": "TopN"}}, "spec.selection.topN is required"),
        ({"selection": {"algorithm": "Percentage"}}, "spec.selection.percentage is required"),
        ({"selection": {"algorithm": "Threshold"}}, "latencyThresholdMs or spec.latencyThreshold"),
        ({"dampening": {"minChangeInterval": "soon"}}, "duration 'soon'"),
        ({"dampening": {"hysteresisRatio": 1.0}}, "hysteresisRatio"),
        ({"probePoolSize": 0}, "probePoolSize must be >= 1"),
    ],
)
def test_spec_errors_name_the_field(spec: dict[str, object], reason: str) -> None:
    with pytest.raises(PolicyError, match=reason):
        selection_policy(spec)
