"""The aggregator's heatmap page in headless Chromium (installed by `make debian`): the page's script fetches
/v1/topology and draws the RTT, bandwidth and loss heatmaps.

Checks: after the script ran, the DOM holds three heatmap canvases and the number of coloured cells the data
calls for (the ordered pairs of the reporting nodes, each metric it has; the quiet node's own pairs unknown); the
status line names the stale node; the screenshot shows the red-to-green cells (many distinct colours where a blank or
failed page has a handful). Fails loudly when Chromium is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from netaware.aggregator.app import create_app
from tests.conftest import serving

pytestmark = pytest.mark.browser

TOKEN = "page"
NODES = ["node-a", "node-b", "node-c"]
NOW = time.time()


def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("headless Chromium is missing: `make debian` installs it", pytrace=False)
    return binary


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(token=TOKEN, nodes=lambda: NODES, ttl_s=60, clock=lambda: NOW)
    client = app.test_client()
    for node, at in [("node-a", NOW), ("node-b", NOW), ("node-c", NOW - 600)]:  # node-c went quiet
        peers = [
            {"peer": p, "sent": 20, "received": 19 if p == "node-c" else 20, "rttMs": 2.0 + 10 * i, "jitterMs": 0.1,
             "bandwidthMbps": 900.0 - 300 * i}
            for i, p in enumerate(NODES) if p != node
        ]  # fmt: skip
        answer = client.post("/v1/reports", json={"node": node, "measuredAt": at, "peers": peers},
                             headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert answer.status_code == 202, answer.get_json()
    with serving(app) as url:
        yield f"{url}/"


def headless(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=3000", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_page_draws_three_heatmaps_from_the_topology(url: str) -> None:
    dom = headless("--dump-dom", url).stdout
    assert len(re.findall(r"<canvas[^>]*data-metric=", dom)) == 3, dom[:2000]
    cells = int(re.search(r'data-cells="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    # RTT and loss for the pairs of the nodes that report, 2 x 4 (node-c went quiet: its own pairs are unknown, never
    # estimated from the reverse direction); bandwidth where measured (a and b's rows, 4).
    assert cells == 8 + 4, dom[:2000]
    assert "stale: node-c" in dom


def test_the_screenshot_shows_coloured_cells(url: str, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"  # kept under pytest's tmp folder for a person to look at
    result = headless(f"--screenshot={shot}", "--window-size=1300,700", url)
    assert shot.exists(), result.stderr[-2000:]
    pixels = (matplotlib.image.imread(str(shot))[..., :3] * 255).astype(np.uint8)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::7]}
    saturated = [c for c in colours if max(c) - min(c) > 120]  # the heatmap's reds, yellows and greens
    assert len(saturated) >= 20, f"{len(saturated)} saturated colours: the heatmaps did not render"
