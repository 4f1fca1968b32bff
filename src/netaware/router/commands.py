"""`netaware-router`: the latency router as a reverse proxy (`proxy`) and as the AviatorPolicy controller
(`controller`). argparse, like the other long-running processes: quick to start, no extra imports."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from netaware.core.balancing import POLICIES, make_balancer
from netaware.core.selection import PAPER_UPKEEP, SelectionSettings
from netaware.core.slices import ServiceReference
from netaware.logs import configure_logging
from netaware.serving import listen_address


def _replica(text: str) -> str:
    host, port = listen_address(text)
    return f"{host}:{port}"


def _service(text: str) -> ServiceReference:
    try:
        return ServiceReference.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="netaware-router",
        description="netaware's latency router: Prequal (probe pool, hot-cold selection) as a reverse proxy, and "
        "the AviatorPolicy controller that steers a Service's endpoints.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    proxy = commands.add_parser(
        "proxy", help="route HTTP requests to replicas by a balancing policy (Prequal by default)",
        description="An L7 reverse proxy: every path is forwarded to one replica chosen per request; idempotent "
        "requests that fail are retried on another replica. /healthz, /metrics and /v1/state are on --admin.",
    )  # fmt: skip
    proxy.add_argument("--listen", type=listen_address, default=("0.0.0.0", 8080), metavar="HOST:PORT")
    proxy.add_argument("--admin", type=listen_address, default=("0.0.0.0", 9090), metavar="HOST:PORT")
    replicas = proxy.add_mutually_exclusive_group(required=True)
    replicas.add_argument(
        "--replica", type=_replica, action="append", metavar="HOST:PORT",
        help="a replica to route to (repeatable): a static list",
    )  # fmt: skip
    replicas.add_argument(
        "--service", type=_service, metavar="NAMESPACE/NAME:PORT",
        help="follow this Service port's EndpointSlices: ready endpoints join, terminating ones drain, removed ones "
        "leave at once (PORT: the Service's port number or name)",
    )  # fmt: skip
    proxy.add_argument("--kubeconfig", type=Path, default=None,
                       help="with --service (default: in-cluster service account)")  # fmt: skip
    proxy.add_argument("--policy", choices=POLICIES, default="prequal")
    proxy.add_argument("--pool-size", type=int, default=16, help="Prequal: probes kept (default 16)")
    proxy.add_argument("--probes-per-query", type=float, default=3.0, help="Prequal: r_probe (default 3)")
    proxy.add_argument("--hot-quantile", type=float, default=0.8, help="Prequal: Q_RIF (default 0.8)")
    proxy.add_argument(
        "--paper-parameters", action="store_true",
        help="Prequal: the paper's pool upkeep (reuse budget from pool and replica count, one removal per query, "
        "oldest and worst in turn, random below 2 probes) and latency signal (the replica's own estimate only) "
        "instead of netaware's (reuse 3, the worst every 8th; the probe's round trip added to the estimate)",
    )  # fmt: skip
    proxy.add_argument("--max-attempts", type=int, default=3, help="replicas an idempotent request may try")
    proxy.add_argument("--seed", type=int, default=None, help="random seed (reproducible choices)")
    controller = commands.add_parser(
        "controller", help="run the AviatorPolicy controller (keeps <service>-aviator on the best endpoints)",
        description="For each AviatorPolicy: probe the target Service's ready endpoints, choose by the policy's "
        "algorithm, and keep the Service <target>-aviator and its EndpointSlice on the chosen endpoints.",
    )  # fmt: skip
    controller.add_argument("--kubeconfig", type=Path, default=None, help="default: in-cluster service account")
    controller.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    controller.add_argument("--metrics", type=listen_address, default=("0.0.0.0", 9090), metavar="HOST:PORT",
                            help="/healthz and /metrics")  # fmt: skip
    controller.add_argument("--probe-timeout", type=float, default=1.0, help="seconds per endpoint probe")
    return root


def _run_until_signalled(main: asyncio.Future[None] | asyncio.Task[None]) -> None:
    loop = asyncio.get_event_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main.cancel)


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    configure_logging()
    if arguments.command == "proxy":
        import uvloop

        from netaware.router.proxy import Router, RouterSettings, follow_service, serve

        try:
            upkeep = PAPER_UPKEEP if arguments.paper_parameters else {}
            settings = SelectionSettings(
                pool_size=arguments.pool_size,
                probes_per_query=arguments.probes_per_query,
                hot_quantile=arguments.hot_quantile,
                **upkeep,
            )
            router_settings = RouterSettings(max_attempts=arguments.max_attempts)
        except ValueError as error:
            parser().error(str(error))
        balancer = make_balancer(arguments.policy, seed=arguments.seed, settings=settings)
        router = Router(arguments.replica or [], balancer, settings=router_settings)

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            _run_until_signalled(task)
            stop_following = None
            if arguments.service:
                from netaware.kube.clients import api_client

                stop_following = follow_service(
                    router, arguments.service, api=api_client(arguments.kubeconfig), loop=asyncio.get_running_loop()
                )
            try:
                await serve(
                    router, host=arguments.listen[0], port=arguments.listen[1],
                    admin_host=arguments.admin[0], admin_port=arguments.admin[1],
                )  # fmt: skip
            finally:
                if stop_following is not None:
                    stop_following.set()

        uvloop.run(run())
        return
    from netaware.router.controller import run_controller

    run_controller(arguments)


if __name__ == "__main__":
    main()
