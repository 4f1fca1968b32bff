"""Link profiles (core/profiles.py): the shipped profiles load; pairs resolve node pair > zone pair > default;
zone pairs are symmetric unless the reverse is listed; bad profiles are rejected naming the entry; a live link change
(`lab shape`) resolves to directed node pairs, keeps the fields it does not give and refuses bad input with the
reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from netaware.core.links import LinkShape
from netaware.core.profiles import ProfileError, parse_profile, shape_change

PROFILES = Path(__file__).resolve().parents[2] / "tc-scripts" / "profiles"


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_profiles_load_and_resolve_every_pair(path: Path) -> None:
    profile = parse_profile(yaml.safe_load(path.read_text()))
    assert profile.name == path.stem
    for origin in profile.nodes:
        for destination in profile.nodes:
            assert isinstance(profile.shape(origin, destination), LinkShape)


def test_three_zones_resolution() -> None:
    profile = parse_profile(yaml.safe_load((PROFILES / "three-zones.yaml").read_text()))
    assert profile.shape("node-a1", "node-a2").delay_ms == 0.5  # inside a zone: default
    assert profile.shape("node-a1", "node-c1").delay_ms == 20  # zone pair
    assert profile.shape("node-c1", "node-a1").delay_ms == 20  # mirrored
    assert profile.with_nodes(9).nodes["zone-c-n5"] == "zone-c"


def base(**extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "t",
        "zones": {"za": {}, "zb": {}},
        "nodes": {"a": "za", "b": "zb"},
        "default": {"delayMs": 1},
        "zonePairs": [{"from": "za", "to": "zb", "delayMs": 10}],
    }
    document.update(extra)
    return document


def test_an_explicit_reverse_zone_pair_and_a_node_pair_override() -> None:
    profile = parse_profile(
        base(
            zonePairs=[{"from": "za", "to": "zb", "delayMs": 10}, {"from": "zb", "to": "za", "delayMs": 30}],
            links=[{"from": "a", "to": "b", "delayMs": 99}],
        )
    )
    assert profile.shape("b", "a").delay_ms == 30
    assert profile.shape("a", "b").delay_ms == 99


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"nodes": {"a": "nowhere"}}, "nodes.a: unknown zone", id="node in an unknown zone"),
        pytest.param({"zonePairs": [{"from": "za", "to": "zz"}]}, "zonePairs[0]: unknown zone", id="unknown zone pair"),
        pytest.param({"default": {"delayMs": -1}}, "default: delay_ms", id="negative delay"),
        pytest.param({"default": {"lossRatio": 5}}, "default: loss_ratio", id="loss as a percent"),
        pytest.param({"default": {"delay": 1}}, "default: unknown keys", id="misspelt key"),
        pytest.param({"nodes": {}}, "at least one node", id="no nodes"),
    ],
)
def test_bad_profiles_are_rejected_naming_the_entry(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_profile(base(**extra))


def three_zones() -> tuple[dict[str, str], dict[tuple[str, str], LinkShape]]:
    profile = parse_profile(yaml.safe_load((PROFILES / "three-zones.yaml").read_text()))
    return dict(profile.nodes), profile.shapes()


def test_a_zone_change_reshapes_every_node_pair_both_ways_and_keeps_the_fields_not_given() -> None:
    nodes, shapes = three_zones()
    changed = shape_change({"fromZone": "zone-a", "toZone": "zone-b", "delayMs": 50}, nodes, shapes)
    a, b = ("node-a1", "node-a2"), ("node-b1", "node-b2")
    assert set(changed) == {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
    assert all(s == LinkShape(delay_ms=50, jitter_ms=0.5, rate_mbps=200) for s in changed.values())
    assert shapes[("node-a1", "node-b1")].delay_ms == 10  # the current shapes are not changed in place


def test_one_way_node_pair_and_intra_zone_changes() -> None:
    nodes, shapes = three_zones()
    one_way = {"fromNode": "node-a1", "toNode": "node-c1", "lossRatio": 1.0, "rateMbps": None, "oneWay": True}
    assert shape_change(one_way, nodes, shapes) == {
        ("node-a1", "node-c1"): LinkShape(delay_ms=20, jitter_ms=1.0, loss_ratio=1.0, rate_mbps=None)
    }
    inside = shape_change({"fromZone": "zone-b", "toZone": "zone-b", "delayMs": 2}, nodes, shapes)
    assert set(inside) == {("node-b1", "node-b2"), ("node-b2", "node-b1")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ([1], "a link change is a mapping"),
        ({"fromZone": "zone-a", "toZone": "zone-b"}, "nothing to change"),
        ({"fromZone": "zone-a", "toZone": "zone-x", "delayMs": 1}, "unknown zone 'zone-x'"),
        ({"fromNode": "node-a1", "toNode": "node-z", "delayMs": 1}, "unknown node 'node-z'"),
        ({"fromNode": "node-a1", "toNode": "node-a1", "delayMs": 1}, "to itself is no link"),
        ({"fromZone": "zone-a", "toNode": "node-b1", "delayMs": 1}, "fromZone and toZone, or by fromNode"),
        ({"fromZone": "zone-a", "toZone": "zone-b", "delayMs": -1}, "delay_ms must be a finite number >= 0"),
        ({"fromZone": "zone-a", "toZone": "zone-b", "lossRatio": 1.5}, "loss_ratio must be within 0..1"),
        ({"fromZone": "zone-a", "toZone": "zone-b", "delayMs": "5"}, "delayMs must be a number, not '5'"),
        ({"fromZone": "zone-a", "toZone": "zone-b", "delayMs": True}, "delayMs must be a number"),
        ({"fromZone": "zone-a", "toZone": "zone-b", "delay": 5}, "unknown keys ['delay']"),
        ({"fromZone": "zone-a", "toZone": "zone-b", "delayMs": 5, "oneWay": "yes"}, "oneWay must be true or false"),
    ],
)
def test_bad_link_changes_are_refused_with_the_reason(change: Any, message: str) -> None:
    nodes, shapes = three_zones()
    with pytest.raises(ProfileError, match=re.escape(message)):
        shape_change(change, nodes, shapes)


def test_a_zone_with_one_node_has_no_link_inside_it() -> None:
    nodes, shapes = three_zones()
    nodes = {k: v for k, v in nodes.items() if k != "node-c2"}
    with pytest.raises(ProfileError, match="zone zone-c has one node"):
        shape_change({"fromZone": "zone-c", "toZone": "zone-c", "delayMs": 1}, nodes, shapes)
