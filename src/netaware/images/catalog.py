"""The images netaware builds, as data: what each is built from, in which order, and the name a node's container
runtime knows it by. Nothing here runs a builder (`building.py` does).

Order matters: the base root file system comes first (mmdebstrap, Debian packages only), then the Python base on
it, the shared netaware image, the images that start FROM the shared one, and the images of the cluster's own parts
(pause, kube-scheduler, CoreDNS) made FROM scratch from binaries built here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from netaware.paths import REPO_ROOT

NETAWARE_VERSION = "0.1.0"
KUBE_VERSION = "v1.33.5"
"""Keep equal to hack/controlplane/build.sh's KUBE_VERSION: the kube-scheduler image carries that binary."""
DEBIAN_SUITE = "bookworm"

ROOTFS_IMAGE = f"localhost/netaware/debian-rootfs:{DEBIAN_SUITE}"
PYTHON_BASE_IMAGE = f"localhost/netaware/python-base:{DEBIAN_SUITE}"
"""Stands in for python:3.11-slim: Debian's Python 3.11 with a virtualenv whose pip may install (the Dockerfiles
take it through their PYTHON_IMAGE build argument; elsewhere they build on python:3.11-slim unchanged)."""
PAUSE_IMAGE = "localhost/netaware/pause:3.10"
"""The pod sandbox image every lab node's containerd uses: Debian's static catatonit, FROM scratch."""

CATATONIT = Path("/usr/bin/catatonit")
"""Debian's catatonit (static): the pause image's only file."""

ROOTFS_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# dpkg leaves these out of the root file system: documentation, manuals and translations nobody reads in a container.
ROOTFS_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")

DEFAULT_DOMAIN = "docker.io"
"""Docker's reference normalisation, which every CRI applies: a name without a domain lives there, so the manifests'
`netaware/probe:0.1.0` is `docker.io/netaware/probe:0.1.0` to containerd. Nothing is ever pulled from it."""


def names_domain(reference: str) -> bool:
    """Whether a reference's first component is a domain: it has a dot or a port, or is `localhost`."""
    first, slash, _ = reference.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def local_reference(reference: str) -> str:
    """The name podman stores an image under: a reference without a domain goes under localhost/."""
    return reference if names_domain(reference) else f"localhost/{reference}"


def normalize_reference(reference: str) -> str:
    """`netaware/probe:0.1.0` -> `docker.io/netaware/probe:0.1.0`, `busybox` -> `docker.io/library/busybox:latest`;
    a reference that names a domain is kept (with `:latest` added when it has no tag or digest)."""
    name, at, digest = reference.partition("@")
    if not names_domain(name):
        name = f"{DEFAULT_DOMAIN}/{name}" if "/" in name else f"{DEFAULT_DOMAIN}/library/{name}"
    if at:
        return f"{name}@{digest}"
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


@dataclass(frozen=True)
class ImageSpec:
    """One image: built with `podman build -f dockerfile context` as `reference`."""

    key: str
    """Short name used on the command line and for the OCI archive (`build/images/<key>.oci.tar`)."""
    reference: str
    dockerfile: Path
    context: Path | None
    """The build context; None: a fresh folder holding only `files` (never a whole bin folder sent to the builder)."""
    files: tuple[Path, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    network: bool = False
    """Whether RUN steps reach the package registries (then the build uses the host network and CA bundle)."""
    deployable: bool = True
    """Whether the lab's nodes need it (exported as an OCI archive and imported into every node's containerd)."""

    @property
    def runtime_reference(self) -> str:
        """The name containerd stores the image under, which is what a manifest's `image:` resolves to."""
        return normalize_reference(self.reference)


def netaware_reference(component: str) -> str:
    return f"netaware/{component}:{NETAWARE_VERSION}"


def build_catalog(*, repo: Path = REPO_ROOT, scheduler_image: str, coredns_image: str) -> list[ImageSpec]:
    """Every image in build order. `scheduler_image` and `coredns_image` are the references their manifests name
    (the second scheduler's Deployment, the lab's CoreDNS): the images built here carry those names."""
    hack = repo / "hack/images"
    shared = netaware_reference("netaware")
    from_shared = {"NETAWARE_IMAGE": shared}
    specs = [
        ImageSpec(
            "python-base",
            PYTHON_BASE_IMAGE,
            hack / "python-base/Containerfile",
            hack / "python-base",
            build_args={"ROOTFS_IMAGE": ROOTFS_IMAGE},
            deployable=False,
        ),
        ImageSpec(
            "netaware",
            shared,
            repo / "scheduler-extender/Dockerfile",
            repo,
            build_args={"PYTHON_IMAGE": PYTHON_BASE_IMAGE},
            network=True,
        ),
        ImageSpec("aggregator", netaware_reference("aggregator"), repo / "aggregator/Dockerfile", repo / "aggregator",
                  build_args=from_shared),
        ImageSpec("probe", netaware_reference("probe"), repo / "probe-agent/Dockerfile", repo / "probe-agent",
                  build_args=from_shared, network=True),
        ImageSpec("router", netaware_reference("router"), repo / "router/Dockerfile", repo / "router",
                  build_args=from_shared),
        ImageSpec("pause", PAUSE_IMAGE, hack / "pause/Containerfile", None, files=(CATATONIT,)),
        ImageSpec("kube-scheduler", scheduler_image, hack / "kube-scheduler/Containerfile", None,
                  files=(repo / "hack/controlplane/bin/kube-scheduler",)),
    ]  # fmt: skip
    specs.append(
        ImageSpec("coredns", coredns_image, hack / "coredns/Containerfile", None,
                  files=(repo / "hack/controlplane/bin/coredns",))
    )  # fmt: skip
    return specs


def rootfs_command(*, output: Path, sources: Path, suite: str = DEBIAN_SUITE) -> list[str]:
    """mmdebstrap's command line for the base root file system: Debian's minbase plus Python, from the host's own
    apt sources (so no mirror is named here), without apt lists, apt caches or documentation in the result, and with
    Debian's container apt configuration so that later `apt-get install` layers stay clean too."""
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(ROOTFS_PACKAGES)}",
        "--aptopt=Acquire::Check-Valid-Until false",
        # merged /usr set up by mmdebstrap itself: the usrmerge package would pull in all of perl (25 MB)
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    ]
    command += [f"--dpkgopt=path-exclude={pattern}" for pattern in ROOTFS_EXCLUDES]
    command += [
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        "--customize-hook=" + _DOCKER_CLEAN_HOOK,
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/apt "$1"/var/log/*.log',
        suite,
        str(output),
        str(sources),
    ]
    return command


# What Debian's own container images carry in /etc/apt/apt.conf.d/docker-clean: apt keeps no downloaded package
# or binary cache, so an `apt-get install` in a later layer adds only what it installs.
_DOCKER_CLEAN_HOOK = (
    "printf '%s\\n' "
    "'DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb "
    "/var/cache/apt/*.bin || true\"; };' "
    "'APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb "
    "/var/cache/apt/*.bin || true\"; };' "
    "'Dir::Cache::pkgcache \"\";' 'Dir::Cache::srcpkgcache \"\";' "
    '> "$1"/etc/apt/apt.conf.d/docker-clean'
)
