"""Base images without a pull: a Debian root filesystem made by mmdebstrap, imported into buildah's store.

mmdebstrap builds trixie with python3 from Debian's archive (arm64's maintainer scripts run under qemu
through binfmt_misc); the tarball is kept in out/images so a second build reuses it, and buildah turns it
into `localhost/pitlane/base:trixie-<arch>` with one layer. A cached tarball is reused only when its
sha256 is the one pinned or recorded for its inputs (pitlane.images.basepin).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pitlane.errors import Refused, UserError
from pitlane.images import basepin, binfmt
from pitlane.images.plan import PATH_ENV, BuildConfig, ImageSpec, Store, base_tag, mmdebstrap_argv
from pitlane.images.tools import require, run


def image_exists(store: Store, ref: str) -> bool:
    try:
        run(store.buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref), "inspect")
    except UserError:
        return False
    return True


def image_digest(store: Store, ref: str) -> str:
    """The manifest digest of an image in the store (the base image's, for provenance)."""
    out = run(store.buildah("inspect", "--type", "image", ref), f"buildah inspect {ref}")
    return str(json.loads(out)["FromImageDigest"])


def rootfs_tarball(arch: str, cfg: BuildConfig, extra: tuple[str, ...] = (), flavour: str = "") -> Path:
    """out/images/rootfs-<suite>-<arch>.tar, made by mmdebstrap unless already there (~1 min amd64, ~4 arm64)."""
    tar = cfg.out / f"rootfs-{cfg.suite}-{arch}{'-' + flavour if flavour else ''}.tar"
    if tar.is_file():
        ok, why = basepin.usable(tar, arch, cfg)
        if ok:
            return tar
        print(f"images: the cached Debian base {tar.name} is not used ({why}): making it again")
        tar.unlink()
    require("mmdebstrap")
    if not binfmt.native(arch):
        require("arch-test")  # mmdebstrap refuses foreign architectures without it
        binfmt.ensure_arm64()
    part = tar.with_suffix(".tar.part")
    for stale in (tar, part):  # an interrupted run's leftovers (or a folder an older pitlane wrote there)
        if stale.is_dir():
            shutil.rmtree(stale)
        stale.unlink(missing_ok=True)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(cfg.timestamp))
    run(
        mmdebstrap_argv(arch, part, cfg.suite, cfg.mirror, extra),
        f"mmdebstrap {cfg.suite} {arch}",
        cfg.out / f"mmdebstrap-{arch}.log",
        env=env,
    )
    try:
        basepin.check_fresh(part, arch, cfg)
    except Refused:
        part.unlink(missing_ok=True)
        raise
    basepin.record_path(part).rename(basepin.record_path(tar))
    part.rename(tar)
    return tar


def ensure_base(arch: str, cfg: BuildConfig, store: Store) -> str:
    """The base image for `arch`: the user's (--base, which must be in the store) or the Debian one."""
    ref = cfg.base_for(arch)
    if image_exists(store, ref):
        return ref
    if ref != base_tag(arch, cfg.suite):
        raise UserError(
            f"base image {ref} is not in buildah's store ({store.root}): pull it first "
            f"(buildah --storage-driver {store.driver} --root {store.root} pull --arch {arch} {ref}) or leave out --base "
            "to build the Debian base here"
        )
    tar = rootfs_tarball(arch, cfg)
    ctr = run(store.buildah("from", "--quiet", "scratch"), "buildah from scratch").strip()
    try:
        run(store.buildah("add", ctr, str(tar), "/"), f"importing {tar.name}")
        run(
            store.buildah(
                "config",
                "--arch",
                arch,
                "--os",
                "linux",
                "--env",
                f"PATH={PATH_ENV}",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                "--label",
                f"org.opencontainers.image.title=Debian {cfg.suite} python3 ({arch})",
                ctr,
            ),
            "buildah config",
        )
        run(
            store.buildah("commit", "--quiet", "--timestamp", str(cfg.timestamp), ctr, ref),
            f"committing {ref}",
        )
    finally:
        run(store.buildah("rm", ctr), "buildah rm")
    return ref


