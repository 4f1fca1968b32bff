"""The images `make images` built, run the way a node runs them (podman, no network): they hold the current source
(a stale layer cache would not), run as their non-root user where the component allows it, keep no wheels, apt lists
or apt caches in their layers, start with a read-only root file system, and their OCI archives name the image as a
CRI resolves the manifests' references."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from netaware.images.building import CONTAINERS_CONF, ImageSettings, catalog
from netaware.paths import REPO_ROOT

pytestmark = pytest.mark.images

SETTINGS = ImageSettings()


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    if not SETTINGS.containers_conf.exists():
        pytest.fail("no images built: run `make images` first", pytrace=False)
    assert SETTINGS.containers_conf.read_text() == CONTAINERS_CONF
    env = {**os.environ, "CONTAINERS_CONF": str(SETTINGS.containers_conf)}
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def run(image: str, *command: str, entrypoint: str = "sh") -> subprocess.CompletedProcess[str]:
    return podman("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--entrypoint", entrypoint,
                  image, *command)  # fmt: skip


def test_the_shared_image_holds_the_current_source() -> None:
    source = REPO_ROOT / "src/netaware/lab/booting.py"
    script = (
        "import hashlib, netaware.lab.booting as m; print(hashlib.sha256(open(m.__file__, 'rb').read()).hexdigest())"
    )
    result = run("localhost/netaware/netaware:0.1.0", "-c", script, entrypoint="python3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == hashlib.sha256(source.read_bytes()).hexdigest(), "image is stale: `make images`"


@pytest.mark.parametrize(("image", "uid"), [("netaware", "65532"), ("aggregator", "65532"), ("router", "65532"),
                                            ("probe", "0")])  # fmt: skip
def test_images_run_as_their_user_and_keep_no_build_leftovers(image: str, uid: str) -> None:
    checks = (
        "id -u; "
        "test ! -e /wheels && echo no-wheels; "
        'test -z "$(ls /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" && echo no-lists; '
        'test -z "$(ls /var/cache/apt/*.bin 2>/dev/null)" && echo no-apt-cache; '
        "python3 -c 'import pip' 2>/dev/null || echo no-pip"
    )
    result = run(f"localhost/netaware/{image}:0.1.0", "-c", checks)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [uid, "no-wheels", "no-lists", "no-apt-cache", "no-pip"]


def test_the_cli_starts_on_a_read_only_root_without_warnings() -> None:
    result = run("localhost/netaware/netaware:0.1.0", "--help", entrypoint="netaware")
    assert result.returncode == 0 and "Usage" in result.stdout, result.stderr
    assert "matplotlib" not in result.stderr and "Warning" not in result.stderr, result.stderr


def test_archives_name_each_image_as_a_cri_resolves_it() -> None:
    for spec in catalog(SETTINGS):
        if not spec.deployable:
            continue
        with tarfile.open(SETTINGS.archive(spec.key)) as archive:
            index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
        names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
        assert any(spec.runtime_reference.endswith(name) or name == spec.runtime_reference for name in names), names


def test_build_report_lists_sizes_and_times() -> None:
    report = json.loads(Path(SETTINGS.report_file).read_text())
    images = {image["key"]: image for image in report["images"]}
    assert {"netaware", "probe", "aggregator", "router", "pause", "kube-scheduler", "coredns"} <= set(images)
    assert all(image["size_bytes"] > 0 for image in images.values())
