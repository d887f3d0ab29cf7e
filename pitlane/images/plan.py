"""What `pitlane images` builds and the exact commands for it: pure functions of a frozen config, no I/O.

Two images from the repository's two Dockerfiles: `sim` (linux/amd64: the twin, the car app in its twin
profile, the web controller) and `car` (linux/arm64: the car app in its pi profile with LiteRT). Each builds
on a Debian base made here with mmdebstrap, so nothing is pulled; a user with a registry passes
`--base python:3.13-slim` instead. Everything buildah stores lives under out/images/ in the clone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "trixie"  # Debian 13: python3.13, which donkeycar 5.4 accepts, on amd64 and arm64
MIRROR = "http://deb.debian.org/debian"
# libstdc++6: numpy and LiteRT need it; python3-venv: the amd64 base doubles as the builder that runs pip;
# mosquitto: the fleet's MQTT broker, run from the sim image on the NUC (`pitlane fleet broker`)
BASE_PACKAGES: dict[str, tuple[str, ...]] = {
    "amd64": ("python3", "libstdc++6", "python3-venv", "mosquitto"),
    "arm64": ("python3", "libstdc++6"),
}
BASE_EXCLUDES: tuple[str, ...] = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*")
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE = "https://github.com/pitlane-dev/pitlane"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its Dockerfile, target architecture and the Pipfile categories it installs.

    `leave_out` names locked packages a dependency declares but the image never imports (installed with
    `pip --no-deps`, so nothing pulls them back); tests/images/test_car_deps.py runs the car's code with
    them blocked, and the smoke test runs the image itself."""

    name: str
    dockerfile: str
    arch: str
    categories: tuple[str, ...]
    leave_out: tuple[str, ...] = ()
    python: str | None = (
        None  # a CPython other than Debian's, copied into the base (rootfs.ensure_python_base)
    )
    debian: tuple[str, ...] = ()  # Debian packages beside the base's, in that base's root filesystem

    @property
    def platform(self) -> str:
        return f"linux/{self.arch}"

    @property
    def requirements(self) -> str:
        """Hashed requirements exported from Pipfile.lock, relative to the repository (the build context)."""
        return f"out/images/requirements-{self.name}.txt"


CAR_LEAVE_OUT = (
    "pandas",
    "python-dateutil",
    "tzdata",
)  # pandas and what only pandas needs, in the car section
# TensorFlow 2.19 (the lock's) has no wheels for trixie's python3.13 and Debian has no 3.12: the notebook image
# runs the CPython 3.12 the locked environment was made with (copied in, rootfs.python_tarball)
NOTEBOOK_PYTHON = "3.12"
NOTEBOOK_LEAVE_OUT = (
    "ruff", "mypy", "import-linter", "pytest-timeout", "hypothesis", "selenium", "kubernetes-validate",
)  # fmt: skip  # the developer's lint and test tools (dev-packages); jupyterlab, ipykernel, nbclient stay
# JupyterHub's proxy: Node.js's configurable-http-proxy, Debian's (the Python port buffers whole responses)
NOTEBOOK_DEBIAN = ("nodejs", "node-configurable-http-proxy")
IMAGES: dict[str, ImageSpec] = {
    "sim": ImageSpec("sim", "Dockerfile.sim", "amd64", ("car", "sim")),
    # donkeycar declares pandas (its tub tools and plots import it; the vehicle loop does not): ~40 MB of
    # wheels the Raspberry Pi image would ship for nothing
    "car": ImageSpec("car", "Dockerfile.arm64", "arm64", ("car",), leave_out=CAR_LEAVE_OUT),
    # JupyterHub and the users' JupyterLab with TensorFlow (pitlane/hub): the locked env less its dev tools
    "notebook": ImageSpec(
        "notebook",
        "Dockerfile.notebook",
        "amd64",
        ("packages", "dev-packages"),
        leave_out=NOTEBOOK_LEAVE_OUT,
        python=NOTEBOOK_PYTHON,
        debian=NOTEBOOK_DEBIAN,
    ),
    # the release pipeline's steps run in it: pitlane's whole locked environment on a Python 3.12 base given
    # by digest (--base), plus git, buildah, skopeo, qemu-user-static (Dockerfile.tools)
    "tools": ImageSpec("tools", "Dockerfile.tools", "amd64", ("packages", "dev-packages")),
}
TOOLS_IMAGE = "tools"  # built and pinned for the pipeline (pipelines/pipeline.yaml), never deployed
# The deployed images, named here once: deploy's pins derive from it; a fleet target runs one of them
# (deploy/fleet.py OVERLAYS), and the notebook image serves the NUC's hub
IMAGE_NAMES: tuple[str, ...] = tuple(name for name in IMAGES if name != TOOLS_IMAGE)
# what `pitlane images build` builds unless --only names others: the product images (the notebook image, with
# TensorFlow, takes half an hour: built with --only notebook)
DEFAULT_IMAGES: tuple[str, ...] = ("sim", "car")
BUILDER_ARCH = "amd64"  # the machine pip runs on for both images (arm64 wheels are fetched, not built)


