"""Peer sampling and the bandwidth tournament (core/peers.py), as properties over any membership.

Checks: small clusters probe everyone; large ones exactly `limit` distinct peers, never themselves, stable for
the same membership, minimally disturbed when a node joins, rotating with the round so every pair is covered over
time; the tournament covers every unordered pair exactly once, no node twice in a round, N-1 rounds for even N
and N for odd N.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from netaware.core.peers import bandwidth_rounds, select_peers

NODES = [f"node-{i}" for i in range(40)]


def test_small_clusters_probe_everyone() -> None:
    assert select_peers("a", ["a", "b", "c"], limit=10) == ["b", "c"]


def test_large_clusters_probe_a_stable_bounded_sample() -> None:
    first = select_peers("node-0", NODES, limit=8)
    assert len(first) == len(set(first)) == 8 and "node-0" not in first
    assert select_peers("node-0", list(reversed(NODES)), limit=8) == first  # order of members does not matter


def test_a_joining_node_disturbs_the_sample_minimally() -> None:
    before = set(select_peers("node-0", NODES, limit=8))
    after = set(select_peers("node-0", [*NODES, "node-new"], limit=8))
    assert len(before - after) <= 1


def test_rotating_rounds_cover_every_pair_over_time() -> None:
    covered = {(n, p) for r in range(40) for n in NODES for p in select_peers(n, NODES, limit=8, round_index=r)}
    assert len(covered) == len(NODES) * (len(NODES) - 1)


@given(st.sets(st.text(alphabet="abcdefgh0123", min_size=1, max_size=4), max_size=25))
def test_the_tournament_covers_each_pair_once_with_disjoint_rounds(members: set[str]) -> None:
    rounds = bandwidth_rounds(sorted(members))
    seen = [frozenset(pair) for round_ in rounds for pair in round_]
    assert len(seen) == len(set(seen))
    assert set(seen) == {frozenset(p) for p in itertools.combinations(members, 2)}
    for round_ in rounds:
        in_round = [node for pair in round_ for node in pair]
        assert len(in_round) == len(set(in_round))
    n = len(members)
    assert len(rounds) == (0 if n < 2 else n - 1 if n % 2 == 0 else n)


def test_bandwidth_slots_cover_every_ordered_pair_once_per_cycle_without_overlap() -> None:
    from netaware.core.peers import bandwidth_rounds, bandwidth_slot

    nodes = [f"n{i}" for i in range(7)]
    cycle = 2 * len(bandwidth_rounds(nodes))
    tested: list[tuple[str, str]] = []
    for slot in range(cycle):
        roles = {node: bandwidth_slot(node, nodes, now_s=slot * 5.0 + 1.0, slot_s=5.0) for node in nodes}
        clients = [(node, peer) for node, (role, peer, _, _) in roles.items() if role == "client"]
        servers = {node for node, (role, _, _, _) in roles.items() if role == "server"}
        assert {peer for _, peer in clients} == servers  # each test has its server, nobody is in two
        assert all(start == slot * 5.0 and end == start + 5.0 for _, _, start, end in roles.values())
        tested += clients
    assert sorted(tested) == sorted((a, b) for a in nodes for b in nodes if a != b)
