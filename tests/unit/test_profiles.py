"""Link profiles (core/profiles.py): the shipped profiles load; pairs resolve node pair > zone pair > default;
zone pairs are symmetric unless the reverse is listed; bad profiles are rejected naming the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from netaware.core.links import LinkShape
from netaware.core.profiles import ProfileError, parse_profile

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
