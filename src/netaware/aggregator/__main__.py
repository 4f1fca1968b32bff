"""`netaware-aggregator` / `python -m netaware.aggregator`: serve the aggregator API with gunicorn (one worker
process holding the state, request threads)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from netaware.logs import configure_logging
from netaware.serving import WsgiServer


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="netaware-aggregator",
        description="Accept probe reports (POST /v1/reports, bearer token), smooth and age them, and serve the "
        "node-to-node topology (GET /v1/topology); OpenAPI at /v1/openapi.json.",
    )
    root.add_argument("--host", default="0.0.0.0")
    root.add_argument("--port", type=int, default=8080)
    root.add_argument("--nodes", required=True, help="comma-separated node names reports may name")
    root.add_argument(
        "--token-file", type=Path, default=None,
        help="file holding the agents' bearer token (default: the NETAWARE_AGGREGATOR_TOKEN variable)",
    )  # fmt: skip
    root.add_argument("--journal", type=Path, required=True, help="append-only file of accepted reports")
    root.add_argument("--ttl", type=float, default=60.0, help="seconds after which a link is no longer fresh")
    root.add_argument("--threads", type=int, default=8)
    return root


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    token = (
        arguments.token_file.read_text().strip() if arguments.token_file
        else os.environ.get("NETAWARE_AGGREGATOR_TOKEN", "")
    )  # fmt: skip
    if not token:
        parser().error("no token: give --token-file or set NETAWARE_AGGREGATOR_TOKEN")
    nodes = [n.strip() for n in arguments.nodes.split(",") if n.strip()]
    configure_logging()

    def load() -> object:
        from netaware.aggregator.app import ReportJournal, create_app

        return create_app(
            token=token, nodes=lambda: nodes, journal=ReportJournal(arguments.journal), ttl_s=arguments.ttl
        )

    WsgiServer(load, host=arguments.host, port=arguments.port, threads=arguments.threads).run()


if __name__ == "__main__":
    main()
