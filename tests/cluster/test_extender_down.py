"""When the extender is down, the netaware scheduler follows its `ignorable` setting.

Checks, each on its own cluster (the extender process is killed for real):
- ignorable: false (the shipped setting): the pod stays Pending and its FailedScheduling event names the
  extender; nothing is placed without the hard-limit filter.
- ignorable: true: the pod is bound anyway, by the scheduler's own plugins.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from .conftest import Cluster, create_pod, pod_events, pod_manifest, start_cluster, wait_bound, wait_for

pytestmark = pytest.mark.cluster


def kill_extender(cluster: Cluster) -> None:
    os.killpg(cluster.component("extender")["pid"], signal.SIGKILL)


@pytest.fixture(scope="module")
def strict_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory, fake_nodes=3, extender_ignorable=False)


@pytest.fixture(scope="module")
def lenient_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory, fake_nodes=3, extender_ignorable=True)


def test_not_ignorable_extender_down_leaves_the_pod_pending(strict_cluster: Cluster) -> None:
    create_pod(strict_cluster, pod_manifest("before", {"app": "x"}))
    wait_bound(strict_cluster, "before")  # the path works while the extender is up
    kill_extender(strict_cluster)
    create_pod(strict_cluster, pod_manifest("after", {"app": "x"}))

    filter_url = f"{strict_cluster.status['extenderUrl']}/filter"

    def extender_error() -> str | None:
        for event in pod_events(strict_cluster, "after"):
            if event.reason == "FailedScheduling" and filter_url in (event.message or ""):
                return str(event.message)
        return None

    message = wait_for(extender_error, timeout_s=30, what="FailedScheduling naming the extender's URL")
    assert "connection refused" in message or "connection reset" in message
    assert strict_cluster.core.read_namespaced_pod("after", "default").spec.node_name is None


def test_ignorable_extender_down_schedules_anyway(lenient_cluster: Cluster) -> None:
    kill_extender(lenient_cluster)
    create_pod(lenient_cluster, pod_manifest("after", {"app": "x"}))
    assert wait_bound(lenient_cluster, "after")
    assert "Skipping extender" in lenient_cluster.log("netaware-scheduler")
