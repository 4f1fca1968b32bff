"""ICMP echo as the probe agents and the lab send it: icmplib's sockets, with every probe of a round in flight at once.

icmplib's own `ping`/`multiping` wait for each probe's reply (or its timeout) before sending the next one to that
host, so a peer that answers nothing costs `count x timeout` (20 s a round at 20 probes and 1 s) and holds back the
report of every other peer measured in that round: a node cut off made every agent's round three times longer, and
its links looked lossy a round late. Here the probes go out `interval_s` apart whatever comes back, replies are read
as they arrive, and a round lasts `count x interval_s + timeout_s` however many are lost. A reply counts only within
`timeout_s` of its own probe, as icmplib's.
"""

from __future__ import annotations

import select
import time

import icmplib
from icmplib import ICMPRequest, ICMPv4Socket
from icmplib.exceptions import ICMPLibError, TimeoutExceeded
from icmplib.utils import unique_identifier

ECHO_REPLY = 0
DEFAULT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 1.0
"""For reading a packet already waiting (select said so): never reached, but never short enough to drop it."""


def ping(
    addresses: list[str], *, count: int, interval_s: float, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[icmplib.Host]:
    """`count` echo requests to each of `addresses` (IPv4), one round of them every `interval_s`; one icmplib Host
    per address, in order (its RTTs in ms, its loss). Needs a raw socket (root or CAP_NET_RAW)."""
    identifier = unique_identifier()
    sent_at: dict[tuple[str, int], float] = {}
    rtts: dict[str, list[float]] = {address: [] for address in addresses}
    with ICMPv4Socket(privileged=True) as sock:

        def receive_until(deadline: float) -> None:
            while (left := deadline - time.monotonic()) > 0:
                # Wait here, not in receive(): it drops a packet it reads after its own time limit, which a short
                # limit turns into lost replies (62 of 200 answered at 10-ms intervals over a 20-ms RTT).
                readable, _, _ = select.select([sock.sock], [], [], left)
                if not readable:
                    return
                try:
                    reply = sock.receive(None, timeout=READ_TIMEOUT_S)
                except TimeoutExceeded:
                    continue
                # A raw socket sees every ICMP packet of the namespace: keep only echo replies to our own probes.
                if reply.type != ECHO_REPLY or reply.id != identifier:
                    continue
                started = sent_at.pop((reply.source, reply.sequence), None)
                if started is not None and reply.time - started <= timeout_s:
                    rtts[reply.source].append((reply.time - started) * 1e3)

        for sequence in range(count):
            round_started = time.monotonic()
            for address in addresses:
                request = ICMPRequest(destination=address, id=identifier, sequence=sequence)
                try:
                    sock.send(request)
                except ICMPLibError:  # no route (a cut-off lab node): a probe sent and lost, not a failed round
                    continue
                sent_at[(address, sequence)] = request.time
            receive_until(round_started + interval_s)
        receive_until(time.monotonic() + timeout_s)
    return [icmplib.Host(address, count, rtts[address]) for address in addresses]
