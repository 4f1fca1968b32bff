"""Extender settings: each option is a flag, an env var (NETAWARE_EXTENDER_*) and a default, documented here."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from netaware.core.appgroup import CostWeights
from netaware.core.scoring import DEFAULT_STRATEGY
from netaware.serving import listen_address


@dataclass(frozen=True)
class ExtenderSettings:
    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = 8888
    """Port to listen on (kube-scheduler's extender urlPrefix points here)."""
    metrics: str = ""
    """HOST:PORT that also answers /healthz, /readyz and /metrics (only those); empty: none. In-cluster the API
    listens on the loopback its scheduler calls, and kubelet probes and Prometheus use this address."""
    kubeconfig: Path | None = None
    """Kubeconfig to watch the cluster with; unset: the in-cluster service account."""
    strategy: str = DEFAULT_STRATEGY
    """Scoring strategy for AppGroups that do not name one."""
    weights: str = "0.5,0.3,0.2"
    """Default cost weights latency,bandwidth,loss (each 0..1) for AppGroups that set none."""
    topology_ttl_s: float = 900.0
    """Measured links older than this are ignored (priced as unknown); 0 disables the check."""
    topology_refresh_s: float = 2.0
    """Rebuild the link-cost matrices at most this often while NetworkTopologies keep changing."""
    max_body_bytes: int = 64 * 1024 * 1024
    """Largest request body accepted (a full NodeList of 5,000 nodes is ~10-20 MB in non-cache mode)."""
    threads: int = 8
    """Request threads of the single gunicorn worker (state lives in that worker)."""
    sync_timeout_s: float = 60.0
    """How long to wait for the first list of every kind before serving (readiness stays false until synced)."""

    def cost_weights(self) -> CostWeights:
        latency, bandwidth, loss = (float(x) for x in self.weights.split(","))
        return CostWeights(latency=latency, bandwidth=bandwidth, loss=loss)

    def metrics_address(self) -> tuple[str, int] | None:
        """`metrics` as (host, port), None when empty; argparse.ArgumentTypeError when it is not HOST:PORT."""
        return listen_address(self.metrics) if self.metrics else None


HELP = {
    "host": "address to listen on",
    "port": "port to listen on (kube-scheduler's extender urlPrefix points here)",
    "metrics": "HOST:PORT that also answers /healthz, /readyz and /metrics, and only those (empty: none)",
    "kubeconfig": "kubeconfig to watch the cluster with; unset: the in-cluster service account",
    "strategy": "scoring strategy for AppGroups that do not name one",
    "weights": "default cost weights latency,bandwidth,loss (each 0..1) for AppGroups that set none",
    "topology_ttl_s": "measured links older than this many seconds are priced as unknown; 0 disables the check",
    "topology_refresh_s": "rebuild the link-cost matrices at most this often while NetworkTopologies change",
    "max_body_bytes": "largest request body accepted, in bytes",
    "threads": "request threads of the single worker process",
    "sync_timeout_s": "seconds to wait for the first list of every kind before serving",
}


def _parser_type(name: str, default: object) -> type | object:
    if name == "kubeconfig":
        return lambda value: Path(value) if value else None
    return type(default)


def parse_settings(argv: list[str] | None = None) -> ExtenderSettings:
    """Flags override env vars (NETAWARE_EXTENDER_<NAME>), which override the defaults."""
    defaults = ExtenderSettings()
    parser = argparse.ArgumentParser(
        prog="netaware-extender",
        description="kube-scheduler extender: filters nodes that break AppGroup hard limits and scores the rest "
        "by network cost to the pod's dependencies and dependants.",
    )
    from_environment = {}
    for item in fields(ExtenderSettings):
        default = getattr(defaults, item.name)
        env = f"NETAWARE_EXTENDER_{item.name.upper()}"
        convert = _parser_type(item.name, default)
        if env in os.environ:
            try:
                from_environment[item.name] = convert(os.environ[env])  # type: ignore[operator]
            except ValueError:
                # Kubernetes' service links set <SERVICE>_PORT=tcp://... for every Service of the pod's namespace:
                # a Service named netaware-extender sets NETAWARE_EXTENDER_PORT (hence enableServiceLinks: false).
                parser.error(f"{env}={os.environ[env]!r} is not a valid {getattr(convert, '__name__', 'value')} "
                             "(set by a Service link? give the pod enableServiceLinks: false)")  # fmt: skip
        parser.add_argument(
            f"--{item.name.replace('_', '-')}",
            dest=item.name,
            default=from_environment.get(item.name, default),
            type=convert,  # type: ignore[arg-type]
            help=f"{HELP[item.name]} [env {env}; default {default}]",
        )
    namespace = parser.parse_args(argv)
    return ExtenderSettings(**{item.name: getattr(namespace, item.name) for item in fields(ExtenderSettings)})
