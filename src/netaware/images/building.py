"""Building netaware's images with Debian's tools alone: mmdebstrap for the base root file system, podman (daemonless)
for the Dockerfiles, skopeo for the OCI archives the lab's nodes import. No Docker engine, no registry pull.

Every step is cached and idempotent: the root file system is rebuilt only when its command line changes (a label
on the imported image records it), podman's layer cache skips unchanged Dockerfile steps, and an archive is
re-exported only when its image's ID changed. `build_images` returns what it did with sizes and times.

Four settings this kind of machine needs, each kept to the builds (the system's own configuration is untouched):
- a containers.conf of our own (CONTAINERS_CONF): runc, since crun refuses the hybrid cgroup layout; ulimits within
  the hard limits, since root here lacks CAP_SYS_RESOURCE; and the host network namespace, so that no build step
  ever starts on podman's default bridge;
- the host's CA bundle bind-mounted into the steps that reach a package registry (the registries may sit behind a
  proxy whose CA only the host trusts); the images keep Debian's own bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from netaware.images.catalog import (
    PYTHON_BASE_IMAGE,
    ROOTFS_IMAGE,
    ImageSpec,
    build_catalog,
    local_reference,
    rootfs_command,
)
from netaware.paths import REPO_ROOT, env_path
from netaware.processes import log_tail

REQUIRED_TOOLS = {"mmdebstrap": "mmdebstrap", "podman": "podman", "skopeo": "skopeo"}
"""Command -> the Debian package that has it (`make debian` installs them)."""
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
INPUTS_LABEL = "io.netaware.rootfs-inputs"

CONTAINERS_CONF = """\
# Written by `netaware images build`; used through CONTAINERS_CONF for the project's builds only.
[containers]
# root here lacks CAP_SYS_RESOURCE: a container may not raise its limits above the hard ones.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
# Never podman's default bridge network: build steps share the host's network namespace (or none).
netns = "host"
[engine]
# crun refuses this VM's hybrid cgroup layout; runc works.
runtime = "runc"
"""


class ImageBuildError(RuntimeError):
    """A build that cannot go on: the message says what is missing or which step failed, and where its log is."""


@dataclass(frozen=True)
class ImageSettings:
    out_dir: Path = field(default_factory=lambda: env_path("NETAWARE_IMAGES_DIR", REPO_ROOT / "build/images"))
    """NETAWARE_IMAGES_DIR: the OCI archives, build logs, the builder's configuration and images.json."""
    apt_sources: Path = field(
        default_factory=lambda: env_path("NETAWARE_APT_SOURCES", Path("/etc/apt/sources.list.d/debian.sources"))
    )
    """NETAWARE_APT_SOURCES: the apt sources the base root file system is made from (the host's by default)."""
    scheduler_deployment: Path = REPO_ROOT / "scheduler-extender/deployment.yaml"
    coredns_manifest: Path = REPO_ROOT / "hack/lab/coredns.yaml"

    @property
    def containers_conf(self) -> Path:
        return self.out_dir / "containers.conf"

    @property
    def report_file(self) -> Path:
        return self.out_dir / "images.json"

    def archive(self, key: str) -> Path:
        return self.out_dir / f"{key}.oci.tar"

    def log(self, key: str) -> Path:
        return self.out_dir / "logs" / f"{key}.log"


@dataclass
class BuiltImage:
    key: str
    reference: str
    runtime_reference: str
    image_id: str
    size_bytes: int
    build_s: float
    archive: str | None
    archive_bytes: int | None
    export_s: float
    cached: bool
    """True when the build changed nothing (every step from podman's cache, the archive already current)."""


Progress = Callable[[str], None]


