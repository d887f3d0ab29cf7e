"""Which buildah storage driver this machine can use for the store under out/images, found by trying it.

vfs works everywhere but keeps a full copy of the root filesystem for every layer: the sim and car images
with their ~30 layers took 19 GB, and a CI machine with less free disk failed the build. overlay shares
the layers (under 1 GB for both), but needs root and a filesystem the kernel's overlayfs accepts as the
upper layer (ext4, xfs; not an overlay itself, as inside most unprivileged containers). So: overlay when
a test mount under the store works, else vfs; `PITLANE_STORAGE_DRIVER` forces either. Each driver has a
store of its own (plan.Store.under), so switching never mixes them.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

from pitlane.errors import BadInput
from pitlane.images.plan import STORAGE_DRIVERS, Store

DRIVER_ENV = "PITLANE_STORAGE_DRIVER"


def open_store(out: Path) -> Store:
    """The store under `out` with the driver this machine supports (or the one `PITLANE_STORAGE_DRIVER` names)."""
    return Store.under(out, driver=pick_driver(out))


def pick_driver(out: Path) -> str:
    forced = os.environ.get(DRIVER_ENV, "").strip()
    if forced:
        if forced not in STORAGE_DRIVERS:
            raise BadInput(f"{DRIVER_ENV}={forced!r}: choose one of {', '.join(STORAGE_DRIVERS)}")
        return forced
    return "overlay" if overlay_mounts(out.resolve()) else "vfs"


@functools.cache
def overlay_mounts(out: Path) -> bool:
    """Whether the kernel mounts an overlay whose upper layer lives in `out` (root only: rootless needs fuse)."""
    if os.geteuid() != 0:
        return False
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".overlay-probe-") as tmp:
        dirs = {name: Path(tmp) / name for name in ("lower", "upper", "work", "merged")}
        for d in dirs.values():
            d.mkdir()
        options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        try:
            mounted = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])],
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", str(dirs["merged"])], capture_output=True, timeout=30, check=True)
        return True
