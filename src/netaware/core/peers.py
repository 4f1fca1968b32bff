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
