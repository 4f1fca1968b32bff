"""tc commands that shape one node's egress per destination from a link profile (for real clusters, where the
kernel has netem), built as data so they can be printed (dry run) and tested without root.

Per destination node j (its address IP_j), on device DEV (reference/telemetry-and-workloads.md section 4.1):

    tc qdisc del dev DEV root                                    (idempotent: start from nothing; errors ignored)
    tc qdisc add dev DEV root handle 1: htb default 9999 r2q 100
    tc class add dev DEV parent 1: classid 1:9999 htb rate 10gbit                          (unshaped: ARP, control)
    tc class add dev DEV parent 1: classid 1:<10+j> htb rate R ceil R burst 15k quantum 1514
    tc qdisc add dev DEV parent 1:<10+j> handle <10+j>: netem delay Dms Jms 25% distribution normal loss L% limit N
    tc filter add dev DEV parent 1: protocol ip prio 1 u32 match ip dst IP_j/32 flowid 1:<10+j>

Delays are one-way (the profile's convention), applied on each node's egress, so RTT = delay(a->b) + delay(b->a).
Jitter gets 25% correlation and stays far below the delay in the shipped profiles, because netem reorders packets
when jitter is large and TCP then collapses. The netem queue `limit` holds 1.5x the bandwidth-delay product
(the 1,000-packet default drops at high rates, which reads as link loss). A link without a rate gets 10gbit.
With `netem=False` (a kernel without netem) only the HTB rate classes are built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from netaware.core.links import LinkShape
from netaware.core.profiles import LinkProfile

DEFAULT_CLASS = 9999
FIRST_CLASS = 10
UNSHAPED_RATE = "10gbit"
MTU_BYTES = 1500


class ShapingError(ValueError):
    """A node or address the profile does not know."""


@dataclass(frozen=True)
class Shaping:
    device: str
    namespace: str | None = None
    """Run inside this network namespace (`tc -n NS`), e.g. a lab node; None: the current one."""

    def tc(self, *arguments: str) -> list[str]:
        prefix = ["tc", "-n", self.namespace] if self.namespace else ["tc"]
        return [*prefix, *arguments]


def netem_limit(shape: LinkShape) -> int:
    """Packets the netem queue must hold: 1.5 x rate x (delay + 3 jitter), at least the kernel's 1,000."""
    rate_bps = (shape.rate_mbps or 10_000) * 1e6
    seconds = (shape.delay_ms + 3 * shape.jitter_ms) / 1e3
    return max(1000, math.ceil(1.5 * rate_bps * seconds / (MTU_BYTES * 8)))


def netem_arguments(shape: LinkShape) -> list[str]:
    arguments = ["netem", "delay", f"{shape.delay_ms:g}ms"]
    if shape.jitter_ms:
        arguments += [f"{shape.jitter_ms:g}ms", "25%", "distribution", "normal"]
    if shape.loss_ratio:
        arguments += ["loss", f"{100 * shape.loss_ratio:g}%"]
    return [*arguments, "limit", str(netem_limit(shape))]


def clear_commands(shaping: Shaping) -> list[list[str]]:
    return [shaping.tc("qdisc", "del", "dev", shaping.device, "root")]


def show_commands(shaping: Shaping) -> list[list[str]]:
    return [
        shaping.tc("-s", "qdisc", "show", "dev", shaping.device),
        shaping.tc("class", "show", "dev", shaping.device),
        shaping.tc("filter", "show", "dev", shaping.device),
    ]


def apply_commands(
    profile: LinkProfile,
    origin: str,
    addresses: Mapping[str, str],
    shaping: Shaping,
    *,
    netem: bool = True,
) -> list[list[str]]:
    """Shape `origin`'s egress towards every other node in `addresses` (node -> IPv4) as the profile says.
    The first command (deleting the root qdisc) may fail when nothing is installed; apply ignores that one."""
    if origin not in profile.nodes:
        raise ShapingError(f"node {origin!r} is not in profile {profile.name!r}")
    unknown = sorted(set(addresses) - set(profile.nodes))
    if unknown:
        raise ShapingError(f"addresses name nodes that are not in profile {profile.name!r}: {unknown}")
    device = shaping.device
    commands = clear_commands(shaping)
    commands += [
        shaping.tc("qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", str(DEFAULT_CLASS),
                   "r2q", "100"),
        shaping.tc("class", "add", "dev", device, "parent", "1:", "classid", f"1:{DEFAULT_CLASS}", "htb",
                   "rate", UNSHAPED_RATE),
    ]  # fmt: skip
    destinations = [node for node in profile.nodes if node != origin and node in addresses]
    for index, destination in enumerate(destinations):
        shape = profile.shape(origin, destination)
        class_id = FIRST_CLASS + index
        rate = f"{shape.rate_mbps:g}mbit" if shape.rate_mbps else UNSHAPED_RATE
        commands.append(
            shaping.tc("class", "add", "dev", device, "parent", "1:", "classid", f"1:{class_id}", "htb",
                       "rate", rate, "ceil", rate, "burst", "15k", "quantum", "1514")
        )  # fmt: skip
        if netem and (shape.delay_ms or shape.jitter_ms or shape.loss_ratio):
            commands.append(
                shaping.tc("qdisc", "add", "dev", device, "parent", f"1:{class_id}", "handle", f"{class_id}:",
                           *netem_arguments(shape))
            )  # fmt: skip
        commands.append(
            shaping.tc("filter", "add", "dev", device, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                       "match", "ip", "dst", f"{addresses[destination]}/32", "flowid", f"1:{class_id}")
        )  # fmt: skip
    return commands