def container_image(manifest: Path, container: str) -> str:
    """The image a manifest's workload names for `container`: the image built here carries that name, so the
    manifest runs as written."""
    for document in yaml.safe_load_all(manifest.read_text()):
        for entry in (document or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if entry.get("name") == container:
                return str(entry["image"])
    raise ImageBuildError(f"{manifest} has no container {container!r}")


def catalog(settings: ImageSettings) -> list[ImageSpec]:
    return build_catalog(
        scheduler_image=container_image(settings.scheduler_deployment, "kube-scheduler"),
        coredns_image=container_image(settings.coredns_manifest, "coredns"),
    )


def check_prerequisites(specs: Sequence[ImageSpec], settings: ImageSettings) -> None:
    missing = [package for command, package in REQUIRED_TOOLS.items() if shutil.which(command) is None]
    if missing:
        raise ImageBuildError(f"missing Debian packages: {' '.join(missing)} (run `make debian`)")
    if not settings.apt_sources.exists():
        raise ImageBuildError(f"no apt sources at {settings.apt_sources} (set NETAWARE_APT_SOURCES)")
    for spec in specs:
        for path in spec.files:
            if not path.exists():
                hint = "run `make controlplane`" if "controlplane" in str(path) else "run `make debian`"
                raise ImageBuildError(f"image {spec.key} needs {path}, which is missing ({hint})")


def _run(command: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> None:
    """Run one build step with its output in `log`; a failure names the step and shows the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        sink.write(f"$ {' '.join(command)}\n".encode())
        sink.flush()
        result = subprocess.run(list(command), stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = log_tail(log, 25)
        raise ImageBuildError(f"{command[0]} failed (exit {result.returncode}); log {log}:\n{tail}")


def _podman_env(settings: ImageSettings) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(settings.containers_conf)}


def image_id(reference: str, env: dict[str, str]) -> str | None:
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    return result.stdout.strip() or None if result.returncode == 0 else None


def _inspect(reference: str, env: dict[str, str]) -> dict[str, object]:
    command = ["podman", "image", "inspect", reference]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(result.stdout)[0])


def build_rootfs(settings: ImageSettings, env: dict[str, str], progress: Progress) -> bool:
    """The base root file system as the local image ROOTFS_IMAGE; returns False when the current one was kept."""
    tarball = settings.out_dir / "rootfs.tar"
    command = rootfs_command(output=tarball, sources=settings.apt_sources)
    # What the root file system is made from: the command (less where its tarball goes) and the apt sources.
    recipe = [part for part in command if part != str(tarball)]
    inputs = hashlib.sha256(json.dumps([recipe, settings.apt_sources.read_text()]).encode()).hexdigest()[:16]
    if image_id(ROOTFS_IMAGE, env):
        labels = _inspect(ROOTFS_IMAGE, env).get("Labels") or {}
        if isinstance(labels, dict) and labels.get(INPUTS_LABEL) == inputs:
            return False
    progress(f"root file system: mmdebstrap {ROOTFS_IMAGE} (Debian packages only) ...")
    log = settings.log("rootfs")
    _run(command, log=log)
    try:
        _run(
            ["podman", "import", "--change", f"LABEL {INPUTS_LABEL}={inputs}", "--change", "ENV LANG=C.UTF-8",
             "--change", 'CMD ["python3"]', str(tarball), ROOTFS_IMAGE],
            log=log, env=env,
        )  # fmt: skip
    finally:
        tarball.unlink(missing_ok=True)
    return True


def build_command(spec: ImageSpec, *, context: Path) -> list[str]:
    """podman's command line for one image: never a pull, the host network only for steps that reach a registry
    (with the host's CA bundle mounted for those steps alone), no network at all otherwise."""
    command = ["podman", "build", "--pull=never", "--layers", "-f", str(spec.dockerfile), "-t", spec.reference]
    if spec.network:
        command += ["--network", "host", "-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    else:
        command += ["--network", "none"]
    for name, value in spec.build_args.items():
        command += ["--build-arg", f"{name}={value}"]
    return [*command, str(context)]


def export_command(spec: ImageSpec, archive: Path) -> list[str]:
    """An OCI archive whose index names the image as a CRI resolves the manifests' reference."""
    return ["skopeo", "copy", "--quiet", f"containers-storage:{local_reference(spec.reference)}",
            f"oci-archive:{archive}:{spec.runtime_reference}"]  # fmt: skip


def build_image(spec: ImageSpec, settings: ImageSettings, env: dict[str, str], progress: Progress) -> BuiltImage:
    before = image_id(local_reference(spec.reference), env)
    progress(f"{spec.key}: podman build {spec.reference} ...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"netaware-{spec.key}-") as scratch:
        context = spec.context
        if context is None:
            context = Path(scratch)
            for path in spec.files:
                shutil.copy2(path, context / path.name)
        _run(build_command(spec, context=context), log=settings.log(spec.key), env=env)
    build_s = time.monotonic() - started
    after = image_id(local_reference(spec.reference), env)
    if after is None:
        raise ImageBuildError(f"{spec.reference} is missing after its build (log {settings.log(spec.key)})")
    archive, archive_bytes, export_s, exported = None, None, 0.0, False
    if spec.deployable:
        path = settings.archive(spec.key)
        stamp = path.with_suffix(".id")
        if not (path.exists() and stamp.exists() and stamp.read_text() == after):
            progress(f"{spec.key}: exporting {path.name} as {spec.runtime_reference} ...")
            started = time.monotonic()
            path.unlink(missing_ok=True)
            _run(export_command(spec, path), log=settings.log(spec.key), env=env)
            stamp.write_text(after)
            export_s, exported = time.monotonic() - started, True
        archive, archive_bytes = str(path), path.stat().st_size
    size = _inspect(after, env).get("Size")
    return BuiltImage(
        key=spec.key,
        reference=spec.reference,
        runtime_reference=spec.runtime_reference,
        image_id=after,
        size_bytes=int(size) if isinstance(size, int) else 0,
        build_s=round(build_s, 2),
        archive=archive,
        archive_bytes=archive_bytes,
        export_s=round(export_s, 2),
        cached=before == after and not exported,
    )


def build_images(
    settings: ImageSettings | None = None, *, only: Sequence[str] = (), progress: Progress = lambda _: None
) -> list[BuiltImage]:
    """Build (or confirm current) every image of the catalog, or those named in `only` and what they start FROM."""
    settings = settings or ImageSettings()
    specs = catalog(settings)
    unknown = sorted(set(only) - {spec.key for spec in specs})
    if unknown:
        raise ImageBuildError(f"unknown image {', '.join(unknown)}; known: {', '.join(spec.key for spec in specs)}")
    if only:
        specs = with_bases(specs, only)
    check_prerequisites(specs, settings)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    settings.containers_conf.write_text(CONTAINERS_CONF)
    env = _podman_env(settings)
    started = time.monotonic()
    if any(spec.reference == PYTHON_BASE_IMAGE for spec in specs):
        build_rootfs(settings, env, progress)
    built = [build_image(spec, settings, env, progress) for spec in specs]
    report = {"totalSeconds": round(time.monotonic() - started, 1), "images": [asdict(image) for image in built]}
    settings.report_file.write_text(json.dumps(report, indent=1))
    return built


def with_bases(specs: Sequence[ImageSpec], only: Sequence[str]) -> list[ImageSpec]:
    """The images named in `only` and every image they are built FROM (through their build arguments), in build
    order."""
    by_reference = {spec.reference: spec for spec in specs}
    needed = set(only)
    grew = True
    while grew:
        bases = {
            by_reference[value].key
            for spec in specs
            if spec.key in needed
            for value in spec.build_args.values()
            if value in by_reference
        }
        grew = not bases <= needed
        needed |= bases
    return [spec for spec in specs if spec.key in needed]


def archives(settings: ImageSettings | None = None) -> list[tuple[ImageSpec, Path]]:
    """The deployable images and their OCI archives, for the lab's nodes; an archive that is missing is an error
    naming `make images`."""
    settings = settings or ImageSettings()
    found = []
    for spec in catalog(settings):
        if not spec.deployable:
            continue
        path = settings.archive(spec.key)
        if not path.exists():
            raise ImageBuildError(f"image archive {path} is missing (run `make images`)")
        found.append((spec, path))
    return found
