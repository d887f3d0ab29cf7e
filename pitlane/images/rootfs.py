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
from pitlane.images.plan import PATH_ENV, BuildConfig, Store, base_tag, mmdebstrap_argv
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


def rootfs_tarball(arch: str, cfg: BuildConfig) -> Path:
    """out/images/rootfs-<suite>-<arch>.tar, made by mmdebstrap unless already there (~1 min amd64, ~4 arm64)."""
    tar = cfg.out / f"rootfs-{cfg.suite}-{arch}.tar"
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
        mmdebstrap_argv(arch, part, cfg.suite, cfg.mirror),
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
            f"(buildah --storage-driver vfs --root {store.root} pull --arch {arch} {ref}) or leave out --base "
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
