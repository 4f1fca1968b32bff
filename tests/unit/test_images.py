"""The image catalog and the builder's commands, without running a builder: reference normalisation as a CRI does
it, build order and bases, the root file system's command (no mirror named, caches left out), podman's command
(never a pull, the host network only where a registry is reached), and the errors for missing tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from netaware.images.building import (
    ImageBuildError,
    ImageSettings,
    build_command,
    catalog,
    check_prerequisites,
    container_image,
    export_command,
    with_bases,
)
from netaware.images.catalog import PYTHON_BASE_IMAGE, local_reference, normalize_reference, rootfs_command
from netaware.paths import REPO_ROOT


@pytest.mark.parametrize(
    ("reference", "normalized"),
    [
        ("netaware/probe:0.1.0", "docker.io/netaware/probe:0.1.0"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("localhost/netaware/pause:3.10", "localhost/netaware/pause:3.10"),
        ("example.test:5000/team/app", "example.test:5000/team/app:latest"),
        ("netaware/netaware@sha256:abc", "docker.io/netaware/netaware@sha256:abc"),
    ],
)
def test_references_normalise_as_a_cri_resolves_them(reference: str, normalized: str) -> None:
    assert normalize_reference(reference) == normalized


def test_podman_keeps_domainless_references_under_localhost() -> None:
    assert local_reference("netaware/probe:0.1.0") == "localhost/netaware/probe:0.1.0"
    assert local_reference("localhost/netaware/pause:3.10") == "localhost/netaware/pause:3.10"


def test_catalog_builds_bases_first_and_names_the_schedulers_image_from_its_manifest() -> None:
    specs = catalog(ImageSettings())
    keys = [spec.key for spec in specs]
    assert keys.index("python-base") < keys.index("netaware") < keys.index("probe")
    scheduler = next(spec for spec in specs if spec.key == "kube-scheduler")
    assert scheduler.reference == container_image(REPO_ROOT / "scheduler-extender/deployment.yaml", "kube-scheduler")
    coredns = next(spec for spec in specs if spec.key == "coredns")
    assert coredns.reference == container_image(REPO_ROOT / "hack/lab/coredns.yaml", "coredns")
    shared = next(spec for spec in specs if spec.key == "netaware")
    assert shared.build_args == {"PYTHON_IMAGE": PYTHON_BASE_IMAGE}


def test_asking_for_one_image_builds_its_bases_too() -> None:
    specs = catalog(ImageSettings())
    assert [spec.key for spec in with_bases(specs, ["probe"])] == ["python-base", "netaware", "probe"]
    assert [spec.key for spec in with_bases(specs, ["pause"])] == ["pause"]


def test_rootfs_comes_from_the_hosts_apt_sources_without_caches(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    command = rootfs_command(output=tmp_path / "rootfs.tar", sources=sources)
    assert command[0] == "mmdebstrap"
    assert "--variant=minbase" in command
    assert command[-1] == str(sources)  # the mirror is whatever the host uses; none is named in the code
    assert not any("http" in part for part in command)
    hooks = " ".join(part for part in command if part.startswith("--customize-hook="))
    assert "/var/lib/apt/lists/*" in hooks
    assert "docker-clean" in hooks


def test_only_registry_steps_get_the_host_network_and_never_a_pull(tmp_path: Path) -> None:
    specs = {spec.key: spec for spec in catalog(ImageSettings())}
    shared = build_command(specs["netaware"], context=tmp_path)
    router = build_command(specs["router"], context=tmp_path)
    assert "--pull=never" in shared and "--pull=never" in router
    assert shared[shared.index("--network") + 1] == "host"
    assert "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro" in shared
    assert router[router.index("--network") + 1] == "none"
    assert "-v" not in router


def test_archives_carry_the_runtime_name(tmp_path: Path) -> None:
    spec = next(spec for spec in catalog(ImageSettings()) if spec.key == "probe")
    command = export_command(spec, tmp_path / "probe.oci.tar")
    assert command[-2] == "containers-storage:localhost/netaware/probe:0.1.0"
    assert command[-1] == f"oci-archive:{tmp_path / 'probe.oci.tar'}:docker.io/netaware/probe:0.1.0"


def test_a_missing_input_file_names_the_make_target(tmp_path: Path) -> None:
    specs = [s for s in catalog(ImageSettings()) if s.key == "kube-scheduler"]
    missing = specs[0].__class__(**{**specs[0].__dict__, "files": (tmp_path / "controlplane/bin/kube-scheduler",)})
    settings = ImageSettings(apt_sources=REPO_ROOT / "pyproject.toml")
    with pytest.raises(ImageBuildError, match=r"make controlplane"):
        check_prerequisites([missing], settings)


def test_missing_apt_sources_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="no apt sources"):
        check_prerequisites([], ImageSettings(apt_sources=tmp_path / "none.sources"))
