"""`netaware-aggregator` / `python -m netaware.aggregator`: serve the aggregator API with gunicorn (one worker
process holding the state, request threads)."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from netaware.aggregator.reading import TOPOLOGY_FORMS
from netaware.iperf import OMIT_S
from netaware.logs import configure_logging
from netaware.serving import WsgiServer, listen_address, observation_port_problem

T = TypeVar("T")


class CachedCall(Generic[T]):
    """A call's answer, kept for `ttl_s` (the node list changes rarely; every report checks it)."""

    def __init__(self, call: Callable[[], T], *, ttl_s: float) -> None:
        self.call, self.ttl_s = call, ttl_s
        self.value: T | None = None
        self.at = float("-inf")

    def __call__(self) -> T:
        if self.value is None or time.monotonic() - self.at > self.ttl_s:
            self.value, self.at = self.call(), time.monotonic()
        return self.value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="netaware-aggregator",
        description="Accept probe reports (POST /v1/reports, bearer token), smooth and age them, and serve the "
        "node-to-node topology (GET /v1/topology); OpenAPI at /v1/openapi.json.",
    )
    root.add_argument("--host", default="0.0.0.0")
    root.add_argument("--port", type=int, default=8080, help="reports, topology and everything else")
    root.add_argument(
        "--metrics", type=listen_address, default=None, metavar="HOST:PORT",
        help="also answer /healthz, /readyz and /metrics (only those) here: probes and Prometheus then need no "
        "access to the report port",
    )  # fmt: skip
    root.add_argument(
        "--nodes", default=None,
        help="comma-separated node names reports may name (default with --publish/--kubeconfig: the cluster's Nodes)",
    )  # fmt: skip
    root.add_argument(
        "--token-file", type=Path, default=None,
        help="file holding the agents' bearer token (default: the NETAWARE_AGGREGATOR_TOKEN variable)",
    )  # fmt: skip
    root.add_argument("--journal", type=Path, required=True, help="append-only file of accepted reports")
    root.add_argument("--ttl", type=float, default=60.0, help="seconds after which a link is no longer fresh")
    root.add_argument("--threads", type=int, default=8)
    root.add_argument(
        "--bandwidth-slot", type=_non_negative, default=5.0, metavar="SECONDS",
        help="length of one bandwidth-test slot (one test per node at most); 0 turns bandwidth tests off",
    )  # fmt: skip
    root.add_argument(
        "--bandwidth-seconds", type=int, default=2, metavar="SECONDS",
        help="length of one iperf3 test (1 or more), shorter than its slot",
    )  # fmt: skip
    root.add_argument(
        "--publish", action="store_true",
        help="write NetworkTopology resources (and recover from them at start) with the in-cluster account",
    )  # fmt: skip
    root.add_argument("--kubeconfig", type=Path, default=None, help="publish with this kubeconfig instead")
    root.add_argument(
        "--topology-form", choices=TOPOLOGY_FORMS, default="compact",
        help="compact (default): each node's measured links and offset, and the zone pairs, from which readers "
        "estimate the rest (grows with the measurements); full: every pair written out (n^2 links, past 5,000 "
        "nodes too large; for extenders older than the compact form)",
    )  # fmt: skip
    return root


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    token = (
        arguments.token_file.read_text().strip() if arguments.token_file
        else os.environ.get("NETAWARE_AGGREGATOR_TOKEN", "")
    )  # fmt: skip
    if not token:
        parser().error("no token: give --token-file or set NETAWARE_AGGREGATOR_TOKEN")
    if arguments.bandwidth_seconds < 1:
        parser().error(f"--bandwidth-seconds must be 1 or more, not {arguments.bandwidth_seconds}")
    if arguments.bandwidth_slot and arguments.bandwidth_slot <= arguments.bandwidth_seconds + OMIT_S:
        parser().error(f"--bandwidth-slot ({arguments.bandwidth_slot:g} s) must be longer than --bandwidth-seconds "
                       f"({arguments.bandwidth_seconds} s) plus the {OMIT_S} s iperf3 omits: a test must end within "
                       "its slot")  # fmt: skip
    static_nodes = [n.strip() for n in (arguments.nodes or "").split(",") if n.strip()]
    if not static_nodes and not (arguments.publish or arguments.kubeconfig):
        parser().error("give --nodes, or --publish / --kubeconfig to take the nodes from the cluster")
    configure_logging()

    def load() -> object:
        from netaware.aggregator.app import create_app
        from netaware.aggregator.journal import ReportJournal

        api = None
        nodes: Callable[[], Iterable[str]] = lambda: static_nodes  # noqa: E731
        zones: Callable[[], dict[str, str]] = dict
        if arguments.publish or arguments.kubeconfig:
            from netaware.kube.clients import api_client, node_names, node_zones

            api = api_client(arguments.kubeconfig)
            if not static_nodes:
                nodes = CachedCall(lambda: node_names(api), ttl_s=30.0)
            zones = CachedCall(lambda: node_zones(api), ttl_s=30.0)  # zone means estimate unmeasured pairs
        return create_app(
            token=token, nodes=nodes, zones=zones, journal=ReportJournal(arguments.journal), ttl_s=arguments.ttl,
            api=api, bandwidth_slot_s=arguments.bandwidth_slot, bandwidth_test_s=arguments.bandwidth_seconds,
            topology_form=arguments.topology_form,
        )  # fmt: skip

    problem = observation_port_problem(arguments.metrics, arguments.port)
    if problem:
        parser().error(problem)
    WsgiServer(load, host=arguments.host, port=arguments.port, threads=arguments.threads,
               observe=arguments.metrics).run()  # fmt: skip


if __name__ == "__main__":
    main()
