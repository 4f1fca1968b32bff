"""`netaware-workload`: the dummy service (`serve`) and the load driver (`load`), the processes a lab pod or a
container runs. argparse rather than typer: a pod starts this many times, and every import costs start-up time."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from netaware.logs import configure_logging
from netaware.serving import WsgiServer
from netaware.workloads.load import drive
from netaware.workloads.routing import KUBE_PROXY, ROUTINGS, RoutedCalls
from netaware.workloads.service import Downstream, ServiceSettings, create_app, resolver_from_environment


def _downstream(text: str) -> Downstream:
    try:
        return Downstream.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="netaware-workload",
        description="The dummy service of netaware's workload graphs, and an open-loop load driver.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve GET / (work, then call downstreams), /healthz, /metrics, probes")
    serve.add_argument("--name", required=True, help="service name (in responses and metrics)")
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default: all)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--work-ms", type=float, default=1.0, help="time spent per request before calling downstreams")
    serve.add_argument("--payload-bytes", type=int, default=1024, help="response body size")
    serve.add_argument(
        "--call", type=_downstream, action="append", default=[], metavar="HOST:PORT[*N]",
        help="a downstream to call N times per request, in the order given (repeatable)",
    )  # fmt: skip
    serve.add_argument(
        "--routing", choices=ROUTINGS, default=KUBE_PROXY,
        help="how downstream calls pick a replica: kube-proxy (the Service's address, the default) or a balancing "
        "policy the service runs itself over the Service's EndpointSlices (needs a service account that may read "
        "them)",
    )  # fmt: skip
    serve.add_argument("--threads", type=int, default=16, help="request threads")
    serve.add_argument(
        "--capacity", type=int, default=0,
        help="requests doing their work at once (the replica's cores); more wait in line (default 0: no limit)",
    )  # fmt: skip
    serve.add_argument(
        "--fail-ratio", type=float, default=0.0, help="share of requests answered 503 at once (fault experiments)"
    )
    load = commands.add_parser("load", help="send COUNT requests at RATE per second to a service, print JSON figures")
    load.add_argument("--target", required=True, metavar="HOST:PORT", help="the entry service")
    load.add_argument("--rate", type=float, default=20.0, help="requests per second (open loop)")
    load.add_argument("--count", type=int, default=200, help="requests to send")
    load.add_argument("--concurrency", type=int, default=64, help="most requests in flight")
    load.add_argument("--raw", action="store_true", help="include every latency and its send time in the JSON")
    return root


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    configure_logging()
    if arguments.command == "serve":
        try:
            settings = ServiceSettings(
                name=arguments.name,
                port=arguments.port,
                work_ms=arguments.work_ms,
                payload_bytes=arguments.payload_bytes,
                downstreams=tuple(arguments.call),
                capacity=arguments.capacity,
                fail_ratio=arguments.fail_ratio,
            )
        except ValueError as error:
            parser().error(str(error))
        routing = arguments.routing

        def app() -> Any:  # runs in gunicorn's worker, after fork: the routing threads must start there
            routed = None
            if routing != KUBE_PROXY:
                from netaware.kube.clients import api_client

                routed = RoutedCalls(
                    [(d.host, d.port) for d in settings.downstreams], policy=routing,
                    namespace=os.environ.get("POD_NAMESPACE", "default"), api_factory=api_client,
                )  # fmt: skip
                routed.start()
            return create_app(settings, resolver_from_environment(), routed)

        server = WsgiServer(
            app,
            host=arguments.host,
            port=arguments.port,
            threads=arguments.threads,
        )
        server.run()
        return
    target = Downstream.parse(arguments.target)
    result = drive(
        target.host,
        target.port,
        resolver_from_environment(),
        rate_per_s=arguments.rate,
        count=arguments.count,
        concurrency=arguments.concurrency,
    )
    summary = result.summary()
    if arguments.raw:
        summary |= {"latenciesMs": result.latencies_ms, "sentS": result.sent_s, "startedAt": result.started_at_s}
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
