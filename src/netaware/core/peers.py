"""Who probes whom, and when bandwidth is tested: bounded probing cost for the telemetry agents.

- `select_peers`: each node probes every peer in a small cluster, and in a large one a deterministic sample of
  `limit` peers chosen by rendezvous (highest-random-weight) hashing, as goldpinger does. A node's sample is
  stable while the membership is (no churn in what is measured), changes minimally when nodes come and go, and
  rotating `round_index` rotates the sample so that over many rounds every pair gets measured.
- `bandwidth_rounds`: a round-robin tournament (circle method): N-1 rounds of N/2 disjoint pairs for even N (N
  rounds with one node idle for odd N), every unordered pair exactly once and no node in two tests in one round,
  because an iperf3 server runs one test at a time. Both directions: run the schedule once per direction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _weight(node: str, peer: str, round_index: int) -> int:
    digest = hashlib.blake2b(f"{node}\0{peer}\0{round_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def select_peers(node: str, members: Sequence[str], *, limit: int, round_index: int = 0) -> list[str]:
    """The peers `node` probes this round: all of them if there are at most `limit`, else `limit` by HRW hash."""
    peers = sorted(set(members) - {node})
    if limit <= 0:
        return []
    if len(peers) <= limit:
        return peers
    return sorted(peers, key=lambda peer: _weight(node, peer, round_index), reverse=True)[:limit]


def bandwidth_rounds(nodes: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Rounds of disjoint (client, server) pairs covering every unordered pair exactly once (circle method)."""
    players: list[str | None] = [*sorted(set(nodes))]
    if len(players) < 2:
        return []
    if len(players) % 2:
        players.append(None)  # a bye: its partner idles that round
    n = len(players)
    rounds = []
    for _ in range(n - 1):
        pairs = []
        for i in range(n // 2):
            a, b = players[i], players[n - 1 - i]
            if a is not None and b is not None:
                pairs.append((a, b))
        rounds.append(pairs)
        players = [players[0], players[-1], *players[1:-1]]  # fix the first, rotate the rest
    return rounds


def bandwidth_slot(
    node: str, nodes: Sequence[str], *, now_s: float, slot_s: float
) -> tuple[str, str | None, float, float]:
    """What `node` does in the bandwidth slot containing `now_s`: ("client" | "server" | "idle", peer, slot start,
    slot end). The schedule runs `bandwidth_rounds` once per direction, one round per slot, over and over, so every
    ordered pair is tested once per cycle and no node takes part in two tests at once."""
    rounds = bandwidth_rounds(nodes)
    if not rounds or slot_s <= 0:
        return ("idle", None, now_s, now_s + max(slot_s, 0.0))
    index = int(now_s // slot_s)
    start = index * slot_s
    position = index % (2 * len(rounds))
    reverse = position >= len(rounds)
    for a, b in rounds[position % len(rounds)]:
        client, server = (b, a) if reverse else (a, b)
        if node == client:
            return ("client", server, start, start + slot_s)
        if node == server:
            return ("server", client, start, start + slot_s)
    return ("idle", None, start, start + slot_s)


DEFAULT_PROBES_PER_SECOND = 1.0
"""The probe budget of a node: ICMP probes per second, averaged over a round, whatever the cluster's size."""
DEFAULT_PROBES_PER_PEER = 2
"""Probes per chosen peer in a round: two give a median that one delayed reply cannot move alone."""


class ProbePlanner:
    """Who each node probes in a round under a fixed budget of `probes_per_round` (round length x rate), in two
    parts, both deterministic so that any agent computes its own part from the membership alone:

    1. **Zone duty.** Each round the members of a zone share out every destination zone (their own included):
       member r of m takes the zones k with (k + round) mod m == r and probes one peer in each (rendezvous-hashed,
       so the peer rotates), so every ordered zone pair is measured every round by some node. A member has at most
       ceil(zones / m) duty zones; a round in which it has fewer spends the slot on a peer of its own zone, where
       a tenth of a millisecond tells nodes apart.
    2. **Rotation.** The other slots, as many every round, walk the ring of all nodes: in round t node i probes
       the nodes i + s for the next `rest` offsets s of 1..n-1, so that every ordered pair is measured once every
       (n - 1) / rest rounds, with no coordination and no hashing of n peers per node.

    Slots the two parts share (a peer both reach) are refilled from further along the rotation, so the budget is
    always spent. The budget bounds what a node sends; the duty alone exceeds it only in a zone with fewer members
    than zones x probes per peer / probes per round."""

    def __init__(self, zones: dict[str, str], *, probes_per_round: int, probes_per_peer: int = DEFAULT_PROBES_PER_PEER):
        if probes_per_round < 1 or probes_per_peer < 1:
            raise ValueError("probes per round and per peer must be 1 or more")
        self.nodes = sorted(zones)
        self.zones = zones
        self.probes_per_peer = probes_per_peer
        self.peers_per_round = max(1, probes_per_round // probes_per_peer)
        self.zone_names = sorted(set(zones.values()))
        self.members = {z: [n for n in self.nodes if zones[n] == z] for z in self.zone_names}
        self.rank = {n: i for z in self.zone_names for i, n in enumerate(self.members[z])}
        self.position = {n: i for i, n in enumerate(self.nodes)}

    def duty_zones(self, node: str, round_index: int) -> list[str]:
        count = len(self.members[self.zones[node]])
        return [z for k, z in enumerate(self.zone_names) if (k + round_index) % count == self.rank[node]]

    def peers(self, node: str, round_index: int) -> list[str]:
        """The peers `node` probes in round `round_index`, duty first; `probes_per_peer` probes each."""
        zone = self.zones[node]
        most_duty = -(-len(self.zone_names) // len(self.members[zone]))
        chosen: list[str] = []
        for duty_zone in self.duty_zones(node, round_index):
            candidates = [p for p in self.members[duty_zone] if p != node]
            if candidates:
                chosen.append(max(candidates, key=lambda p: _weight(node, p, round_index)))
        spare = min(most_duty, self.peers_per_round) - len(chosen)
        for peer in _ring_walk(self.members[zone], self.rank[node], round_index, spare):  # the zone's own ring
            if peer not in chosen:
                chosen.append(peer)
        rest = self.peers_per_round - most_duty
        for peer in _ring_walk(self.nodes, self.position[node], round_index, rest):
            if peer not in chosen:
                chosen.append(peer)
        # Slots the parts above shared (a duty or ring peer the rotation also reached: common in small clusters)
        # go on along the rotation, so the whole budget is spent: on six nodes every peer every round.
        count = len(self.nodes)
        wanted = min(self.peers_per_round, count - 1)
        after = (round_index + 1) * max(rest, 0)  # where this round's walk stopped (round numbers are large)
        for step in range(count - 1):
            if len(chosen) >= wanted:
                break
            peer = _ring_member(self.nodes, self.position[node], after + step)
            if peer not in chosen:
                chosen.append(peer)
        return chosen


def _ring_walk(ring: Sequence[str], position: int, round_index: int, steps: int) -> list[str]:
    """The `steps` members after `position` on `ring` that round `round_index` visits: offsets t*steps .. (t+1)*steps-1
    of 1..len-1, so that with the same `steps` every round the walk reaches every other member."""
    if steps <= 0 or len(ring) < 2:
        return []
    return [_ring_member(ring, position, offset) for offset in range(round_index * steps, (round_index + 1) * steps)]


def _ring_member(ring: Sequence[str], position: int, offset: int) -> str:
    """The member `offset` steps after `position` on `ring`, counting over the others only (never `position`)."""
    return ring[(position + 1 + offset % (len(ring) - 1)) % len(ring)]
