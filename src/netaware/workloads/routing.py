"""How a workload service's downstream calls pick a replica: through kube-proxy (the Service's address; kube-proxy
picks an endpoint at random), or client-side through the router's library, each caller balancing its own calls as a
gRPC client or a mesh sidecar does.

Client-side (`--routing prequal`, or any balancing policy): one `Router` per downstream Service, following the
Service's EndpointSlices (`netaware.router.proxy.follow_service`), on an event loop of its own thread; request threads
hand it each call and wait for the answer. The choice, probing and retries are the router's own, so a workload
routed by Prequal behaves as the proxy does, without the extra hop. The pod's service account needs `get` on
Services and `list`, `watch` on EndpointSlices (the manifests add a Role for it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netaware.core.balancing import POLICIES, make_balancer
from netaware.core.slices import ServiceReference

if TYPE_CHECKING:
    from netaware.kube.api import ApiClient
    from netaware.router.proxy import Router

KUBE_PROXY = "kube-proxy"
ROUTINGS = (KUBE_PROXY, *POLICIES)
"""`--routing` choices: kube-proxy (the Service's address) or a balancing policy run by the caller itself."""
PREFER_CLOSE = "prefer-close"
"""kube-proxy with the Services' `trafficDistribution: PreferClose` (Kubernetes' own topology-aware routing: an
endpoint in the caller's zone if there is one, else any): a choice of the manifests, not of the caller."""
MANIFEST_ROUTINGS = (KUBE_PROXY, PREFER_CLOSE, *POLICIES)


class CallError(Exception):
    """A downstream call got no good answer (the reason names the replica or why there was none)."""


@dataclass(frozen=True)
class CallAnswer:
    body: bytes
    replica: str
    """host:port that answered."""


def service_reference(host: str, port: int, namespace: str) -> ServiceReference:
    """The Service a downstream host names: `name`, `name.namespace` or `name.namespace.svc[.cluster.local]`."""
    name, _, rest = host.partition(".")
    return ServiceReference(rest.split(".")[0] if rest else namespace, name, port)


class RoutedCalls:
    """Client-side routing: a Router per downstream Service on a loop thread of its own (start with `start`)."""

    def __init__(
        self,
        targets: Iterable[tuple[str, int]],
        *,
        policy: str,
        namespace: str,
        api_factory: Callable[[], ApiClient],
        seed: int | None = None,
    ) -> None:
        from netaware.router.proxy import Router  # aiohttp: only services that route their own calls pay for it

        if policy not in POLICIES:
            raise ValueError(f"unknown routing policy {policy!r}; choose from {', '.join(ROUTINGS)}")
        self.policy = policy
        self.services = {target: service_reference(*target, namespace) for target in dict.fromkeys(targets)}
        self.routers: dict[tuple[str, int], Router] = {
            target: Router([], make_balancer(policy, seed=seed)) for target in self.services
        }
        self._api_factory = api_factory
        self._loop = asyncio.new_event_loop()
        self._stops: list[threading.Event] = []

    def start(self) -> None:
        """Start the loop thread, the routers on it and one follower per Service (the API client is made here, in
        the serving process: gunicorn forks after the app factory's imports)."""
        from netaware.router.proxy import follow_service

        threading.Thread(target=self._loop.run_forever, name="routing", daemon=True).start()
        api = self._api_factory() if self.routers else None
        for target, router in self.routers.items():
            asyncio.run_coroutine_threadsafe(router.start(), self._loop).result(timeout=10)
            assert api is not None
            self._stops.append(follow_service(router, self.services[target], api=api, loop=self._loop))

    @property
    def synced(self) -> bool:
        """Every downstream Service's endpoints listed once (the pod's readiness waits for it)."""
        return all(router.synced for router in self.routers.values())

    def get(self, host: str, port: int, *, timeout_s: float) -> CallAnswer:
        """GET / on the replica the downstream's router chooses (retried on another as the router retries)."""
        router = self.routers[(host, port)]
        future = asyncio.run_coroutine_threadsafe(router.send("GET", "/"), self._loop)
        try:
            answer = future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise CallError(f"no answer within {timeout_s:g} s") from None
        if answer.status >= 400 or answer.replica is None:
            reason = answer.body.decode(errors="replace")[:200]
            raise CallError(f"HTTP {answer.status} from {answer.replica or 'the router'}: {reason}")
        return CallAnswer(answer.body, answer.replica)

    def state(self) -> dict[str, object]:
        """Each downstream's router state (its `/v1/state` as the proxy serves it), read on the routing loop."""

        async def read() -> dict[str, object]:
            return {f"{host}:{port}": router.state() for (host, port), router in self.routers.items()}

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(timeout=5)

    def stop(self) -> None:
        for stop in self._stops:
            stop.set()
        for router in self.routers.values():
            asyncio.run_coroutine_threadsafe(router.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
