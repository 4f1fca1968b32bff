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


SHAPE_FIELDS = {"delayMs": "delay_ms", "jitterMs": "jitter_ms", "lossRatio": "loss_ratio", "rateMbps": "rate_mbps"}


def shape_document(shape: LinkShape) -> dict[str, float | None]:
    """A shape in the profile's words (the inverse of a zonePairs entry's fields)."""
    return {key: getattr(shape, name) for key, name in SHAPE_FIELDS.items()}


def shape_change(
    request: Any, nodes: Mapping[str, str], current: Mapping[tuple[str, str], LinkShape]
) -> dict[tuple[str, str], LinkShape]:
    """The new shape of every directed node link a live change names (`netaware lab shape`), in the profile's words:
    `fromZone`/`toZone` (every node pair between the two zones; one zone twice: the links inside it) or
    `fromNode`/`toNode`, and any of delayMs (one-way, as in profiles), jitterMs, lossRatio, rateMbps (null: unlimited);
    fields not given keep their value. Both directions change, as a profile's zonePairs entry does, unless `oneWay`."""
    if not isinstance(request, Mapping):
        raise ProfileError("a link change is a mapping: fromZone/toZone or fromNode/toNode, and delayMs, jitterMs, "
                           "lossRatio or rateMbps")  # fmt: skip
    unknown = set(request) - {"fromZone", "toZone", "fromNode", "toNode", "oneWay", *SHAPE_FIELDS}
    if unknown:
        raise ProfileError(f"unknown keys {sorted(unknown)}")
    given = {SHAPE_FIELDS[key]: request[key] for key in SHAPE_FIELDS if key in request}
    if not given:
        raise ProfileError(f"nothing to change: give at least one of {', '.join(SHAPE_FIELDS)}")
    for key, value in request.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in SHAPE_FIELDS and not number and not (key == "rateMbps" and value is None):
            raise ProfileError(f"{key} must be a number, not {value!r}")
    one_way = request.get("oneWay", False)
    if not isinstance(one_way, bool):
        raise ProfileError(f"oneWay must be true or false, not {one_way!r}")
    zones = set(nodes.values())
    if {"fromZone", "toZone"} <= set(request) and not {"fromNode", "toNode"} & set(request):
        origin, destination = str(request["fromZone"]), str(request["toZone"])
        for zone in (origin, destination):
            if zone not in zones:
                raise ProfileError(f"unknown zone {zone!r}; the lab's zones: {', '.join(sorted(zones))}")
        pairs = [(o, d) for o in nodes for d in nodes if o != d and (nodes[o], nodes[d]) == (origin, destination)]
        if not pairs:
            raise ProfileError(f"zone {origin} has one node: no link inside it to change")
    elif {"fromNode", "toNode"} <= set(request) and not {"fromZone", "toZone"} & set(request):
        origin, destination = str(request["fromNode"]), str(request["toNode"])
        for node in (origin, destination):
            if node not in nodes:
                raise ProfileError(f"unknown node {node!r}; the lab's nodes: {', '.join(nodes)}")
        if origin == destination:
            raise ProfileError(f"{origin} to itself is no link")
        pairs = [(origin, destination)]
    else:
        raise ProfileError("name the links by fromZone and toZone, or by fromNode and toNode (one pair, not both)")
    if not one_way:
        pairs += [(d, o) for o, d in pairs if (d, o) not in pairs]
    changed = {}
    for pair in pairs:
        old = current.get(pair, LinkShape())
        values = {name: getattr(old, name) for name in SHAPE_FIELDS.values()} | given
        try:
            changed[pair] = LinkShape(
                delay_ms=float(values["delay_ms"]),
                jitter_ms=float(values["jitter_ms"]),
                loss_ratio=float(values["loss_ratio"]),
                rate_mbps=None if values["rate_mbps"] is None else float(values["rate_mbps"]),
            )
        except (TypeError, ValueError) as error:
            raise ProfileError(str(error)) from None
    return changed
