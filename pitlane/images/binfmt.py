"""arm64 `RUN` steps on an amd64 machine: qemu-user through the kernel's binfmt_misc, registered where we can.

The kernel hands an aarch64 ELF to qemu-aarch64 when binfmt_misc has an enabled entry for it. A fresh CI
machine (root, Debian's qemu-user-static and binfmt-support) lacks only the mount and the registration; a
container without privileges can do neither, and the error says how to get it from the host.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from pitlane.errors import UserError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
ENTRY = "qemu-aarch64"
HOW = (
    "as root on this machine: apt-get install qemu-user-static binfmt-support && "
    "mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable qemu-aarch64 "
    "(in a container, do it on the host or run it --privileged; Docker Desktop has it built in)"
)


def native(arch: str) -> bool:
    machine = platform.machine().lower()
    return machine in {"amd64": ("x86_64", "amd64"), "arm64": ("aarch64", "arm64")}.get(arch, ())


def enabled(binfmt_dir: Path = BINFMT_DIR) -> bool:
    try:
        return (binfmt_dir / ENTRY).read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def ensure_arm64(binfmt_dir: Path = BINFMT_DIR) -> None:
    """Make aarch64 programs runnable here, or UserError with how to enable it."""
    if native("arm64") or enabled(binfmt_dir):
        return
    if binfmt_dir == BINFMT_DIR:  # only the real one is ours to mount and register
        steps = [["update-binfmts", "--enable", ENTRY]]
        if not (binfmt_dir / "register").exists():
            steps.insert(0, ["mount", "binfmt_misc", "-t", "binfmt_misc", str(binfmt_dir)])
        for argv in steps:
            try:
                subprocess.run(argv, capture_output=True, check=False)
            except OSError:  # the tool is missing: the error below says what to install
                break
    if not enabled(binfmt_dir):
        raise UserError(
            f"arm64 build steps need qemu-user through binfmt_misc, which is not enabled here: {HOW}"
        )
