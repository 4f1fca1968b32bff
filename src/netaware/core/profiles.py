"""Link profiles: nodes with zones, and the shape of every directed link, from one YAML description shared by the
lab's link emulator, tc-scripts and the experiments (tc-scripts/profiles/*.yaml).

Resolution for a directed pair origin -> destination: an explicit `links` entry for that node pair, else the
`zonePairs` entry for the two zones (symmetric unless the reverse direction is listed too), else `default`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netaware.core.links import LinkShape


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the entry."""


def _shape(spec: Any, where: str) -> LinkShape:
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{where}: expected a mapping with delayMs, jitterMs, lossRatio, rateMbps")
    unknown = set(spec) - {"delayMs", "jitterMs", "lossRatio", "rateMbps", "from", "to"}
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        return LinkShape(
            delay_ms=float(spec.get("delayMs", 0.0)),
            jitter_ms=float(spec.get("jitterMs", 0.0)),
            loss_ratio=float(spec.get("lossRatio", 0.0)),
            rate_mbps=float(spec["rateMbps"]) if spec.get("rateMbps") is not None else None,
        )
    except (TypeError, ValueError) as error:
        raise ProfileError(f"{where}: {error}") from None


@dataclass(frozen=True)
class LinkProfile:
    name: str
    zones: Mapping[str, str]
    """zone -> region"""
    nodes: Mapping[str, str]
    """node -> zone"""
    default: LinkShape
    zone_pairs: Mapping[tuple[str, str], LinkShape] = field(default_factory=dict)
    node_pairs: Mapping[tuple[str, str], LinkShape] = field(default_factory=dict)

    def shape(self, origin: str, destination: str) -> LinkShape:
        if (origin, destination) in self.node_pairs:
            return self.node_pairs[(origin, destination)]
        zones = (self.nodes[origin], self.nodes[destination])
        if zones[0] != zones[1] and zones in self.zone_pairs:
            return self.zone_pairs[zones]
        return self.default

    def shapes(self) -> dict[tuple[str, str], LinkShape]:
        """Every directed node pair's shape."""
        return {(o, d): self.shape(o, d) for o in self.nodes for d in self.nodes if o != d}

    def with_nodes(self, count: int) -> LinkProfile:
        """The same zones and shapes with `count` nodes spread over the zones round-robin."""
        zones = list(self.zones)
        nodes = {f"{zones[i % len(zones)]}-n{i}": zones[i % len(zones)] for i in range(count)}
        return LinkProfile(self.name, self.zones, nodes, self.default, self.zone_pairs, {})


def parse_profile(document: Any) -> LinkProfile:
    if not isinstance(document, Mapping):
        raise ProfileError("a profile is a mapping with name, zones, nodes, default and zonePairs")
    zones = {str(z): str((spec or {}).get("region", "")) for z, spec in (document.get("zones") or {}).items()}
    nodes = {str(n): str(z) for n, z in (document.get("nodes") or {}).items()}
    for node, zone in nodes.items():
        if zone not in zones:
            raise ProfileError(f"nodes.{node}: unknown zone {zone!r}")
    if not nodes:
        raise ProfileError("nodes: at least one node is needed")
    explicit: dict[tuple[str, str], LinkShape] = {}
    for i, spec in enumerate(document.get("zonePairs") or []):
        where = f"zonePairs[{i}]"
        shape = _shape(spec, where)
        pair = (str(spec.get("from")), str(spec.get("to")))
        for zone in pair:
            if zone not in zones:
                raise ProfileError(f"{where}: unknown zone {zone!r}")
        explicit[pair] = shape
    # Symmetric unless the reverse direction is listed too.
    zone_pairs = {(b, a): shape for (a, b), shape in explicit.items()} | explicit
    node_pairs = {}
    for i, spec in enumerate(document.get("links") or []):
        pair = (str(spec.get("from")), str(spec.get("to")))
        if pair[0] not in nodes or pair[1] not in nodes:
            raise ProfileError(f"links[{i}]: unknown node in {pair}")
        node_pairs[pair] = _shape(spec, f"links[{i}]")
    return LinkProfile(
        name=str(document.get("name") or "unnamed"),
        zones=zones,
        nodes=nodes,
        default=_shape(document.get("default") or {}, "default"),
        zone_pairs=zone_pairs,
        node_pairs=node_pairs,
    )