def base_tag(arch: str, suite: str = SUITE, python: str | None = None) -> str:
    return f"localhost/pitlane/base:{suite}-{arch}" + (f"-python{python}" if python else "")


def image_tag(name: str) -> str:
    return f"localhost/pitlane/{name}:dev"


def repository(registry: str, name: str) -> str:
    """Where an image goes in a registry (host:port), e.g. 127.0.0.1:5000/pitlane/car."""
    return f"{registry}/pitlane/{name}"


STORAGE_DRIVERS = ("overlay", "vfs")  # pitlane.images.storage picks one by trying overlay


@dataclass(frozen=True)
class Store:
    """buildah's storage inside the clone, so nothing is cached outside: overlay (layers shared) where the
    kernel allows it, vfs (a full copy per layer, works anywhere) elsewhere; one folder per driver."""

    root: Path
    runroot: Path
    driver: str = "vfs"

    @classmethod
    def under(cls, out: Path, driver: str = "vfs") -> Store:
        if driver not in STORAGE_DRIVERS:
            raise ValueError(f"unknown storage driver {driver!r}")
        suffix = "" if driver == "vfs" else f"-{driver}"  # vfs keeps the folders it always had
        return cls(out.resolve() / f"storage{suffix}", out.resolve() / f"run{suffix}", driver)

    def buildah(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--storage-driver",
            self.driver,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            *args,
        ]

    def transport(self, ref: str) -> str:
        """skopeo's name for an image in this store."""
        return f"containers-storage:[{self.driver}@{self.root}+{self.runroot}]{ref}"


@dataclass(frozen=True)
class BuildConfig:
    """Inputs of one `pitlane images build`."""

    repo: Path  # the repository: build context and Pipfile
    out: Path  # out/images: root filesystems, buildah storage, exported requirements
    images: tuple[str, ...] = DEFAULT_IMAGES
    base: dict[str, str] = field(default_factory=dict)  # arch -> base image; default: the mmdebstrap base
    suite: str = SUITE
    mirror: str = MIRROR
    revision: str = "unknown"  # git commit, for the OCI revision label
    version: str = "0.1.0"
    timestamp: int = 0  # seconds since 1970 in every layer and config: same input, same layer digests
    cafile: str | None = None  # CA bundle pip trusts inside the build (a secret mount, never in a layer)

    def base_for(self, arch: str, python: str | None = None) -> str:
        return self.base.get(arch) or base_tag(arch, self.suite, python)


def mmdebstrap_argv(
    arch: str, dest: Path, suite: str = SUITE, mirror: str = MIRROR, extra: tuple[str, ...] = ()
) -> list[str]:
    """A minimal Debian root filesystem with Python 3 (and `extra` packages) as a tarball (the essential
    variant: no apt, no useradd)."""
    excludes = [f"--dpkgopt=path-exclude={p}" for p in BASE_EXCLUDES]
    packages = ",".join((*BASE_PACKAGES[arch], *extra))
    return [
        "mmdebstrap",
        f"--arch={arch}",
        "--variant=essential",
        f"--include={packages}",
        *excludes,
        "--format=tar",  # always a tarball: mmdebstrap guesses from the name, and DEST.tar.part reads as a folder
        "--quiet",
        suite,
        str(dest),
        mirror,
    ]


def build_argv(store: Store, spec: ImageSpec, cfg: BuildConfig) -> list[str]:
    """`buildah build` of one Dockerfile: chroot isolation, a cached layer per step, no pull, fixed timestamps."""
    argv = store.buildah(
        "build",
        "--isolation",
        "chroot",
        "--layers",
        "--pull=never",
        "--timestamp",
        str(cfg.timestamp),
        "--identity-label=false",
        "--platform",
        spec.platform,
        "-f",
        spec.dockerfile,
        "-t",
        image_tag(spec.name),
        "--build-arg",
        f"BASE={cfg.base_for(spec.arch, spec.python)}",
        "--build-arg",
        f"BUILDER={cfg.base_for(BUILDER_ARCH)}",
        "--build-arg",
        f"REQUIREMENTS={spec.requirements}",
        "--build-arg",
        f"REVISION={cfg.revision}",
        "--build-arg",
        f"VERSION={cfg.version}",
    )
    if cfg.cafile:
        argv += ["--secret", f"id=pipcert,src={cfg.cafile}"]
    return [*argv, str(cfg.repo)]


def default_cafile() -> str | None:
    """The CA bundle pip is told to trust here (PIP_CERT, then Debian's), if any: proxies that intercept TLS."""
    for path in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if path and Path(path).is_file():
            return path
    return None
