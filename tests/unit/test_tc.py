"""tc-scripts: the shaping commands, as data.

Checks: the exact command list for one node of a small profile (htb root and default class, per destination an
htb class with the link rate, a netem leaf with delay, jitter, loss and a queue limit, a u32 filter on the
destination address); the first command clears (idempotent apply); without netem only rates are built; the netem
queue holds 1.5x the bandwidth-delay product; unknown nodes are refused; `netaware tc apply --dry-run` prints the
same commands.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from netaware.cli import app
from netaware.core.links import LinkShape
from netaware.core.profiles import parse_profile
from netaware.tc.shaping import Shaping, ShapingError, apply_commands, netem_limit

PROFILE = parse_profile(
    {
        "name": "two-zones",
        "zones": {"a": {}, "b": {}},
        "nodes": {"n1": "a", "n2": "a", "n3": "b"},
        "default": {"delayMs": 0.5, "rateMbps": 1000},
        "zonePairs": [{"from": "a", "to": "b", "delayMs": 20, "jitterMs": 1, "lossRatio": 0.01, "rateMbps": 100}],
    }
)
ADDRESSES = {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.1.1"}


def test_commands_for_one_node() -> None:
    commands = [shlex.join(c) for c in apply_commands(PROFILE, "n1", ADDRESSES, Shaping("eth0"))]
    assert commands == [
        "tc qdisc del dev eth0 root",
        "tc qdisc add dev eth0 root handle 1: htb default 9999 r2q 100",
        "tc class add dev eth0 parent 1: classid 1:9999 htb rate 10gbit",
        "tc class add dev eth0 parent 1: classid 1:10 htb rate 1000mbit ceil 1000mbit burst 15k quantum 1514",
        "tc qdisc add dev eth0 parent 1:10 handle 10: netem delay 0.5ms limit 1000",
        "tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 flowid 1:10",
        "tc class add dev eth0 parent 1: classid 1:11 htb rate 100mbit ceil 100mbit burst 15k quantum 1514",
        "tc qdisc add dev eth0 parent 1:11 handle 11: netem delay 20ms 1ms 25% distribution normal loss 1% limit 1000",
        "tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.1.1/32 flowid 1:11",
    ]


def test_without_netem_only_rates_and_in_a_namespace() -> None:
    commands = apply_commands(PROFILE, "n3", ADDRESSES, Shaping("veth0", "lab-1"), netem=False)
    assert not any("netem" in c for c in commands)
    assert all(c[:3] == ["tc", "-n", "lab-1"] for c in commands)
    assert sum("u32" in c for c in commands) == 2


def test_netem_queue_holds_the_bandwidth_delay_product() -> None:
    assert netem_limit(LinkShape(delay_ms=1, rate_mbps=100)) == 1000  # the kernel default is enough
    # 1 Gbit/s x 100 ms = 12.5 MB = 8,334 packets of 1,500 B; x 1.5
    assert netem_limit(LinkShape(delay_ms=100, rate_mbps=1000)) == 12500


def test_unknown_nodes_are_refused() -> None:
    with pytest.raises(ShapingError, match="n9"):
        apply_commands(PROFILE, "n9", ADDRESSES, Shaping("eth0"))
    with pytest.raises(ShapingError, match="ghost"):
        apply_commands(PROFILE, "n1", {**ADDRESSES, "ghost": "10.9.9.9"}, Shaping("eth0"))


def test_dry_run_prints_the_commands(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "two-zones",
                "zones": {"a": {}, "b": {}},
                "nodes": {"n1": "a", "n2": "a", "n3": "b"},
                "default": {"delayMs": 0.5, "rateMbps": 1000},
                "zonePairs": [
                    {"from": "a", "to": "b", "delayMs": 20, "jitterMs": 1, "lossRatio": 0.01, "rateMbps": 100}
                ],
            }
        )
    )
    arguments = ["tc", "apply", "--profile", str(profile), "--node", "n1", "--dry-run"]
    for node, address in ADDRESSES.items():
        arguments += ["--address", f"{node}={address}"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    expected = [shlex.join(c) for c in apply_commands(PROFILE, "n1", ADDRESSES, Shaping("eth0"))]
    assert result.output.splitlines() == expected
    bad = CliRunner().invoke(app, ["tc", "apply", "--profile", str(profile), "--node", "n9", "--address", "n1=1.2.3.4"])
    assert bad.exit_code == 2 and "n9" in bad.output
