"""`netaware-probe` / `python -m netaware.probe`: measure this node's peers every round and report them."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from flask import Flask, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.serving import make_server

from netaware.core.peers import DEFAULT_PROBES_PER_SECOND
from netaware.logs import configure_logging
from netaware.probe.agent import (
    FIXED_PEER_LIMIT,
    FIXED_PROBES,
    AgentSettings,
    ProbeAgent,
)
from netaware.serving import listen_address


def _peer(text: str) -> tuple[str, str]:
    name, _, address = text.partition("=")
    if not name or not address:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ADDRESS")
    return name, address


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="netaware-probe",
        description="Ping this node's peers with real ICMP every round and post the results to the aggregator.",
    )
    root.add_argument("--node", default=os.environ.get("NODE_NAME"), help="this node (default: $NODE_NAME)")
    root.add_argument("--peer", type=_peer, action="append", default=[], metavar="NAME=ADDRESS",
                      help="a peer to probe (repeatable)")  # fmt: skip
    root.add_argument("--aggregator", required=True, metavar="URL", help="the aggregator's base URL")
    root.add_argument("--token-file", type=Path, default=None,
                      help="bearer token file (default: $NETAWARE_AGGREGATOR_TOKEN)")  # fmt: skip
    root.add_argument(
        "--probes-per-second", type=float, default=DEFAULT_PROBES_PER_SECOND, metavar="RATE",
        help=f"the probe budget (default {DEFAULT_PROBES_PER_SECOND:g}): RATE ICMP probes per second on average "
        "whatever the cluster's size, 2 per peer, every zone pair measured every round by some node and the rest "
        "in rotation (with --peers-from-api, zones from the Nodes' topology.kubernetes.io/zone labels); 0: no "
        "budget, --probes to each of up to --peer-limit peers every round instead",
    )  # fmt: skip
    root.add_argument(
        "--probes",
        type=int,
        default=None,
        help=f"with --probes-per-second 0: ICMP probes per peer and round (default {FIXED_PROBES})",
    )
    root.add_argument("--peer-limit", type=int, default=None,
                      help=f"with --probes-per-second 0: peers per round at most, rendezvous-hashed "
                      f"(default {FIXED_PEER_LIMIT})")  # fmt: skip
    root.add_argument("--interval", type=float, default=0.05, help="seconds between probes to one peer")
    root.add_argument("--round", type=float, default=10.0, help="seconds between rounds")
    root.add_argument(
        "--peers-from-api", action="store_true",
        help="probe every Node's InternalIP (in-cluster account; refreshed each round) instead of --peer",
    )  # fmt: skip
    root.add_argument("--netns", default=None, help="measure from inside this network namespace (the lab)")
    root.add_argument("--metrics", type=listen_address, default=("0.0.0.0", 9100), metavar="HOST:PORT",
                      help="/healthz and /metrics")  # fmt: skip
    return root


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    if not arguments.node:
        parser().error("no node name: give --node or set NODE_NAME")
    token = (
        arguments.token_file.read_text().strip()
        if arguments.token_file
        else os.environ.get("NETAWARE_AGGREGATOR_TOKEN", "")
    )
    if not token:
        parser().error("no token: give --token-file or set NETAWARE_AGGREGATOR_TOKEN")
    budget = arguments.probes_per_second
    if budget < 0:
        parser().error(f"--probes-per-second must be 0 (no budget) or more, not {budget:g}")
    if budget and (arguments.probes is not None or arguments.peer_limit is not None):
        parser().error("--probes and --peer-limit apply without a budget only: add --probes-per-second 0")
    try:
        settings = AgentSettings(
            node=arguments.node, peers=dict(arguments.peer), aggregator_url=arguments.aggregator.rstrip("/"),
            token=token, probes=FIXED_PROBES if arguments.probes is None else arguments.probes,
            interval_s=arguments.interval,
            round_s=arguments.round, netns=arguments.netns,
            peer_limit=FIXED_PEER_LIMIT if arguments.peer_limit is None else arguments.peer_limit,
            probes_per_second=budget or None,
        )  # fmt: skip
    except ValueError as error:
        parser().error(str(error))
    configure_logging()
    peer_source = zone_source = None
    if arguments.peers_from_api:
        from netaware.kube.clients import api_client, node_addresses, node_zones

        api = api_client()
        peer_source = lambda: node_addresses(api)  # noqa: E731
        zone_source = lambda: node_zones(api)  # noqa: E731
    elif not arguments.peer:
        parser().error("no peers: give --peer NAME=ADDRESS (repeatable) or --peers-from-api")
    agent = ProbeAgent(settings, peer_source=peer_source, zone_source=zone_source)
    app = Flask("netaware-probe")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", node=settings.node, buffered=len(agent.pending))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(agent.registry), mimetype=CONTENT_TYPE_LATEST)

    host, port = arguments.metrics
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    agent.run(stop)
    server.shutdown()


if __name__ == "__main__":
    main()