PYTHON_SKIP = ("test", "idlelib", "tkinter", "turtledemo", "__pycache__", "include", "man", "pkgconfig")


def python_prefix(version: str) -> Path:
    """Where the CPython `version` that runs pitlane's locked environment lives (PITLANE_PYTHON or this one)."""
    import subprocess
    import sys

    python = os.environ.get("PITLANE_PYTHON") or sys.executable
    proc = subprocess.run(
        [python, "-c", "import sys; print(sys.base_prefix); print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 2 or lines[1] != version:
        raise UserError(f"the notebook image needs CPython {version}: set PITLANE_PYTHON to one (pyenv, uv)")
    prefix = Path(lines[0])
    if prefix in (Path("/usr"), Path("/usr/local")) or not (prefix / "bin" / f"python{version}").is_file():
        raise UserError(
            f"{python} is a system Python ({prefix}): the notebook image copies a self-contained CPython "
            f"{version} (pyenv's or uv's): set PITLANE_PYTHON to one, or pass --base amd64=python:{version}-slim"
        )
    return prefix


def python_tarball(version: str, cfg: BuildConfig) -> Path:
    """out/images/python<version>.tar: that CPython at /opt/python<version> (no tests, headers, tkinter or
    site-packages), found by the dynamic linker (ld.so.conf.d); the base puts its bin/ first on PATH (not a
    symlink: a venv made through a symlink looks for the standard library beside the link)."""
    import io
    import tarfile

    tar_path = cfg.out / f"python{version}.tar"
    if tar_path.is_file():
        return tar_path
    prefix = python_prefix(version)
    dest = f"opt/python{version}"

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if any(p in PYTHON_SKIP for p in parts) or info.name.endswith(".a") or "_tkinter" in info.name:
            return None
        if "site-packages" in parts and parts[-1] != "site-packages":
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = cfg.timestamp
        return info

    part = tar_path.with_suffix(".part")
    with tarfile.open(part, "w") as tar:
        tar.add(prefix, arcname=dest, filter=keep)
        for name, text in {f"etc/ld.so.conf.d/python{version}.conf": f"/{dest}/lib\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), cfg.timestamp
            tar.addfile(info, io.BytesIO(data))
    part.rename(tar_path)
    return tar_path


def ensure_python_base(spec: ImageSpec, cfg: BuildConfig, store: Store) -> str:
    """Debian (with the image's own `debian` packages) plus CPython `spec.python` (python_tarball), unless
    --base names the image to use."""
    arch, version = spec.arch, str(spec.python)
    ref = cfg.base_for(arch, version)
    if ref != base_tag(arch, cfg.suite, version):  # the user's --base (e.g. python:3.12-slim), in the store
        return ensure_base(arch, cfg, store)
    if image_exists(store, ref):
        return ref
    debian = rootfs_tarball(arch, cfg, spec.debian, flavour=spec.name)
    python = python_tarball(version, cfg)
    ctr = run(store.buildah("from", "--quiet", "scratch"), "buildah from scratch").strip()
    try:
        for tar in (debian, python):
            run(store.buildah("add", ctr, str(tar), "/"), f"importing {tar.name}")
        run(store.buildah("run", "--isolation", "chroot", ctr, "--", "ldconfig"), "ldconfig")
        config = ["--arch", arch, "--os", "linux", "--env", f"PATH=/opt/python{version}/bin:{PATH_ENV}",
                  "--env", "LANG=C.UTF-8", "--cmd", f"python{version}",
                  "--label", f"org.opencontainers.image.title=Debian {cfg.suite} python{version} ({arch})"]  # fmt: skip
        run(store.buildah("config", *config, ctr), "buildah config")
        run(
            store.buildah("commit", "--quiet", "--timestamp", str(cfg.timestamp), ctr, ref),
            f"committing {ref}",
        )
    finally:
        run(store.buildah("rm", ctr), "buildah rm")
    return ref
